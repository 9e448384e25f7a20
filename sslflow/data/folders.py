"""Image files in class folders: the `imagefolder` layout, and the walking and reading `imagenet` shares.

``ROOT/{train,val}/<class>/<image>``: the class names are the sorted folder
names of ``train/``; files may sit in sub-folders of a class folder; hidden
files and folders (a leading '.') are ignored. Names and sizes are listed
here, and the first bytes of files while they may all be small PNGs of one
size: a source that is (both splits, at most encode.RAW_MAX_SIDE px a side,
8-bit grey, RGB or palette, CIFAR-like) is stored as raw RGB pixels; any JPEG,
other format or second size stops that look at once and the files are stored
as they are. The bytes are read, checked and stored by the shard workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sslflow.data.encode import BadImage, fits_raw, png_size, prepare, raw_pixels, sniff
from sslflow.data.read import RAW_EXT
from sslflow.data.records import SPLITS, Record, Source, make_key, without_suffix
from sslflow.errors import UserError


class FileImages:
    """Files under a root, stored as they are where they can be (see encode.prepare), or as raw pixels at
    `raw_shape` (H, W, C) when the source is stored raw."""

    def __init__(self, root: Path, raw_shape: list[int] | None = None):
        self.root = Path(root)
        self._root = str(root)  # a str join per sample: pathlib costs more than reading a small file
        self.raw_shape = raw_shape

    def sample(self, ref: str) -> tuple[str, bytes]:
        try:
            with open(os.path.join(self._root, ref), "rb", buffering=0) as fh:
                data = fh.read()
        except OSError as exc:
            raise BadImage(f"cannot read ({exc.strerror or exc})") from None
        if self.raw_shape:
            return RAW_EXT, raw_pixels(data, self.raw_shape)
        return prepare(data)

    def describe(self, ref: str) -> str:
        return str(self.root / ref)


def open_imagefolder(root: Path) -> Source:
    classes = class_folders(split_dir(root, "train"))
    source = Source("imagefolder", root, "", classes, 3, None)
    for split in ("train", "val"):
        directory = split_dir(root, split)
        found = class_folders(directory)
        _check_known(found, classes, directory)
        class_id = {name: i for i, name in enumerate(classes)}
        files = [(class_id[name], rel, size) for name in found for rel, size in class_files(root, directory / name)]
        source.records[split] = keyed_records(files, lambda rel, name=directory.name: _folder_key(rel, name), root)
        source.readers[split] = FileImages(root)
    _store_raw_if_small(source)
    counts = ", ".join(f"{len(r)} {s}" for s, r in source.records.items())
    stored = f", stored raw at {source.raw_shape[1]}x{source.raw_shape[0]}" if source.raw_shape else ""
    source.description = f"image folders, {len(classes)} classes ({counts}{stored})"
    return source


def _store_raw_if_small(source: Source) -> None:
    """Switch the source to raw pixels (RGB, as its channels say) when every file is a small PNG of one size."""
    size = common_png_size(source.path, [r.ref for split in SPLITS for r in source.records[split]])
    if size is None:
        return
    source.raw_shape = [*size, source.channels]
    stored = size[0] * size[1] * source.channels  # what the shard planner sizes shards by
    for split in SPLITS:
        source.records[split] = [r._replace(size=stored) for r in source.records[split]]
        source.readers[split] = FileImages(source.path, source.raw_shape)


PEEK_BYTES = 29  # PNG signature + IHDR: the size and pixel format


def common_png_size(root: Path, refs: list[str]) -> tuple[int, int] | None:
    """(H, W) when every readable image under `root` is a raw-storable PNG of that one size, small enough.

    Stops at the first file that is not (usually the first: a JPEG folder pays one read).
    A file that cannot be read or is no image at all does not decide: the shard worker
    reports it (an error, or a skip with `on_bad_image: skip`).
    """
    found = None
    for ref in refs:
        head = _peek(os.path.join(str(root), ref))
        if head is None:
            continue
        size = png_size(head)
        if size is None:
            if sniff(head) is not None or _other_image(os.path.join(str(root), ref)):
                return None
            continue
        if not fits_raw(*size) or (found is not None and size != found):
            return None
        found = size
    return found


def _peek(path: str) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as fh:
            head = fh.read(PEEK_BYTES)
    except OSError:
        return None
    return head or None


def _other_image(path: str) -> bool:
    """Whether Pillow identifies the file as an image (BMP, GIF, ...: stored as PNG, so the source stays encoded)."""
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception:  # not an image, or unreadable: the worker gives the reason
        return False


def split_dir(root: Path, split: str) -> Path:
    directory = root / split
    if not directory.is_dir():
        raise UserError(f"{directory}: not found (expected {root}/{{train,val}}/<class>/<image>)")
    return directory


def class_folders(directory: Path) -> list[str]:
    """Sorted class folder names; a file beside them is an error (it belongs to no class)."""
    names = []
    for entry in list_dir(directory):
        if entry.is_dir():
            names.append(entry.name)
        else:
            raise UserError(f"{entry.path}: not in a class folder")
    if not names:
        raise UserError(f"{directory}: no class folders")
    return sorted(names)


def class_files(root: Path, folder: Path) -> list[tuple[str, int]]:
    """(path relative to root, size) of every file under a class folder, sorted; an empty folder is an error."""
    files = _walk(root, folder)
    if not files:
        raise UserError(f"{folder}: empty class folder")
    return files


def _walk(root: Path, folder: Path) -> list[tuple[str, int]]:
    files = []
    cut = len(str(root)) + 1  # entry paths start with root/: slicing beats Path.relative_to per file
    for entry in list_dir(folder):
        if entry.is_dir():
            files += _walk(root, Path(entry.path))
        else:
            files.append((entry.path[cut:].replace(os.sep, "/"), entry_size(entry)))
    return files


def keyed_records(files: list[tuple[int, str, int]], key_of: Callable[[str], str], root: Path) -> list[Record]:
    """Records with keys from `key_of(relative path)`; two files with one key are an error naming both."""
    owner: dict[str, str] = {}
    records = []
    for label, rel, size in files:
        key = key_of(rel)
        if key in owner:
            raise UserError(f"{root / rel}: same sample key {key!r} as {root / owner[key]} (rename one)")
        owner[key] = rel
        records.append(Record(key, label, rel, size))
    return records


def _check_known(found: list[str], classes: list[str], directory: Path) -> None:
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise UserError(f"{directory / unknown[0]}: class {unknown[0]!r} is not a class folder of train/")


def _folder_key(rel: str, split: str) -> str:
    """split/class/sub/name.ext -> class_sub_name (the class keeps equal names apart)."""
    return make_key(without_suffix(rel[len(split) + 1 :]))


def list_dir(directory: Path) -> list[os.DirEntry]:
    """Entries sorted by name, hidden ones (a leading '.') left out."""
    try:
        with os.scandir(directory) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise UserError(f"{directory}: cannot list ({exc.strerror or exc})") from None


def entry_size(entry: os.DirEntry) -> int:
    # an unreadable or dangling entry gets size 0 here and its reason from the worker that reads it
    try:
        return entry.stat().st_size
    except OSError:
        return 0
