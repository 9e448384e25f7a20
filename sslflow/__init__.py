"""sslflow: self-supervised image representation learning, from image folders to result tables."""

import os

# Every sslflow module is imported before torch loads OpenMP. Idle OpenMP threads then sleep
# instead of spinning, so torch's threads and the loader's (DALI) do not starve each other on
# a few cores: spinning makes conv and L-BFGS steps several times slower on 2 busy cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
