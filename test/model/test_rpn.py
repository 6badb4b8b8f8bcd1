"""RPN: head layout, static proposal selection, anchor labelling and losses."""
from __future__ import annotations

import torch

from panoptic_perception.model.box_ops import box_iou
from panoptic_perception.model.config import RPNConfig
from panoptic_perception.model.rpn import RPN

STRIDES = (4, 8, 16)
IMAGE_HW = (64, 128)


def _rpn(**overrides) -> RPN:
    cfg = RPNConfig(anchor_sizes=(16, 32, 64), pre_nms_topk_test=50, post_nms_topk_test=40,
                    pre_nms_topk_train=60, post_nms_topk_train=30, **overrides)
    torch.manual_seed(0)
    return RPN(cfg, in_channels=8, strides_px=STRIDES)


def _features(batch: int = 1):
    torch.manual_seed(1)
    return [torch.randn(batch, 8, IMAGE_HW[0] // s, IMAGE_HW[1] // s) for s in STRIDES]


def test_head_outputs_align_with_anchors():
    rpn = _rpn()
    feats = _features(2)
    logits, deltas = rpn.rpn_head(feats)
    anchors = rpn.anchor_generator([f.shape[-2:] for f in feats])
    for lg, dl, an, _f in zip(logits, deltas, anchors, feats):
        assert lg.shape == (2, an.shape[0]) and dl.shape == (2, an.shape[0], 4)
    # logit of cell (y, x), anchor a equals the conv output at channel a, pixel (y, x)
    t = torch.relu(rpn.rpn_head.conv(feats[1]))
    direct = rpn.rpn_head.objectness_logits(t)
    y, x, a = 3, 5, 2
    width = feats[1].shape[-1]
    assert torch.allclose(logits[1][0, (y * width + x) * 3 + a], direct[0, a, y, x])
    direct_d = rpn.rpn_head.anchor_deltas(t)
    assert torch.allclose(deltas[1][1, (y * width + x) * 3 + a], direct_d[1, a * 4:(a + 1) * 4, y, x])


def test_eval_proposals_static_shape_clipped_and_suppressed():
    rpn = _rpn().eval()
    (boxes, scores, valid), losses = rpn(_features(), IMAGE_HW)
    assert losses == {}
    assert boxes.shape == (1, 40, 4) and scores.shape == (1, 40) and valid.shape == (1, 40)
    assert bool(valid.any())
    b = boxes[0][valid[0]]
    assert float(b[:, 0::2].min()) >= 0 and float(b[:, 0::2].max()) <= IMAGE_HW[1]
    assert float(b[:, 1::2].min()) >= 0 and float(b[:, 1::2].max()) <= IMAGE_HW[0]
    # valid proposals come first, by descending score
    n = int(valid[0].sum())
    assert bool(valid[0, :n].all())
    assert bool((scores[0, :n][1:] <= scores[0, :n][:-1]).all())


def test_nms_removes_overlapping_proposals_of_a_level():
    rpn = _rpn(nms_threshold=0.7).eval()
    (boxes, _, valid), _ = rpn(_features(), IMAGE_HW)
    # NMS is per level: two kept boxes of the same level never overlap above the threshold.
    level_of = {}
    logits, deltas = rpn.rpn_head(_features())
    anchors = rpn.anchor_generator([f.shape[-2:] for f in _features()])
    # recompute which level each proposal came from by exact box match
    from panoptic_perception.model.box_ops import clip_boxes, decode_boxes
    for level, (_lg, dl, an) in enumerate(zip(logits, deltas, anchors)):
        decoded = clip_boxes(decode_boxes(dl[0], an), *IMAGE_HW)
        for i, box in enumerate(boxes[0]):
            if bool(valid[0, i]) and bool((decoded - box).abs().max(dim=1).values.min() < 1e-4):
                level_of[i] = level
    assert len(level_of) == int(valid.sum())
    for level in set(level_of.values()):
        idx = [i for i, lv in level_of.items() if lv == level]
        iou = box_iou(boxes[0, idx], boxes[0, idx])
        iou.fill_diagonal_(0)
        assert float(iou.max()) <= 0.7 + 1e-6


def test_label_anchors_positives_overlap_ground_truth():
    rpn = _rpn()
    anchors = torch.cat(rpn.anchor_generator([(16, 32), (8, 16), (4, 8)]))
    gt = torch.tensor([[10.0, 10.0, 40.0, 38.0], [70.0, 20.0, 90.0, 60.0]])
    labels, targets = rpn.label_anchors(anchors, gt)
    pos = labels == 1
    assert int(pos.sum()) > 0 and int((labels >= 0).sum()) <= rpn.cfg.batch_size_per_image
    best = box_iou(gt, anchors[pos]).max(dim=0).values
    assert float(best.min()) > 0.3  # positive anchors do overlap a gt box
    assert bool(torch.isfinite(targets[pos]).all())
    # with no ground truth everything sampled is negative
    labels, _ = rpn.label_anchors(anchors, torch.zeros(0, 4))
    assert int((labels == 1).sum()) == 0 and int((labels == 0).sum()) == rpn.cfg.batch_size_per_image


def test_training_steps_lower_rpn_loss_and_propose_the_object():
    rpn = _rpn().train()
    feats = _features()
    gt = [torch.tensor([[20.0, 12.0, 52.0, 44.0]])]

    def fixed_sample_loss() -> float:
        torch.manual_seed(2)  # the same anchor sample before and after training
        with torch.no_grad():
            _, losses = rpn(feats, IMAGE_HW, gt)
        return float(losses["loss_rpn_cls"] + losses["loss_rpn_loc"])

    before = fixed_sample_loss()
    opt = torch.optim.Adam(rpn.parameters(), lr=5e-3)
    torch.manual_seed(3)
    for _ in range(80):
        _, losses = rpn(feats, IMAGE_HW, gt)
        opt.zero_grad()
        (losses["loss_rpn_cls"] + losses["loss_rpn_loc"]).backward()
        opt.step()
    assert fixed_sample_loss() < 0.5 * before
    rpn.eval()
    (boxes, _, valid), _ = rpn(feats, IMAGE_HW)
    assert bool(valid[0, 0])
    assert float(box_iou(boxes[0, :1], gt[0])) > 0.5
