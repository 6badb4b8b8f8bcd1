"""Synthetic street world, KITTI raw reader/writer, dataset loaders."""
