"""A source, as the `data` params describe it, -> a complete shard directory (tars, indexes, subsets, manifest).

Order of work: list the source (names and sizes only), plan the shards, write them in
parallel, then the subsets and the manifest, which need the samples that survived
(`on_bad_image: skip`). Scratch files (mnist-idx pixels) live in `.work` inside the
output directory, so a failure anywhere leaves nothing behind once the caller's
temporary directory is removed.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from sslflow.atomic import write_json
from sslflow.data.config import DataCfg
from sslflow.data.manifest import MANIFEST, build_manifest, split_entry
from sslflow.data.records import SPLITS, Source
from sslflow.data.shards import ShardResult, ShardTask, plan_shards, shard_name, write_shards
from sslflow.data.sources import open_source
from sslflow.data.subsets import VAL, read_file_lists, sample_subsets, sample_val_slice, write_subsets
from sslflow.data.tarwriter import ShardInfo

WORK = ".work"


def build_shards(cfg: DataCfg, out: Path, show_progress: bool = True) -> dict:
    """Write everything into `out` (an empty directory the caller renames into place) and return the manifest."""
    out = Path(out)
    work = out / WORK
    source = open_source(cfg, work)
    tasks = _tasks(source, cfg, out)
    results = write_shards(tasks, cfg.workers, show_progress)
    shutil.rmtree(work, ignore_errors=True)

    splits, kept, skipped = {}, {}, []
    for split in SPLITS:
        mine = [r for r in results if r.split == split]
        shards = _drop_empty(mine, out / split)
        kept[split] = [pair for r in mine for pair in r.kept]
        skipped += [s for r in mine for s in r.skipped]
        splits[split] = split_entry(source.classes, [label for _, label in kept[split]], shards)

    subsets = _subsets(cfg, source, kept["train"], skipped)
    write_subsets(subsets, out / "subsets")
    manifest = build_manifest(source, splits, skipped, {name: len(keys) for name, keys in subsets.items()})
    write_json(out / MANIFEST, manifest)
    return manifest


def _tasks(source: Source, cfg: DataCfg, out: Path) -> list[ShardTask]:
    tasks = []
    for stream, split in enumerate(SPLITS):
        (out / split).mkdir(parents=True)
        plans = plan_shards(source.records[split], cfg.seed, stream, cfg.shard_size_mb * 2**20)
        tasks += [
            ShardTask(split, i, out / split / shard_name(i), records, source.readers[split], cfg.on_bad_image == "skip")
            for i, records in enumerate(plans)
        ]
    return tasks


def _drop_empty(results: list[ShardResult], directory: Path) -> list[ShardInfo]:
    """Shard infos in order; shards left empty by skipped images are removed and the rest renumbered."""
    infos = []
    for result in results:
        tar = directory / result.info.name
        if result.info.samples == 0:
            tar.unlink()
            tar.with_suffix(".idx").unlink()
            continue
        name = shard_name(len(infos))
        if name != tar.name:
            tar.rename(directory / name)
            tar.with_suffix(".idx").rename((directory / name).with_suffix(".idx"))
        infos.append(replace(result.info, name=name))
    return infos


def _subsets(cfg: DataCfg, source: Source, train: list[tuple[str, int]], skipped: list[dict]) -> dict[str, list[str]]:
    """The label subsets (sampled, or the published lists) and the validation slice, apart from them."""
    sub = cfg.subsets
    if sub.files is None:
        return sample_subsets(train, source.classes, sub.seed, sub.val_fraction)
    from sslflow.data.imagenet import key_of_file_name

    skipped_names = {Path(s["file"]).name for s in skipped}
    subsets = read_file_lists(sub.files, key_of_file_name, {k for k, _ in train}, skipped_names)
    labelled = {key for keys in subsets.values() for key in keys}
    return {**subsets, VAL: sample_val_slice(train, source.classes, sub.seed, sub.val_fraction, labelled)}
