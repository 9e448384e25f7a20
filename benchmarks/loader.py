"""Loader throughput, as `sslflow bench loader` (this script only forwards its arguments).

python benchmarks/loader.py                         # project shards at augment.size
python benchmarks/loader.py --size 224 --rounds 3   # ImageNet-sized JPEGs, interleaved rounds
"""

import sys

from sslflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "loader", *sys.argv[1:]]))
