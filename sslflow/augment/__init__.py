"""One augmentation spec, two backends (DALI, torchvision v2), and the view makers of each method."""
