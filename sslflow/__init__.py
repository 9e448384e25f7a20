"""sslflow: self-supervised image representation learning, from image folders to result tables."""

__version__ = "0.1.0"
