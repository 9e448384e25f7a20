"""The features file: written a batch at a time, read memory-mapped, and still an ordinary .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sslflow.errors import UserError
from sslflow.eval.features import FeatureWriter, load_features

META = {"fingerprint": "f" * 64, "head_layers": 1, "backbone": "ResNet-18", "params_m": 11.2}


def write_batches(path, features, labels, keys, batch=7, total=None, dtype="float16"):
    writer = FeatureWriter(path, total=total or len(features), dtype=dtype, meta=META, desc="test")
    for start in range(0, len(features), batch):
        stop = start + batch
        writer.add(features[start:stop], labels[start:stop], keys[start:stop])
    return writer.close()


def sample(n=50, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 5, n), [f"k{i:04d}" for i in range(n)]


def test_streamed_file_is_the_npz_np_savez_writes(tmp_path):
    features, labels, keys = sample()
    assert write_batches(tmp_path / "train.npz", features, labels, keys) == 50
    with np.load(tmp_path / "train.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["features"], features.astype(np.float16))
        np.testing.assert_array_equal(npz["labels"], labels)
        assert npz["keys"].tolist() == keys
        assert str(npz["fingerprint"]) == META["fingerprint"] and int(npz["head_layers"]) == 1


@pytest.mark.parametrize("writer", ["streamed", "np.savez"])
def test_features_are_mapped_not_read(tmp_path, writer):
    features, labels, keys = sample()
    path = tmp_path / "train.npz"
    if writer == "streamed":
        write_batches(path, features, labels, keys, dtype="float32")
    else:  # a file written whole, as extract wrote them before streaming
        np.savez(path, features=features, labels=labels, keys=np.asarray(keys), **META)
    loaded = load_features(path, fingerprint=META["fingerprint"], method="simclr")
    assert isinstance(loaded.features, np.memmap) and Path(loaded.features.filename) == path.resolve()
    np.testing.assert_array_equal(loaded.features, features)
    assert loaded.labels.tolist() == labels.tolist() and loaded.keys.tolist() == keys
    assert (loaded.backbone, loaded.head_layers, loaded.params_m) == ("ResNet-18", 1, 11.2)


def test_a_compressed_npz_is_read_whole(tmp_path):
    features, labels, keys = sample()
    path = tmp_path / "train.npz"
    np.savez_compressed(path, features=features, labels=labels, keys=np.asarray(keys), **META)
    loaded = load_features(path, fingerprint=None, method="simclr")
    assert not isinstance(loaded.features, np.memmap)
    np.testing.assert_array_equal(loaded.features, features)


def test_fewer_rows_than_the_manifest_lists_is_an_error(tmp_path):
    features, labels, keys = sample()
    with pytest.raises(UserError, match=r"^test: the loader yielded 50 samples, the manifest lists 51$"):
        write_batches(tmp_path / "train.npz", features, labels, keys, total=51)


def test_repeated_keys_are_an_error(tmp_path):
    features, labels, keys = sample()
    keys[3] = keys[4]
    with pytest.raises(UserError, match=r"^test: the loader yielded 1 repeated sample key\(s\)$"):
        write_batches(tmp_path / "train.npz", features, labels, keys)


def test_a_file_without_labels_is_refused_by_name(tmp_path):
    features, _, keys = sample()
    np.savez(tmp_path / "train.npz", features=features, keys=np.asarray(keys), **META)
    with pytest.raises(UserError, match=r"train.npz: not a features file \(missing 'labels'\)$"):
        load_features(tmp_path / "train.npz", fingerprint=None, method="simclr")
    np.savez(tmp_path / "val.npz", labels=np.zeros(3), keys=np.asarray(keys[:3]), **META)
    with pytest.raises(UserError, match=r"val.npz: not a features file \(missing 'features'\)$"):
        load_features(tmp_path / "val.npz", fingerprint=None, method="simclr")
