from __future__ import annotations

import math

import pytest
import torch

from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.labels import load_label_space
from panoptic_perception.model.config import FusionConfig
from panoptic_perception.model.fusion import PanopticFusion

H, W = 16, 24
ROAD, SIDEWALK, BUILDING, SKY = 0, 1, 2, 10
PERSON, CAR = 11, 13
LABELS = load_label_space("cityscapes")


def make_fusion(mode: str = "panoptic_fpn", semantic_mode: str = "all", stuff_area_px: int = 10,
                max_detections: int = 4, **overrides) -> PanopticFusion:
    # Reference area = our area, so stuff_area_px is the limit in pixels unless a test scales it.
    config = FusionConfig(mode=mode, stuff_area_px=stuff_area_px, stuff_area_reference_px=H * W, **overrides)
    return PanopticFusion(config, LABELS, semantic_mode, H, W, max_detections)


def sem_from_labels(labels: torch.Tensor, channels: int = 19,
                    second: torch.Tensor | None = None) -> torch.Tensor:
    """Logits: 5 on the labelled channel, 2 on an optional runner-up channel, 0 elsewhere."""
    logits = torch.zeros(1, channels, H, W)
    logits[0].scatter_(0, labels[None].long(), 5.0)
    if second is not None:
        logits[0].scatter_(0, second[None].long(), 2.0)
    return logits


def box_mask(x1: int, y1: int, x2: int, y2: int, prob: float = 0.9) -> torch.Tensor:
    mask = torch.zeros(H, W)
    mask[y1:y2, x1:x2] = prob
    return mask


def detections(masks, scores, classes, valid=None, total: int = 4):
    """Pad to `total` slots with garbage that must be ignored (valid=False)."""
    num = len(masks)
    mask_probs = torch.full((total, H, W), 0.95)
    mask_probs[:num] = torch.stack(masks) if masks else mask_probs[:0]
    score = torch.full((total,), 0.99)
    score[:num] = torch.tensor(scores, dtype=torch.float32)
    cls = torch.full((total,), CAR, dtype=torch.int64)
    cls[:num] = torch.tensor(classes, dtype=torch.int64)
    ok = torch.zeros(total, dtype=torch.bool)
    ok[:num] = True if valid is None else torch.tensor(valid)
    return mask_probs, score, cls, ok


def road_sky() -> torch.Tensor:
    labels = torch.full((H, W), ROAD)
    labels[:6] = SKY
    return labels


# ---------------------------------------------------------------- panoptic_fpn (detectron2)
def test_fpn_overlap_rule_drops_or_trims_later_instances():
    a = box_mask(2, 8, 10, 14)  # 48 px, best score
    b = box_mask(4, 9, 10, 14)  # 30 px, all inside a: overlap 100% > 50% -> dropped
    c = box_mask(8, 8, 16, 14)  # 48 px, 12 overlap with a (25%) -> kept, trimmed to 36 px
    dets = detections([c, a, b], [0.7, 0.9, 0.8], [CAR, CAR, PERSON])
    out = make_fusion()(*dets, sem_from_labels(road_sky()))
    seg = out["segment_map"]
    assert out["segment_valid"][:3].tolist() == [True, True, False]
    assert out["segment_area"][:3].tolist() == [36, 48, 0]
    assert (seg[8:14, 2:10] == 2).all()  # a, slot 1, keeps its overlap with c
    assert (seg[8:14, 10:16] == 1).all()
    assert not (seg == 3).any()
    assert torch.equal((seg == 1).nonzero().amin(0), torch.tensor([8, 10]))  # c lost its left part


def test_fpn_overlap_exactly_at_threshold_is_kept():
    a = box_mask(0, 8, 8, 12)  # 32 px
    b = box_mask(4, 8, 12, 12)  # 32 px, overlap 16 = 0.5 of its area: not more than 0.5 -> kept
    out = make_fusion()(*detections([a, b], [0.9, 0.8], [CAR, CAR]), sem_from_labels(road_sky()))
    assert out["segment_area"][:2].tolist() == [32, 16]


def test_fpn_score_threshold_and_mask_threshold():
    a = box_mask(0, 8, 6, 12, prob=0.9)
    b = box_mask(10, 8, 16, 12, prob=0.9)
    c = box_mask(18, 8, 22, 12, prob=0.5)  # exactly at mask_threshold: foreground (>=, as detectron2)
    d = box_mask(18, 2, 22, 6, prob=0.4999)  # just below: not foreground
    dets = detections([a, b, c, d], [0.49, 0.5, 0.9, 0.9], [CAR, CAR, CAR, CAR])
    out = make_fusion()(*dets, sem_from_labels(road_sky()))
    assert out["segment_valid"][:4].tolist() == [False, True, True, False]
    assert out["segment_area"][1] == 24 and out["segment_area"][2] == 16


def test_fpn_unclaimed_thing_pixels_are_void_and_small_stuff_is_void():
    labels = road_sky()
    labels[10:12, 2:6] = CAR  # semantic says car but no detection: void in detectron2's rule
    labels[13:16, 20:23] = SIDEWALK  # 9 px < 10 px limit: void
    out = make_fusion()(*detections([], [], []), sem_from_labels(labels))
    seg, cats = out["segment_map"], out["category_map"]
    assert (seg[10:12, 2:6] == 0).all() and (cats[10:12, 2:6] == LABELS.ignore_id).all()
    assert (seg[13:16, 20:23] == 0).all()
    road_slot = 4 + LABELS.stuff_ids.index(ROAD)
    assert (seg[6:10] == road_slot + 1).all()
    assert (cats[6:10] == ROAD).all()
    sidewalk_slot = 4 + LABELS.stuff_ids.index(SIDEWALK)
    assert not out["segment_valid"][sidewalk_slot]


def test_stuff_area_limit_boundary_and_scaling():
    labels = road_sky()
    labels[12:14, 0:5] = SIDEWALK  # exactly 10 px
    out = make_fusion(stuff_area_px=10)(*detections([], [], []), sem_from_labels(labels))
    assert out["segment_area"][4 + LABELS.stuff_ids.index(SIDEWALK)] == 10
    out = make_fusion(stuff_area_px=11)(*detections([], [], []), sem_from_labels(labels))
    assert out["segment_area"][4 + LABELS.stuff_ids.index(SIDEWALK)] == 0
    # The limit scales with the input area: 4096 px at 1024x2048 is 240 px at 640x192.
    config = FusionConfig(stuff_area_px=4096, stuff_area_reference_px=1024 * 2048)
    assert config.stuff_area_limit_px(640 * 192) == math.ceil(4096 * 640 * 192 / (1024 * 2048)) == 240
    fusion = PanopticFusion(FusionConfig(stuff_area_px=40, stuff_area_reference_px=4 * H * W), LABELS, "all",
                            H, W, 4)
    assert fusion.stuff_area_limit_px == 10


# ---------------------------------------------------------------- jsis
def test_jsis_pixel_goes_to_most_probable_instance():
    a = box_mask(2, 8, 12, 14, prob=0.7)
    b = box_mask(8, 8, 18, 14, prob=0.9)  # lower score, higher probability on the overlap
    out = make_fusion("jsis")(*detections([a, b], [0.95, 0.6], [CAR, PERSON]), sem_from_labels(road_sky()))
    seg = out["segment_map"]
    assert (seg[8:14, 8:12] == 2).all()
    assert (seg[8:14, 2:8] == 1).all()
    assert out["segment_area"][:2].tolist() == [36, 60]
    # detectron2's rule instead gives the overlap to the higher-scored a.
    fpn = make_fusion()(*detections([a, b], [0.95, 0.6], [CAR, PERSON]), sem_from_labels(road_sky()))
    assert (fpn["segment_map"][8:14, 8:12] == 1).all()


def test_jsis_replaces_thing_classes_by_most_probable_stuff():
    labels = road_sky()
    labels[10:14, 2:8] = CAR
    runner_up = torch.full((H, W), BUILDING)
    runner_up[10:14, 2:8] = SIDEWALK
    out = make_fusion("jsis")(*detections([], [], []), sem_from_labels(labels, second=runner_up))
    cats = out["category_map"]
    assert (cats[10:14, 2:8] == SIDEWALK).all()
    assert (cats != LABELS.ignore_id).all()


def test_jsis_small_stuff_replaced_by_next_best_big_class():
    labels = road_sky()
    labels[13:16, 20:23] = SIDEWALK  # 9 px, below 10
    runner_up = torch.full((H, W), BUILDING)
    runner_up[13:16, 20:23] = SKY  # its next best class that is above the limit
    out = make_fusion("jsis")(*detections([], [], []), sem_from_labels(labels, second=runner_up))
    cats = out["category_map"]
    assert (cats[13:16, 20:23] == SKY).all()
    sidewalk_slot = 4 + LABELS.stuff_ids.index(SIDEWALK)
    assert not out["segment_valid"][sidewalk_slot]
    sky_slot = 4 + LABELS.stuff_ids.index(SKY)
    assert out["segment_area"][sky_slot] == 6 * W + 9


def test_jsis_area_counts_only_visible_stuff_pixels():
    labels = road_sky()
    labels[8:12, 0:6] = SIDEWALK  # 24 px, but a car covers 16 of them
    car = box_mask(0, 8, 4, 12)
    runner_up = torch.full((H, W), ROAD)
    out = make_fusion("jsis", stuff_area_px=10)(*detections([car], [0.9], [CAR]),
                                                 sem_from_labels(labels, second=runner_up))
    assert (out["category_map"][8:12, 4:6] == ROAD).all()  # 8 visible px < 10: replaced


# ---------------------------------------------------------------- common behaviour
@pytest.mark.parametrize("mode", ["panoptic_fpn", "jsis"])
def test_padding_and_invalid_detections_are_ignored(mode):
    a = box_mask(2, 8, 8, 12)
    stuff_class_det = box_mask(10, 8, 14, 12)
    masks, scores, classes, valid = detections([a, stuff_class_det, a], [0.9, 0.9, 0.95], [CAR, ROAD, PERSON],
                                               valid=[True, True, False])
    out = make_fusion(mode)(masks, scores, classes, valid, sem_from_labels(road_sky()))
    assert out["segment_valid"][:4].tolist() == [True, False, False, False]
    assert out["segment_area"][0] == 24
    assert int(out["num_segments"]) == int(out["segment_valid"].sum()) == 3  # car, road, sky


def test_segment_table_contents():
    car = box_mask(3, 9, 9, 13)
    sem = sem_from_labels(road_sky())
    out = make_fusion()(*detections([car], [0.8], [CAR]), sem)
    slots = 4 + len(LABELS.stuff_ids)
    for key in ("segment_category", "segment_is_thing", "segment_score", "segment_area", "segment_valid"):
        assert out[key].shape[0] == slots, key
    assert out["segment_map"].dtype == torch.int32 and out["segment_map"].shape == (H, W)
    assert out["segment_category"][:4].tolist() == [CAR] * 4
    assert out["segment_category"][4:].tolist() == LABELS.stuff_ids
    assert out["segment_is_thing"].tolist() == [True] * 4 + [False] * len(LABELS.stuff_ids)
    assert out["segment_score"][0].item() == pytest.approx(0.8)
    sky_slot = 4 + LABELS.stuff_ids.index(SKY)
    expected_prob = torch.softmax(sem[0, :, 0, 0], 0)[SKY].item()
    assert out["segment_score"][sky_slot].item() == pytest.approx(expected_prob, rel=1e-5)
    assert (out["segment_area"][~out["segment_valid"]] == 0).all()
    ids, counts = torch.unique(out["segment_map"], return_counts=True)
    for seg_id, count in zip(ids.tolist(), counts.tolist()):
        if seg_id:
            assert out["segment_area"][seg_id - 1] == count
    assert (out["category_map"][9:13, 3:9] == CAR).all()


def test_stuff_plus_things_semantic_mode():
    # Channels: the 11 stuff classes in label-space order, then one "things" channel.
    stuff = LABELS.stuff_ids
    things_channel = len(stuff)
    labels = torch.full((H, W), stuff.index(ROAD))
    labels[:6] = stuff.index(SKY)
    labels[10:14, 2:8] = things_channel
    sem = sem_from_labels(labels, channels=len(stuff) + 1)
    car = box_mask(2, 10, 5, 14)
    out = make_fusion(semantic_mode="stuff_plus_things")(*detections([car], [0.9], [CAR]), sem)
    cats = out["category_map"]
    assert (cats[10:14, 2:5] == CAR).all()
    assert (cats[10:14, 5:8] == LABELS.ignore_id).all()  # things channel, no instance: void
    assert (cats[:6] == SKY).all() and (cats[6:10] == ROAD).all()
    jsis = make_fusion("jsis", semantic_mode="stuff_plus_things")(*detections([car], [0.9], [CAR]), sem)
    assert (jsis["category_map"] != LABELS.ignore_id).all()
    with pytest.raises(InputError, match="sem_logits"):
        make_fusion(semantic_mode="stuff_plus_things")(*detections([car], [0.9], [CAR]),
                                                       sem_from_labels(labels))


def test_bad_inputs_and_config_are_named():
    with pytest.raises(InputError, match="mask_probs"):
        make_fusion()(torch.zeros(4, H + 1, W), torch.zeros(4), torch.zeros(4, dtype=torch.int64),
                      torch.ones(4, dtype=torch.bool), sem_from_labels(road_sky()))
    with pytest.raises(ConfigError, match="semantic mode"):
        make_fusion(semantic_mode="thingsonly")


def detectron2_reference(mask_probs, scores, valid, classes, sem_logits, overlap, score_thr, area_limit):
    """Plain transcription of detectron2's combine_semantic_and_instance_outputs, with our slot ids."""
    seg = torch.zeros(H, W, dtype=torch.int64)
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    for i in order:
        if not valid[i] or float(scores[i]) < score_thr or classes[i] not in LABELS.thing_ids:
            continue
        mask = mask_probs[i] > 0.5
        area = int(mask.sum())
        if area == 0:
            continue
        inter = int((mask & (seg > 0)).sum())
        if inter / area > overlap:
            continue
        seg[mask & (seg == 0)] = i + 1
    semantic = sem_logits[0].argmax(0)
    for label in torch.unique(semantic).tolist():
        if label in LABELS.thing_ids:
            continue
        mask = (semantic == label) & (seg == 0)
        if int(mask.sum()) < area_limit:
            continue
        seg[mask] = len(scores) + 1 + LABELS.stuff_ids.index(label)
    return seg


def test_fpn_matches_detectron2_transcription_on_random_scenes():
    gen = torch.Generator().manual_seed(0)
    fusion = make_fusion(max_detections=6, stuff_area_px=15)
    for _ in range(30):
        masks = []
        for _ in range(6):
            x1, y1, w, h = (int(torch.randint(0, hi, (1,), generator=gen)) for hi in (W - 4, H - 4, 8, 6))
            noise = torch.rand(H, W, generator=gen).add(0.5)
            masks.append(box_mask(x1, y1, x1 + w + 2, y1 + h + 2, prob=0.6) * noise)
        scores = torch.randperm(6, generator=gen).float() / 10 + 0.25
        classes = torch.randint(9, 19, (6,), generator=gen)
        valid = torch.rand(6, generator=gen) < 0.85
        sem = torch.randn(1, 19, H // 4, W // 4, generator=gen) * 3
        sem = torch.nn.functional.interpolate(sem, size=(H, W), mode="bilinear", align_corners=False)
        mask_probs = torch.stack(masks)
        out = fusion(mask_probs, scores, classes, valid, sem)
        want = detectron2_reference(mask_probs, scores, valid, classes.tolist(), sem, 0.5, 0.5, 15)
        assert torch.equal(out["segment_map"].long(), want)


@pytest.mark.parametrize("mode", ["panoptic_fpn", "jsis", "conv_head"])
def test_fusion_export_equals_eager(mode):
    fusion = make_fusion(mode).eval()
    a = box_mask(2, 8, 10, 14)
    b = box_mask(6, 9, 14, 15, prob=0.8)
    labels = road_sky()
    labels[12:16, 16:20] = CAR
    args = detections([a, b], [0.9, 0.7], [CAR, PERSON]) + (sem_from_labels(labels, second=torch.ones(H, W)),)
    program = torch.export.export(fusion, args)
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any(name in op for op in ops for name in ("nonzero", "masked_select", "unique"))
    got = program.module()(*args)
    want = fusion(*args)
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=key)
    # Different inputs through the same program: nothing was baked in at trace time.
    args2 = detections([b], [0.6], [CAR]) + (sem_from_labels(road_sky()),)
    got2, want2 = program.module()(*args2), fusion(*args2)
    for key in want2:
        torch.testing.assert_close(got2[key], want2[key], msg=key)


def test_first_argmax_equals_torch_argmax_including_ties_and_infinities():
    from panoptic_perception.model.fusion import first_argmax

    gen = torch.Generator().manual_seed(3)
    values = torch.randint(0, 4, (7, 500), generator=gen).to(torch.float32)  # many ties
    values[:, :10] = float("-inf")
    values[2, 20:30] = float("inf")
    assert torch.equal(first_argmax(values), values.argmax(dim=0))
