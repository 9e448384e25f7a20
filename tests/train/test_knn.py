"""The kNN monitor against a direct per-query computation."""

from __future__ import annotations

import numpy as np
import torch

from sslflow.train.knn import knn_predict


def brute_force(bank, labels, queries, k, t, classes):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    out = []
    for q in queries:
        sims = bank @ (q / np.linalg.norm(q))
        nearest = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(classes)
        for i in nearest:
            votes[labels[i]] += np.exp(sims[i] / t)
        out.append(int(np.argmax(votes)))
    return np.array(out)


def test_weighted_vote_matches_brute_force():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(300, 16)), rng.normal(size=(50, 16))
    labels = rng.integers(0, 5, 300)
    got = knn_predict(
        torch.tensor(bank), torch.tensor(labels), torch.tensor(queries), k=20, temperature=0.07, num_classes=5, chunk=16
    )
    assert np.array_equal(got.numpy(), brute_force(bank, labels, queries, 20, 0.07, 5))


def test_copies_of_the_bank_find_their_own_label():
    rng = np.random.default_rng(1)
    bank = torch.tensor(rng.normal(size=(40, 8)))
    labels = torch.arange(40) % 4
    assert torch.equal(knn_predict(bank, labels, bank * 3.0, k=1, temperature=0.07, num_classes=4), labels)
