"""Torch-free, code-free converters for PyTorch-world weights."""
