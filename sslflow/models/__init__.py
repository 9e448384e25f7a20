"""Backbones (torchvision ResNets, width multiplier, small-image stem) and MLP heads."""
