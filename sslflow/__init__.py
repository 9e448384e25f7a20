"""sslflow: self-supervised image representation learning, from image folders to result tables."""

__version__ = "0.1.0"
__all__ = ["load_encoder"]


def __getattr__(name: str):
    """`sslflow.load_encoder`, imported on first use: `import sslflow` stays cheap (no torch)."""
    if name == "load_encoder":
        # by name, not an import statement: no stage reaches sslflow.load through this package, so
        # tests/test_stage_deps.py must not count it as every stage's dependency
        import importlib

        return importlib.import_module("sslflow.load").load_encoder
    raise AttributeError(f"module 'sslflow' has no attribute {name!r}")
