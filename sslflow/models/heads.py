"""MLP heads: the SimCLR projection head g(h) and the pretext-task classifiers.

The projection head is a Sequential of layers, each hidden layer a
(Linear, BatchNorm, ReLU) block, so `head[:k]` is "the first k layers" that
SimCLRv2 keeps in the encoder for fine-tuning.
"""

from __future__ import annotations

from torch import nn


def projection_head(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Sequential:
    """SimCLR v1 (layers=2): W2 relu(BN(W1 h)); v2 (layers=3) adds one more hidden block."""
    if layers < 1:
        raise ValueError("a projection head has at least one layer")
    blocks: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        # no bias: the BatchNorm right after it has one
        blocks.append(
            nn.Sequential(nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True))
        )
        dim = hidden_dim
    blocks.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*blocks)


def head_cfg(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> dict:
    """The arguments of `projection_head`, as stored in encoder.pt to rebuild it."""
    return {"in_dim": in_dim, "hidden_dim": hidden_dim, "out_dim": out_dim, "layers": layers}


def head_layers_to_keep(setting: str | int, head_cfg: dict | None) -> int:
    """How many projection-head layers the features (extract) and fine-tuning (lowlabel) keep on the backbone.

    'auto': 1 when the head has 3 layers (SimCLRv2 fine-tunes from its first
    layer), else 0. n: n where the head has more than n layers, else 0, so one
    setting serves every method: with 1, SimCLRv2 and SimCLR give their first
    head layer, methods without a head their backbone output.
    """
    layers = (head_cfg or {}).get("layers", 0)
    if setting == "auto":
        return 1 if layers == 3 else 0
    return int(setting) if layers > int(setting) else 0


def classifier(in_dim: int, num_classes: int, hidden_dim: int = 0) -> nn.Module:
    """Linear classifier, or a one-hidden-layer MLP when hidden_dim > 0 (relative position's fusion head)."""
    if hidden_dim <= 0:
        return nn.Linear(in_dim, num_classes)
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, num_classes),
    )
