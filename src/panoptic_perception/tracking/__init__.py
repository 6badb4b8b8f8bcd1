"""Tracking over time: ego motion, fused grid, tracked objects."""
