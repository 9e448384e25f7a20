"""The `data` params: refused values name the key."""

from __future__ import annotations

import pytest

from sslflow.errors import UserError
from sslflow.params import load_params
from tests.conftest import REPO

PARAMS = REPO / "params.yaml"


def test_repo_defaults():
    data = load_params(PARAMS).data
    assert data.layout == "mnist-idx" and str(data.source) == "/usr/share/datasets/fashion-mnist"
    assert data.on_bad_image == "error" and len(data.class_names) == 10


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.shard_size_mb=0"], "data.shard_size_mb: Input should be greater than 0"),
        (["data.workers=-1"], "data.workers: Input should be greater than or equal to 0"),
        (["data.on_bad_image=ignore"], "data.on_bad_image: Input should be 'error' or 'skip'"),
        (["data.layout=tfrecord"], "data.layout: Input should be 'mnist-idx', 'imagefolder' or 'imagenet'"),
        (["data.layout=imagefolder"], "class_names is for the mnist-idx layout only"),
        (["data.class_names=[a, a]"], "class_names has duplicates"),
        (["data.val_labels=x.csv"], "val_labels is for the imagenet layout only"),
        (
            ["data.layout=imagenet", "data.class_names=null", "data.subsets.files={1pct: a.txt}"],
            "give both 1pct and 10pct lists",
        ),
        (["data.shards=3"], "data.shards: unknown key"),
    ],
)
def test_refused(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_params(PARAMS, overrides)
