"""`python -m sslflow` (and `torchrun -m sslflow pretrain ...`) enter the same CLI."""

from sslflow.cli import main

raise SystemExit(main())
