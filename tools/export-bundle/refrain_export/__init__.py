"""Refrain's DiffRhythm bundle exporter: own DiT modules, strict checkpoint loading, ONNX export
and checks, the reference sampler in PyTorch (see tools/export-bundle/README.md)."""
