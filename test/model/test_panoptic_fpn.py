"""PanopticFPN / PanopticModel: contracts, input checks, losses, training, and overfitting one frame."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from panoptic_perception.config import from_dict
from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.errors import InputError
from panoptic_perception.labels import load_label_space
from panoptic_perception.model.config import LossWeights, ModelConfig
from panoptic_perception.model.losses import weight_losses
from panoptic_perception.model.panoptic_fpn import PanopticFPN, PanopticModel, build_model

HEIGHT, WIDTH = 128, 256
CITYSCAPES = load_label_space("cityscapes")
SKY, ROAD, BUILDING, VEGETATION = (CITYSCAPES.id_of(n) for n in ("sky", "road", "building", "vegetation"))
CAR, PERSON = CITYSCAPES.id_of("car"), CITYSCAPES.id_of("person")
LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask", "loss_sem_seg"}


def small_config(**overrides) -> ModelConfig:
    """A real but small model: ResNet-18, 64-wide FPN, few proposals, at 256x128."""
    data = {
        "input_width": WIDTH, "input_height": HEIGHT,
        "backbone": {"name": "resnet18", "norm": "BN"}, "fpn": {"channels": 64},
        "rpn": {"anchor_sizes": [16, 32, 64, 128, 256], "pre_nms_topk_train": 300, "post_nms_topk_train": 100,
                "pre_nms_topk_test": 200, "post_nms_topk_test": 50},
        "roi_heads": {"box_fc_dim": 128, "mask_conv_dim": 64, "mask_num_conv": 2, "max_detections": 10,
                      "batch_size_per_image": 128},
        "semantic_head": {"conv_dims": 64},
    }
    data.update(overrides)
    return from_dict(ModelConfig, data)


def hand_drawn_scene(seed: int = 0):
    """Sky, road, building, vegetation; two cars (rectangles) and a person (ellipse), with noise.

    Returns the image [3,H,W] float 0..255, the training target, and the panoptic ground truth
    (segment map, segments) the fused output is scored against.
    """
    gen = torch.Generator().manual_seed(seed)
    semantic = torch.full((HEIGHT, WIDTH), SKY, dtype=torch.int64)
    semantic[70:] = ROAD
    semantic[30:70, :80] = BUILDING
    semantic[40:70, 180:] = VEGETATION
    yy, xx = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    instances = [
        (CAR, (yy >= 60) & (yy < 100) & (xx >= 90) & (xx < 160)),
        (CAR, (yy >= 75) & (yy < 110) & (xx >= 170) & (xx < 230)),
        (PERSON, ((yy - 80) / 22.0) ** 2 + ((xx - 50) / 9.0) ** 2 <= 1),
    ]
    colours = torch.tensor(CITYSCAPES.colors(), dtype=torch.float32)
    image = colours[semantic].permute(2, 0, 1).clone()
    boxes, masks = [], []
    for k, (category, mask) in enumerate(instances):
        semantic[mask] = category
        shade = colours[category] + 25.0 * k  # instances of one class look slightly different
        image[:, mask] = shade.clamp(max=255)[:, None]
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        masks.append(mask.to(torch.uint8))
    image = (image + 4.0 * torch.randn(image.shape, generator=gen)).clamp(0, 255)
    target = {"boxes": torch.tensor(boxes), "classes": torch.tensor([c for c, _ in instances]),
              "masks": torch.stack(masks), "semantic": semantic}
    segment_map = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    segments = []
    for category in (SKY, ROAD, BUILDING, VEGETATION):
        segments.append(Segment(id=len(segments) + 1, category_id=category))
        segment_map[(semantic == category).numpy()] = len(segments)
    for category, mask in instances:
        segments.append(Segment(id=len(segments) + 1, category_id=category))
        segment_map[mask.numpy()] = len(segments)
    return image, target, (segment_map, segments)


def test_module_names_follow_detectron2():
    keys = set(PanopticFPN(small_config()).state_dict())
    for name in ("backbone.bottom_up.stem.conv1.weight", "backbone.fpn_lateral2.weight",
                 "proposal_generator.rpn_head.conv.weight",
                 "proposal_generator.rpn_head.objectness_logits.weight",
                 "proposal_generator.rpn_head.anchor_deltas.weight", "roi_heads.box_head.fc1.weight",
                 "roi_heads.box_predictor.cls_score.weight", "roi_heads.mask_head.mask_fcn1.weight",
                 "roi_heads.mask_head.deconv.weight", "roi_heads.mask_head.predictor.weight",
                 "sem_seg_head.predictor.weight"):
        assert name in keys, name


def test_eval_outputs_contract():
    cfg = small_config()
    model = build_model(cfg).eval()
    image, _, _ = hand_drawn_scene()
    with torch.no_grad():
        out = model(image[None])
    det = cfg.roi_heads.max_detections
    assert out["boxes"].shape == (det, 4) and out["scores"].shape == (det,)
    assert out["classes"].dtype == torch.int64 and out["valid"].dtype == torch.bool
    assert out["mask_probs"].shape == (det, HEIGHT, WIDTH)
    assert out["sem_logits"].shape == (1, CITYSCAPES.num_classes, HEIGHT, WIDTH)
    assert set(out["classes"][out["valid"]].tolist()) <= set(CITYSCAPES.thing_ids)
    # fused outputs are in the same dict
    assert out["segment_map"].shape == (HEIGHT, WIDTH) and out["segment_map"].dtype == torch.int32
    assert "segment_valid" in out and "category_map" in out


def test_input_errors_name_the_problem():
    model = PanopticFPN(small_config()).eval()
    with pytest.raises(InputError, match="multiple of 32"):
        model(torch.zeros(1, 3, 100, 256))
    with pytest.raises(InputError, match="one image"):
        model(torch.zeros(2, 3, HEIGHT, WIDTH))
    with pytest.raises(InputError, match=r"\[B,3,H,W\]"):
        model(torch.zeros(1, 1, HEIGHT, WIDTH))
    fused = PanopticModel(small_config()).eval()
    with pytest.raises(InputError, match="configured input size"):
        fused(torch.zeros(1, 3, HEIGHT, 320))
    model.train()
    with pytest.raises(InputError, match="needs targets"):
        model(torch.zeros(1, 3, HEIGHT, WIDTH))
    _, target, _ = hand_drawn_scene()
    bad = dict(target, classes=torch.tensor([CAR, CAR, ROAD]))
    with pytest.raises(InputError, match="stuff"):
        model(torch.zeros(1, 3, HEIGHT, WIDTH), [bad])
    bad = dict(target, masks=target["masks"][:, :10])
    with pytest.raises(InputError, match="masks"):
        model(torch.zeros(1, 3, HEIGHT, WIDTH), [bad])


def test_weight_losses_apply_term_weights_and_branch_scales():
    raw = {k: torch.tensor(2.0) for k in LOSS_KEYS}
    weights = LossWeights(box_reg=0.15, mask=0.3, instance_scale=0.5, semantic_scale=0.75)
    out = weight_losses(raw, weights)
    assert float(out["loss_box_reg"]) == pytest.approx(2.0 * 0.15 * 0.5)
    assert float(out["loss_mask"]) == pytest.approx(2.0 * 0.3 * 0.5)
    assert float(out["loss_sem_seg"]) == pytest.approx(2.0 * 1.0 * 0.75)


def test_training_returns_weighted_losses_and_a_step_lowers_them():
    torch.manual_seed(0)
    cfg = small_config()
    model = PanopticFPN(cfg).train()
    image, target, _ = hand_drawn_scene()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)

    def loss_with_fixed_sampling() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return float(sum(model(image[None], [target]).values()))

    before = loss_with_fixed_sampling()
    torch.manual_seed(1)
    losses = model(image[None], [target])
    assert set(losses) == LOSS_KEYS
    assert all(bool(torch.isfinite(v)) for v in losses.values())
    opt.zero_grad()
    sum(losses.values()).backward()
    assert model.roi_heads.mask_head.predictor.weight.grad is not None
    assert model.proposal_generator.rpn_head.conv.weight.grad is not None
    assert model.sem_seg_head.predictor.weight.grad is not None
    opt.step()
    assert loss_with_fixed_sampling() < before
    # zero semantic weight removes that term entirely
    zero_sem = PanopticFPN(dataclasses.replace(cfg, loss_weights=LossWeights(semantic=0.0))).train()
    with torch.no_grad():
        assert float(zero_sem(image[None], [target])["loss_sem_seg"]) == 0.0


def panoptic_quality(out, gt) -> float:
    from panoptic_perception.eval.pq import PQAccumulator

    segment_map, segments = gt
    valid = out["segment_valid"].numpy()
    slots = np.nonzero(valid)[0]
    pred_segments = [Segment(id=int(s) + 1, category_id=int(out["segment_category"][s])) for s in slots]
    pred_map = out["segment_map"].numpy().astype(np.int64)
    acc = PQAccumulator(CITYSCAPES)
    acc.add(segment_map, segments, pred_map, pred_segments)
    return acc.result().pq


@pytest.mark.slow
def test_overfits_one_frame_to_high_panoptic_quality():
    """The whole network trains: from random weights to PQ > 90 on the frame it sees (CPU, ~1 min)."""
    torch.manual_seed(0)
    cfg = small_config()
    model = build_model(cfg).train()
    image, target, gt = hand_drawn_scene()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.0)
    # 80 steps at 2e-3 then 20 at 4e-4: the low-rate tail settles masks and scores.
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[80], gamma=0.2)
    for _ in range(100):
        losses = model(image[None], [target])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        out = model(image[None])
    pq = panoptic_quality(out, gt)
    assert pq > 90.0, f"PQ {pq:.1f} after overfitting one frame"
