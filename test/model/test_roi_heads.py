"""ROI heads: detectron2 names, sampling, static inference (threshold, NMS, padding), masks, losses."""
from __future__ import annotations

import pytest
import torch

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.config import ROIHeadsConfig
from panoptic_perception.model.roi_heads import ROIHeads

STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
IMAGE_HW = (64, 128)
THING_IDS = (11, 13, 14)


def _heads(**overrides) -> ROIHeads:
    cfg = ROIHeadsConfig(**{"box_fc_dim": 32, "mask_conv_dim": 8, "mask_num_conv": 2, "max_detections": 6,
                            "batch_size_per_image": 64, **overrides})
    torch.manual_seed(0)
    return ROIHeads(cfg, in_channels=8, strides_px=STRIDES, thing_ids=THING_IDS)


def _features(batch: int = 1):
    torch.manual_seed(1)
    return [torch.randn(batch, 8, IMAGE_HW[0] // s, IMAGE_HW[1] // s) for s in STRIDES.values()]


def _force_class(heads: ROIHeads, index: int, score_logit: float = 10.0, mask_logit: float = 8.0) -> None:
    """Predictors that ignore the features: every proposal is class `index`, unchanged box, full mask."""
    with torch.no_grad():
        predictor = heads.box_predictor
        for layer in (predictor.cls_score, predictor.bbox_pred, heads.mask_head.predictor):
            layer.weight.zero_()
            layer.bias.zero_()
        heads.box_predictor.cls_score.bias[index] = score_logit
        heads.mask_head.predictor.bias[index] = mask_logit


def test_parameter_names_match_detectron2():
    keys = set(_heads().state_dict())
    for name in ("box_head.fc1.weight", "box_head.fc2.bias", "box_predictor.cls_score.weight",
                 "box_predictor.bbox_pred.weight", "mask_head.mask_fcn1.weight", "mask_head.mask_fcn2.bias",
                 "mask_head.deconv.weight", "mask_head.predictor.weight"):
        assert name in keys
    heads = _heads()
    assert heads.box_predictor.cls_score.out_features == len(THING_IDS) + 1
    assert heads.box_predictor.bbox_pred.out_features == 4 * len(THING_IDS)
    assert heads.mask_head.predictor.out_channels == len(THING_IDS)


def test_rejects_label_space_without_things():
    with pytest.raises(ConfigError, match="thing"):
        ROIHeads(ROIHeadsConfig(), 8, STRIDES, thing_ids=())


def test_inference_threshold_nms_and_padding():
    heads = _heads().eval()
    _force_class(heads, 1)
    proposals = torch.tensor([[10.0, 10.0, 50.0, 40.0], [10.0, 10.0, 50.0, 41.0], [70.0, 5.0, 120.0, 60.0],
                              [0.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([True, True, True, False])
    out = heads.inference(_features(), proposals, valid, IMAGE_HW)
    assert out["boxes"].shape == (6, 4) and out["mask_probs"].shape == (6, *IMAGE_HW)
    # the near-duplicate is suppressed, the padding proposal never becomes a detection
    assert int(out["valid"].sum()) == 2
    kept = out["boxes"][out["valid"]]
    assert any(torch.allclose(b, proposals[2], atol=1e-4) for b in kept)
    assert all(c == THING_IDS[1] for c in out["classes"][out["valid"]].tolist())
    assert bool((out["scores"][~out["valid"]] == 0).all())
    assert bool((out["mask_probs"][~out["valid"]] == 0).all())


def test_inference_clips_to_the_image_region_and_drops_empty_boxes_after_the_top_k():
    """clip_hw (fit_pad's image region, a runtime tensor): boxes are clipped to it, not to the padded
    input, as detectron2 clips to the resized image; a box clipped away entirely stays a candidate
    through NMS and the top max_detections and is dropped after, as detectron2's detector_postprocess."""
    heads = _heads(max_detections=2).eval()
    _force_class(heads, 1)
    proposals = torch.tensor([[100.0, 10.0, 127.0, 40.0], [10.0, 10.0, 50.0, 40.0], [60.0, 5.0, 90.0, 50.0]])
    valid = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        pooled = heads._pool(_features(), proposals, torch.zeros(3, dtype=torch.int64), 7)
        scores = torch.softmax(heads.box_predictor(heads.box_head(pooled))[0], dim=-1)[:, 1]
    assert int(scores.argmax()) == 0, "fixture: the box outside the image region must score highest"
    clip_hw = (torch.tensor(48.0), torch.tensor(96.0))  # the image covers the top-left 96 x 48
    out = heads.inference(_features(), proposals, valid, IMAGE_HW, clip_hw)
    # top-2 by score: the empty box (x from 100 clipped to 96) and the next one; the empty one is dropped
    assert out["valid"].tolist() == [False, True]
    kept = out["boxes"][out["valid"]]
    assert float(kept[:, 2].max()) <= 96.0 and float(kept[:, 3].max()) <= 48.0
    # the whole input: the same proposals keep their first two boxes
    whole = heads.inference(_features(), proposals, valid, IMAGE_HW)
    assert int(whole["valid"].sum()) == 2


def test_inference_score_threshold_drops_everything():
    heads = _heads(score_threshold_test=0.9).eval()
    _force_class(heads, 0, score_logit=0.0)  # uniform softmax over 4 outputs: 0.25 < 0.9
    proposals = torch.tensor([[10.0, 10.0, 50.0, 40.0]])
    out = heads.inference(_features(), proposals, torch.tensor([True]), IMAGE_HW)
    assert not bool(out["valid"].any())


def test_inference_masks_are_pasted_inside_the_box():
    heads = _heads().eval()
    _force_class(heads, 2)
    box = torch.tensor([[16.0, 8.0, 80.0, 56.0]])
    with torch.no_grad():
        out = heads.inference(_features(), box, torch.tensor([True]), IMAGE_HW)
    mask = out["mask_probs"][0]
    assert float(mask[20:44, 30:70].min()) > 0.99
    assert float(mask[:, 90:].max()) < 1e-3 and float(mask[:4].max()) < 1e-3


def test_label_and_sample_adds_ground_truth_as_positives():
    heads = _heads()
    proposals = torch.tensor([[0.0, 0.0, 20.0, 20.0], [60.0, 30.0, 90.0, 60.0], [61.0, 30.0, 90.0, 60.0]])
    gt = torch.tensor([[60.0, 30.0, 90.0, 60.0]])
    boxes, classes, matched = heads.label_and_sample(proposals, gt, torch.tensor([2]))
    assert boxes.shape[0] == 4  # three proposals + the gt box itself
    fg = classes < len(THING_IDS)
    assert int(fg.sum()) == 3 and bool((classes[fg] == 2).all())
    assert bool((classes[~fg] == len(THING_IDS)).all())
    assert bool((matched[fg] == 0).all())


def _target():
    masks = torch.zeros(2, *IMAGE_HW, dtype=torch.uint8)
    masks[0, 10:40, 12:50] = 1
    masks[1, 20:60, 70:120] = 1
    return {"boxes": torch.tensor([[12.0, 10.0, 50.0, 40.0], [70.0, 20.0, 120.0, 60.0]]),
            "thing_index": torch.tensor([0, 2]), "masks": masks}


def test_mask_targets_crop_the_ground_truth():
    heads = _heads()
    target = _target()
    crops = heads._mask_targets(target["masks"], target["boxes"], torch.tensor([0, 1]))
    assert crops.shape == (2, 28, 28)
    # each box is exactly its mask's extent: all of it is foreground once binarised at 0.5
    assert bool((crops >= 0.5).all()) and float(crops[:, 2:-2, 2:-2].min()) > 0.99
    half_off = torch.tensor([[31.0, 10.0, 69.0, 40.0]])  # right half of the box is off the mask
    shifted = heads._mask_targets(target["masks"], half_off, torch.tensor([0]))
    assert float(shifted[0, :, :10].mean()) > 0.9 and float(shifted[0, :, -10:].mean()) < 0.1


def test_training_losses_fall():
    heads = _heads().train()
    feats = _features()
    proposals = torch.tensor([[[10.0, 8.0, 52.0, 42.0], [68.0, 18.0, 118.0, 62.0], [0.0, 0.0, 30.0, 30.0]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    opt = torch.optim.Adam(heads.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        losses = heads(feats, proposals, valid, IMAGE_HW, [_target()])
        assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask"}
        total = sum(losses.values())
        history.append(float(total.detach()))
        opt.zero_grad()
        total.backward()
        opt.step()
    assert history[-1] < 0.5 * history[0]


def test_training_without_ground_truth_is_finite():
    heads = _heads().train()
    target = {"boxes": torch.zeros(0, 4), "thing_index": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros(0, *IMAGE_HW, dtype=torch.uint8)}
    proposals = torch.tensor([[[10.0, 8.0, 52.0, 42.0]]])
    losses = heads(_features(), proposals, torch.ones(1, 1, dtype=torch.bool), IMAGE_HW, [target])
    assert all(bool(torch.isfinite(v)) for v in losses.values())
    sum(losses.values()).backward()


def test_masks_below_mask_min_score_are_zero_and_eager_equals_export():
    heads = _heads().eval()
    torch.manual_seed(5)
    proposals = torch.rand(12, 4) * 50
    proposals[:, 2:] += proposals[:, :2] + 10
    valid = torch.ones(12, dtype=torch.bool)
    features = _features()
    everything = heads.inference(features, proposals, valid, IMAGE_HW)
    scores = everything["scores"][everything["valid"]]
    threshold = float(scores.median())  # some detections above, some below
    heads.mask_min_score = threshold

    class Inference(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = heads

        def forward(self, proposals, *features):
            return self.heads.inference(list(features), proposals, valid, IMAGE_HW)["mask_probs"]

    eager = Inference()(proposals, *features)
    wanted = everything["valid"] & (everything["scores"] >= threshold)
    assert 0 < int(wanted.sum()) < int(everything["valid"].sum())
    torch.testing.assert_close(eager[wanted], everything["mask_probs"][wanted])
    assert bool((eager[~wanted] == 0).all())
    program = torch.export.export(Inference(), (proposals, *features))
    torch.testing.assert_close(program.module()(proposals, *features), eager)
