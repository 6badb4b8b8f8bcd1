"""Panoptic Quality (PQ / SQ / RQ) and mIoU."""
