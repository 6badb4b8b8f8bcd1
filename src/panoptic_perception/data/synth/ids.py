"""Segment ids of the synthetic ground truth.

Stuff classes get one fixed segment per class, `train_id + 1` (so road, train id 0, is not void).
Things get `(train_id + 1) * THING_ID_STRIDE + track_id`: the class can be read back from the id
alone (Cityscapes' `label * 1000 + instance` idea) and the id persists across a drive because the
track id does. Everything fits the 24 bits of a COCO panoptic PNG.
"""

from __future__ import annotations

THING_ID_STRIDE = 100_000
MAX_TRACK_ID = THING_ID_STRIDE - 1


def stuff_segment_id(train_id: int) -> int:
    return int(train_id) + 1


def thing_segment_id(train_id: int, track_id: int) -> int:
    if not 1 <= track_id <= MAX_TRACK_ID:
        raise ValueError(f"track id {track_id} outside 1..{MAX_TRACK_ID}")
    return (int(train_id) + 1) * THING_ID_STRIDE + int(track_id)


def train_id_of_segment(segment_id: int) -> int:
    """Inverse of both functions above (segment id 0 is void and has no class)."""
    if segment_id >= THING_ID_STRIDE:
        return segment_id // THING_ID_STRIDE - 1
    return segment_id - 1
