"""The kNN monitor: how linearly useful the features are becoming, without training a probe.

Weighted k-nearest-neighbour vote (Wu et al. 2018, as most SSL code monitors):
cosine similarity between L2-normalised features, each of the k neighbours
votes for its label with weight exp(sim / t).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module, batches: Iterable[dict], device: torch.device, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of the loader's eval batches (at most `limit` images), with BN in eval mode."""
    was_training = encoder.training
    encoder.eval()
    features, labels, seen = [], [], 0
    for batch in batches:
        image = batch["image"].to(device, non_blocking=True)
        features.append(encoder(image).float().cpu())
        labels.append(batch["label"].cpu())
        seen += image.shape[0]
        if limit is not None and seen >= limit:
            break
    encoder.train(was_training)
    feats, labs = torch.cat(features), torch.cat(labels)
    return (feats[:limit], labs[:limit]) if limit is not None else (feats, labs)


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    k: int,
    temperature: float,
    num_classes: int,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predicted class of every query row."""
    bank = F.normalize(train_features.float(), dim=1)
    k = min(k, bank.shape[0])
    predictions = []
    for start in range(0, query_features.shape[0], chunk):
        query = F.normalize(query_features[start : start + chunk].float(), dim=1)
        sims, index = (query @ bank.T).topk(k, dim=1)
        votes = torch.zeros(query.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[index], (sims / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_top1(
    train: tuple[torch.Tensor, torch.Tensor],
    query: tuple[torch.Tensor, torch.Tensor],
    k: int,
    temperature: float,
    num_classes: int,
) -> float:
    predicted = knn_predict(train[0], train[1], query[0], k, temperature, num_classes)
    return (predicted == query[1]).float().mean().item()
