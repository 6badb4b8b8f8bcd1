"""Panoptic FPN in plain PyTorch: static shapes, export-ready."""
