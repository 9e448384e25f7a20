"""Pretraining step throughput, as `sslflow bench pretrain` (this script only forwards its arguments).

python benchmarks/pretrain.py                       # this params file: its model, views and shards
python benchmarks/pretrain.py --arch resnet50 --size 224 --batch 256 --compile   # the GPU measurement
"""

import sys

from sslflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "pretrain", *sys.argv[1:]]))
