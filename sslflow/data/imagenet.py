"""The `imagenet` layout: ILSVRC2012 as distributed.

``train/<wnid>/<wnid>_<n>.JPEG``; ``val/`` either in per-wnid folders or flat
(``ILSVRC2012_val_<n>.JPEG``) with ``LOC_val_solution.csv`` (header
``ImageId,PredictionString``; the class is the first token of the prediction
string). The classes are the sorted train wnids. Sample keys are the file
stems, unique across ILSVRC2012, so the published SimCLR subset lists (file
names) map onto keys directly.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sslflow.data.folders import FileImages, class_files, class_folders, entry_size, keyed_records, list_dir, split_dir
from sslflow.data.records import Source, make_key, without_suffix
from sslflow.errors import UserError

CSV_NAME = "LOC_val_solution.csv"
CSV_HEADER = ["ImageId", "PredictionString"]


def key_of_file_name(name: str) -> str:
    """n01440764_10026.JPEG -> n01440764_10026 (the key `shard` gives that image)."""
    return make_key(without_suffix(name.rpartition("/")[2]))


def open_imagenet(root: Path, val_labels: Path | None) -> Source:
    train = split_dir(root, "train")
    classes = class_folders(train)
    source = Source("imagenet", root, "", classes, 3, None)
    source.records["train"] = _folder_records(root, train, classes)
    val = split_dir(root, "val")
    if any(entry.is_dir() for entry in list_dir(val)):
        source.records["val"] = _folder_records(root, val, classes)
        how = "val in wnid folders"
    else:
        labels_csv = _find_csv(root, val, val_labels)
        source.records["val"] = _flat_val_records(root, val, labels_csv, classes)
        how = f"flat val labelled by {labels_csv.name}"
    source.readers = {"train": FileImages(root), "val": FileImages(root)}
    counts = ", ".join(f"{len(r)} {s}" for s, r in source.records.items())
    source.description = f"ILSVRC2012 layout, {len(classes)} wnids ({counts}; {how})"
    return source


def _folder_records(root: Path, directory: Path, classes: list[str]):
    found = class_folders(directory)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise UserError(f"{directory / unknown[0]}: wnid {unknown[0]} is not a class folder of train/")
    class_id = {name: i for i, name in enumerate(classes)}  # a dict: list.index per file is 1000 compares each
    files = [(class_id[name], rel, size) for name in found for rel, size in class_files(root, directory / name)]
    return keyed_records(files, key_of_file_name, root)


def _find_csv(root: Path, val: Path, given: Path | None) -> Path:
    if given is not None:
        if not Path(given).is_file():
            raise UserError(f"data.val_labels {given}: not found")
        return Path(given)
    for candidate in (root / CSV_NAME, val / CSV_NAME):
        if candidate.is_file():
            return candidate
    raise UserError(f"{val}: flat val/ needs {CSV_NAME} (in {root} or {val}, or set data.val_labels)")


def read_val_csv(path: Path) -> dict[str, tuple[str, int]]:
    """ImageId -> (wnid, line number) from a LOC_val_solution.csv."""
    labels = {}
    try:
        with open(path, newline="") as fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if header != CSV_HEADER:
                raise UserError(f"{path}: expected the header {','.join(CSV_HEADER)}, got {header}")
            for number, row in enumerate(rows, 2):
                tokens = row[1].split() if len(row) == 2 else []
                if not tokens:
                    raise UserError(f"{path}:{number}: expected ImageId,PredictionString with a wnid first")
                labels[row[0]] = (tokens[0], number)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a CSV file ({exc})") from None
    return labels


def _flat_val_records(root: Path, val: Path, labels_csv: Path, classes: list[str]):
    labels = read_val_csv(labels_csv)
    class_id = {wnid: i for i, wnid in enumerate(classes)}
    files = []
    for entry in list_dir(val):
        path = Path(entry.path)
        if path == labels_csv:
            continue
        image_id = path.stem
        if image_id not in labels:
            raise UserError(f"{path}: val image absent from {labels_csv}")
        wnid, number = labels.pop(image_id)
        if wnid not in class_id:
            raise UserError(f"{labels_csv}:{number}: {wnid} (for {path.name}) is not a class folder of train/")
        files.append((class_id[wnid], path.relative_to(root).as_posix(), entry_size(entry)))
    if labels:
        missing = sorted(labels)
        raise UserError(f"{labels_csv}: {len(missing)} listed image(s) not in {val}, e.g. {missing[0]}")
    if not files:
        raise UserError(f"{val}: no val images")
    return keyed_records(files, key_of_file_name, root)
