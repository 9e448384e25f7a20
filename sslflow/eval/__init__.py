"""Frozen features, linear probes, low-label classifiers, controls."""
