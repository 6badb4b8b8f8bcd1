"""Panoptic fusion inside the graph: instances + semantic logits -> segment-id map + segment table.

Three rules (FusionConfig.mode), all static-shape tensor code so the fusion exports with the net:

panoptic_fpn  detectron2's combine_semantic_and_instance_outputs (Panoptic FPN, Kirillov et al. 2019):
              instances by descending score; stop below instance_score_threshold; binarise at
              mask_threshold (>=, as detectron2); skip an instance whose mask overlaps already-taken pixels by more than
              overlap_threshold of its area, else it takes its untaken pixels. The remaining pixels
              take the semantic argmax over ALL channels; where that is a thing class (or the
              "things" channel) they stay void, as in detectron2 (thing pixels no detection claimed
              are not stuff). Stuff segments smaller than stuff_area_limit_px(H*W) become void.
              The sequential rule is a fixed-length loop over the D score-ranked slots, unrolled
              at export (D is static and small); each step is a few whole-image vector ops.
jsis          JSIS-Net (de Geus et al. 2018, section 2.2): where instance masks overlap, the pixel goes to the
              instance with the highest mask probability there; thing classes are removed from the
              semantic output by taking the most probable STUFF class at every pixel; instance
              pixels override stuff; a stuff class with fewer visible pixels than the area limit is
              replaced, at its pixels, by the best-scoring stuff class whose area is above it.
conv_head     the Inria report "Contribution to Panoptic Segmentation":
              ConvPanopticHead refines every instance mask from (mask, semantic
              probabilities) with its class's CNN, then the jsis rule.

Segment ids are slot index + 1: slots 0..D-1 are the detections in their input order, slots
D..D+S_stuff-1 one per stuff class (label-space order). 0 is void. A slot is valid iff it owns
at least one pixel.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.labels import LabelSpace
from panoptic_perception.model.capture import is_capturing
from panoptic_perception.model.config import FusionConfig
from panoptic_perception.model.histogram import IdHistograms
from panoptic_perception.model.panoptic_head import ConvPanopticHead

SEMANTIC_MODES = ("all", "stuff_plus_things")


def first_argmax(values: torch.Tensor) -> torch.Tensor:
    """argmax over dim 0 of [C, P] -> int64 [P], the first index on ties (as torch.argmax).

    amax, then one compare-and-select per channel from the last to the first: on CPU torch's argmax
    over a leading dim of ~10^5 columns is several times slower, and these are elementary ops for
    TensorRT (C is static and small: unrolled).
    """
    best = values.amax(dim=0)
    index = torch.zeros(values.shape[1:], dtype=torch.int64, device=values.device)
    for channel in range(int(values.shape[0]) - 1, -1, -1):
        index = torch.where(values[channel] == best, channel, index)
    return index


def semantic_channel_count(label_space: LabelSpace, semantic_mode: str) -> int:
    """Channels of the semantic logits: every class ("all") or stuff classes + one things channel."""
    if semantic_mode == "all":
        return label_space.num_classes
    if semantic_mode == "stuff_plus_things":
        return len(label_space.stuff_ids) + 1
    raise ConfigError(f"semantic mode must be one of {', '.join(SEMANTIC_MODES)}, got {semantic_mode!r}")


class PanopticFusion(nn.Module):
    """forward(mask_probs [D,H,W], scores [D], classes [D], valid [D], sem_logits [1,C,H,W]) -> dict.

    Output keys: segment_map int32 [H,W]; category_map int32 [H,W] (ignore_id on void);
    segment_category int64 [S]; segment_is_thing bool [S]; segment_score float [S] (detection score
    for things, mean semantic probability over the segment for stuff); segment_area int64 [S];
    segment_valid bool [S]; num_segments int64 []. S = D + number of stuff classes. Boxes are not
    computed here: the Pipeline measures them on the image-size map it returns.
    """

    def __init__(
        self,
        config: FusionConfig,
        label_space: LabelSpace,
        semantic_mode: str,
        height: int,
        width: int,
        max_detections: int,
        conv_head: Optional[ConvPanopticHead] = None,
    ) -> None:
        super().__init__()
        if height <= 0 or width <= 0 or max_detections < 0:
            raise ConfigError(f"fusion: bad size {height}x{width} or max_detections {max_detections}")
        if config.mode not in ("panoptic_fpn", "jsis", "conv_head"):
            raise ConfigError(f"fusion.mode: unknown mode {config.mode!r}")
        self.mode = config.mode
        self.semantic_mode = semantic_mode
        self.height = int(height)
        self.width = int(width)
        self.max_detections = int(max_detections)
        self.score_threshold = float(config.instance_score_threshold)
        self.overlap_threshold = float(config.overlap_threshold)
        self.mask_threshold = float(config.mask_threshold)
        # At the image's resolution the limit is in image pixels, as detectron2 counts it.
        self.stuff_area_limit_px = int(config.stuff_area_px if config.resolution == "image"
                                       else config.stuff_area_limit_px(self.height * self.width))
        self.ignore_id = int(label_space.ignore_id)
        self.num_classes = label_space.num_classes
        self.semantic_channels = semantic_channel_count(label_space, semantic_mode)

        stuff_ids = label_space.stuff_ids
        thing_ids = label_space.thing_ids
        self.num_stuff = len(stuff_ids)
        if semantic_mode == "all":
            stuff_channels = list(stuff_ids)
        else:
            stuff_channels = list(range(self.num_stuff))  # the things channel is the last one
        channel_to_slot = [-1] * self.semantic_channels
        for slot, channel in enumerate(stuff_channels):
            channel_to_slot[channel] = slot
        thing_index = [-1] * self.num_classes
        for index, category in enumerate(thing_ids):
            thing_index[category] = index
        self.register_buffer("stuff_ids", torch.tensor(stuff_ids, dtype=torch.int64), persistent=False)
        self.register_buffer("stuff_channels", torch.tensor(stuff_channels, dtype=torch.int64),
                             persistent=False)
        self.register_buffer("channel_to_stuff_slot", torch.tensor(channel_to_slot, dtype=torch.int64),
                             persistent=False)
        self.register_buffer("thing_index_of_category", torch.tensor(thing_index, dtype=torch.int64),
                             persistent=False)

        if self.mode == "conv_head":
            if not thing_ids:
                raise ConfigError(f"fusion.mode conv_head needs thing classes; {label_space.name} has none")
            if conv_head is None:
                conv_head = ConvPanopticHead(len(thing_ids), self.semantic_channels)
            if (conv_head.num_thing_classes, conv_head.semantic_channels) != (len(thing_ids),
                                                                                self.semantic_channels):
                raise ConfigError(
                    f"fusion: conv head built for {conv_head.num_thing_classes} thing classes and "
                    f"{conv_head.semantic_channels} semantic channels, label space needs {len(thing_ids)} "
                    f"and {self.semantic_channels}"
                )
        self.conv_head = conv_head if self.mode == "conv_head" else None

    # ------------------------------------------------------------------ inputs
    def _check(self, mask_probs, scores, classes, valid, sem_logits) -> None:
        num = mask_probs.shape[0]
        if tuple(mask_probs.shape) != (num, self.height, self.width):
            raise InputError(f"fusion: mask_probs must be [D, {self.height}, {self.width}], "
                             f"got {tuple(mask_probs.shape)}")
        for name, tensor in (("scores", scores), ("classes", classes), ("valid", valid)):
            if tuple(tensor.shape) != (num,):
                raise InputError(f"fusion: {name} must be [{num}], got {tuple(tensor.shape)}")
        if sem_logits.dim() != 4 or sem_logits.shape[0] != 1 or sem_logits.shape[1] != self.semantic_channels:
            raise InputError(f"fusion: sem_logits must be [1, {self.semantic_channels}, H, W], "
                             f"got {tuple(sem_logits.shape)}")

    def _semantic(self, sem_logits: torch.Tensor) -> torch.Tensor:
        if tuple(sem_logits.shape[-2:]) != (self.height, self.width):
            sem_logits = F.interpolate(sem_logits, size=(self.height, self.width), mode="bilinear",
                                       align_corners=False)
        return sem_logits[0].reshape(self.semantic_channels, self.height * self.width)

    def _eligible(self, scores: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        category = classes.to(torch.int64).clamp(min=0, max=self.num_classes - 1)
        is_thing = self.thing_index_of_category[category] >= 0
        in_range = (classes >= 0) & (classes < self.num_classes)
        return valid & in_range & is_thing & (scores >= self.score_threshold)

    # ------------------------------------------------------------------ rules
    def _conv_head_logits(self, mask_probs: torch.Tensor, classes: torch.Tensor, sem: torch.Tensor,
                          used_classes_only: bool = False) -> torch.Tensor:
        """The conv head's refined-mask logits [D, H, W] from float pasted masks [D, H, W], classes [D]
        and the semantic logits at fusion size [C, H*W]."""
        category = classes.to(torch.int64).clamp(min=0, max=self.num_classes - 1)
        thing_index = self.thing_index_of_category[category].clamp(min=0)
        sem_probs = torch.softmax(sem, dim=0).reshape(1, self.semantic_channels, self.height, self.width)
        return self.conv_head.forward_logits(mask_probs, sem_probs, thing_index, used_classes_only=used_classes_only)

    def conv_head_logits(self, mask_probs: torch.Tensor, classes: torch.Tensor,
                         sem_logits: torch.Tensor) -> torch.Tensor:
        """Refined-mask logits [D, H, W] from the network's raw mask_probs [D, H, W], classes [D] and
        sem_logits [1, C, h, w]: what conv_head fusion thresholds, for training the head (stage
        panoptic_head) on exactly the inputs it gets at inference. D may be any subset of detections.
        """
        if self.conv_head is None:
            raise ConfigError(f"fusion mode {self.mode!r} has no conv head")
        if mask_probs.dim() != 3 or tuple(mask_probs.shape[1:]) != (self.height, self.width) \
                or tuple(classes.shape) != (mask_probs.shape[0],):
            raise InputError(f"fusion: conv_head_logits needs mask_probs [D, {self.height}, {self.width}] and "
                             f"classes [D], got {tuple(mask_probs.shape)} and {tuple(classes.shape)}")
        if sem_logits.dim() != 4 or sem_logits.shape[0] != 1 or sem_logits.shape[1] != self.semantic_channels:
            raise InputError(f"fusion: sem_logits must be [1, {self.semantic_channels}, H, W], "
                             f"got {tuple(sem_logits.shape)}")
        return self._conv_head_logits(mask_probs.to(torch.float32), classes,
                                      self._semantic(sem_logits.to(torch.float32)), used_classes_only=True)

    def _instances_by_score(self, probs: torch.Tensor, scores: torch.Tensor,
                            eligible: torch.Tensor) -> torch.Tensor:
        """detectron2's sequential overlap rule on mask probabilities [D, P] -> owner [P] (index + 1, 0 = free).

        Masks are binarised to float 0/1: each step is then a dot product and three whole-image
        multiply-adds (exact: counts stay far below 2^24), several times cheaper on CPU than bool
        reductions, and only elementwise ops and a matmul for TensorRT. Eager inference works on the
        eligible detections only (the others never take a pixel); a captured graph unrolls all D.
        """
        num, pixels = probs.shape
        if num == 0:
            return torch.zeros(pixels, dtype=torch.int64, device=probs.device)
        ranked = torch.where(eligible, scores.to(torch.float32), torch.full_like(scores, float("-inf"),
                                                                                  dtype=torch.float32))
        order = torch.topk(ranked, num, sorted=True).indices
        capturing = is_capturing()
        if not capturing:
            order = order[eligible[order]]
        # >=, as detectron2's paste_masks_in_image binarises (a probability of exactly 0.5 is mask)
        binary_ranked = (probs[order] >= self.mask_threshold).to(torch.float32)
        areas = binary_ranked.sum(dim=-1)
        ok_ranked = (eligible[order] & (areas > 0)).to(torch.float32)
        slot_ids = (order + 1).to(torch.float32)
        taken = torch.zeros(pixels, dtype=torch.float32, device=probs.device)
        owner = torch.zeros(pixels, dtype=torch.float32, device=probs.device)
        ranks = range(num) if capturing else ok_ranked.nonzero()[:, 0].tolist()
        for rank in ranks:
            mask = binary_ranked[rank]
            overlap = torch.dot(mask, taken)
            fits = (overlap / areas[rank].clamp(min=1) <= self.overlap_threshold).to(torch.float32)
            new = mask * (1.0 - taken) * (ok_ranked[rank] * fits)
            owner = owner + new * slot_ids[rank]
            taken = taken + new
        return owner.to(torch.int64)

    def _instances_by_probability(self, probs: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
        """JSIS per-pixel rule -> owner [P]: the most probable predicting instance at each pixel."""
        num, pixels = probs.shape
        if num == 0:
            return torch.zeros(pixels, dtype=torch.int64, device=probs.device)
        predicts = eligible[:, None] & (probs > self.mask_threshold)
        candidate = torch.where(predicts, probs, torch.full_like(probs, -1.0))
        best = candidate.amax(dim=0)
        who = first_argmax(candidate)
        return torch.where(best >= 0, who + 1, torch.zeros_like(who))

    def _stuff_slots_fpn(self, sem: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        """Stuff slot per pixel (-1 void): argmax over all channels, thing winners and small segments void."""
        slot = self.channel_to_stuff_slot[first_argmax(sem)]
        slot = torch.where(free, slot, torch.full_like(slot, -1))
        area = self._slot_areas(slot)
        # Entry 0 stands for void (slot -1), so the lookup index is never negative.
        big = torch.cat([area.new_zeros(1, dtype=torch.bool), area >= self.stuff_area_limit_px])
        return torch.where(big[slot + 1], slot, torch.full_like(slot, -1))

    def _stuff_slots_jsis(self, sem: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        """Stuff slot per pixel (-1 void): best stuff class; small classes give way to the best big one."""
        stuff_logits = sem[self.stuff_channels]  # [S_stuff, P]
        slot = first_argmax(stuff_logits)
        visible = torch.where(free, slot, torch.full_like(slot, -1))
        big = self._slot_areas(visible) >= self.stuff_area_limit_px
        masked = torch.where(big[:, None], stuff_logits, torch.full_like(stuff_logits, float("-inf")))
        replaced = first_argmax(masked)
        return torch.where(free & big.any(), replaced, torch.full_like(replaced, -1))

    def _slot_areas(self, slot: torch.Tensor) -> torch.Tensor:
        """Pixels per stuff slot [S_stuff] of a slot map [P] (-1 = none)."""
        counts = IdHistograms((slot + 1).reshape(self.height, self.width), self.num_stuff + 1).counts()
        return counts[1:].round().to(torch.int64)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        mask_probs: torch.Tensor,
        scores: torch.Tensor,
        classes: torch.Tensor,
        valid: torch.Tensor,
        sem_logits: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        self._check(mask_probs, scores, classes, valid, sem_logits)
        num = int(mask_probs.shape[0])
        pixels = self.height * self.width
        sem = self._semantic(sem_logits.to(torch.float32))
        eligible = self._eligible(scores, classes, valid.to(torch.bool))
        probs = mask_probs.to(torch.float32)

        if self.mode == "panoptic_fpn":
            owner = self._instances_by_score(probs.reshape(num, pixels), scores, eligible)
        else:
            if self.conv_head is not None:
                probs = torch.sigmoid(self._conv_head_logits(probs, classes, sem))
            owner = self._instances_by_probability(probs.reshape(num, pixels), eligible)

        free = owner == 0
        if self.num_stuff > 0:
            if self.mode == "panoptic_fpn":
                stuff_slot = self._stuff_slots_fpn(sem, free)
            else:
                stuff_slot = self._stuff_slots_jsis(sem, free)
            stuff_ids = torch.where(stuff_slot >= 0, stuff_slot + (num + 1), torch.zeros_like(stuff_slot))
            segment_flat = torch.where(free, stuff_ids, owner)
        else:
            segment_flat = owner
        return self._table(segment_flat, scores, classes, sem, num)

    def _table(self, segment_flat: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
               sem: torch.Tensor, num: int) -> Dict[str, torch.Tensor]:
        slots = num + self.num_stuff
        device = segment_flat.device
        segment_map = segment_flat.reshape(self.height, self.width)
        stats = IdHistograms(segment_map, slots + 1)
        area = stats.counts()[1:].round().to(torch.int64)
        seg_valid = area > 0

        thing_category = classes.to(torch.int64)
        category = torch.cat([thing_category, self.stuff_ids])
        is_thing = torch.cat([torch.ones(num, dtype=torch.bool, device=device),
                              torch.zeros(self.num_stuff, dtype=torch.bool, device=device)])
        if self.num_stuff > 0:
            # Each pixel's probability of its own stuff segment's class (any channel elsewhere: the
            # sums of thing and void ids are dropped), summed per segment.
            stuff_slot = (segment_flat - (num + 1)).clamp(min=0, max=self.num_stuff - 1)
            channel = self.stuff_channels[stuff_slot]
            pixel_prob = torch.softmax(sem, dim=0).gather(0, channel[None, :])[0]
            prob_sum = stats.counts(pixel_prob.reshape(self.height, self.width))[num + 1:]
            stuff_score = prob_sum / area[num:].clamp(min=1).to(torch.float32)
        else:
            stuff_score = sem.new_zeros(0)
        score = torch.cat([scores.to(torch.float32), stuff_score.to(torch.float32)])

        lookup = torch.cat([torch.full((1,), self.ignore_id, dtype=torch.int64, device=device), category])
        return {
            "segment_map": segment_map.to(torch.int32),
            "category_map": lookup[segment_map].to(torch.int32),
            "segment_category": category,
            "segment_is_thing": is_thing,
            "segment_score": score,
            "segment_area": area,
            "segment_valid": seg_valid,
            "num_segments": seg_valid.sum().to(torch.int64),
        }
