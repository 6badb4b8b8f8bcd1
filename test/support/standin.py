"""A small stand-in with the PanopticModel output contract, for runtime tests that need no real weights.

Imported by the runtime tests. The real model is used where the
test is about the real graph (equivalence, op coverage).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 5
NUM_DETECTIONS = 4
NUM_SEGMENTS = 6


class StandInPanoptic(nn.Module):
    """conv features -> semantic logits, a fixed number of 'detections' and a fused segment map."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, num_classes, 1)
        self.score = nn.Linear(8, NUM_DETECTIONS)

    def forward(self, image: torch.Tensor, image_size: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        x = (image - self.pixel_mean) / self.pixel_std
        feat = F.relu(self.stem(x))
        h, w = image.shape[-2:]
        logits = F.interpolate(self.head(feat), size=(h, w), mode="bilinear", align_corners=False)
        pooled = feat.mean(dim=(2, 3))
        scores = torch.sigmoid(self.score(pooled))[0]
        classes = torch.arange(NUM_DETECTIONS, dtype=torch.int64) % logits.shape[1]
        # boxes span the image region (image_size, the backends' second graph input) or the whole input
        box_w = torch.full_like(scores, float(w)) if image_size is None else image_size[1].expand_as(scores)
        box_h = torch.full_like(scores, float(h)) if image_size is None else image_size[0].expand_as(scores)
        boxes = torch.stack([torch.zeros_like(scores), torch.zeros_like(scores), box_w, box_h], dim=1)
        mask_probs = torch.sigmoid(logits[0, :NUM_DETECTIONS])
        category_map = logits[0].argmax(dim=0).to(torch.int32)
        segment_map = (category_map + 1).to(torch.int32)
        seg_ids = torch.arange(NUM_SEGMENTS, dtype=torch.int32)
        area = (segment_map.unsqueeze(0) == (seg_ids + 1).view(-1, 1, 1)).sum(dim=(1, 2)).to(torch.int32)
        return {
            "boxes": boxes, "scores": scores, "classes": classes, "valid": scores > 0.5,
            "mask_probs": mask_probs, "sem_logits": logits,
            "segment_map": segment_map, "category_map": category_map,
            "segment_category": seg_ids, "segment_is_thing": seg_ids >= 3,
            "segment_score": torch.ones(NUM_SEGMENTS), "segment_area": area,
            "segment_valid": area > 0,
        }


def standin_model(seed: int = 0) -> StandInPanoptic:
    torch.manual_seed(seed)
    return StandInPanoptic().eval()


def standin_frame(height: int = 64, width: int = 128, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((1, 3, height, width), generator=gen) * 255.0



