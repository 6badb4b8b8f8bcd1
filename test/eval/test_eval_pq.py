"""PQ / SQ / RQ and mIoU against hand-computed values and a plain-loop reference of panopticapi."""
from __future__ import annotations

import numpy as np
import pytest

from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.errors import InputError
from panoptic_perception.eval.miou import SemanticConfusion
from panoptic_perception.eval.pq import PQAccumulator
from panoptic_perception.labels import load_label_space

ROAD, PERSON, CAR = 0, 11, 13
SPACE = load_label_space("cityscapes")


def seg(seg_id: int, cat: int, crowd: int = 0) -> Segment:
    return Segment(id=seg_id, category_id=cat, iscrowd=bool(crowd))


def evaluate(gt, gt_segs, pred, pred_segs):
    acc = PQAccumulator(SPACE)
    acc.add(np.asarray(gt), gt_segs, np.asarray(pred), pred_segs, image_id="t")
    return acc.result()


def test_identical_prediction_scores_100():
    gt = np.zeros((6, 8), np.int32)
    gt[:3] = 1
    gt[3:, :4] = 2
    gt[3:, 4:6] = 3
    segs = [seg(1, ROAD), seg(2, CAR), seg(3, PERSON)]
    res = evaluate(gt, segs, gt.copy(), segs)
    assert res.all.pq == pytest.approx(100.0, abs=1e-9)
    assert res.things.pq == pytest.approx(100.0, abs=1e-9)
    assert res.stuff.pq == pytest.approx(100.0, abs=1e-9)
    assert res.miou == pytest.approx(100.0, abs=1e-9)
    assert res.all.n == 3


def test_overlaps_near_half_void_and_pred_only_class():
    # 4 x 10 image. gt: cars 2 (cols 0-4) and 3 (cols 5-9) in rows 0-1, VOID row 2, road row 3.
    gt = np.zeros((4, 10), np.int32)
    gt[0:2, 0:5] = 2
    gt[0:2, 5:10] = 3
    gt[3] = 1
    gt_segs = [seg(1, ROAD), seg(2, CAR), seg(3, CAR)]
    pred = np.zeros((4, 10), np.int32)
    pred[3] = 10
    pred[2, 0:5] = 10  # road spilling onto VOID: those pixels leave the union
    pred[0:2, 0:3] = 11  # car on gt 2: IoU 6/10 = 0.6 -> match
    pred[0:2, 3:5] = 12  # car on gt 2: unmatched -> FP
    pred[0, 5:10] = 13
    pred[2, 5:10] = 13  # car: 5 px on gt 3 + 5 on VOID: IoU 5/(10+10-5-5) = 0.5, not > 0.5; void 0.5 -> FP
    pred[1, 5:10] = 14  # person only in prediction -> FP
    pred_segs = [seg(10, ROAD), seg(11, CAR), seg(12, CAR), seg(13, CAR), seg(14, PERSON)]
    res = evaluate(gt, gt_segs, pred, pred_segs)

    road, car, person = (res.class_by_name(n) for n in ("road", "car", "person"))
    assert (road.tp, road.fp, road.fn) == (1, 0, 0) and road.pq == pytest.approx(100.0, abs=1e-9)
    assert (car.tp, car.fp, car.fn) == (1, 2, 1)
    car_pq = 0.6 / (1 + 0.5 * 2 + 0.5 * 1)
    assert car.pq == pytest.approx(100 * car_pq, abs=1e-9)
    assert car.sq == pytest.approx(60.0, abs=1e-9)
    assert car.rq == pytest.approx(100 * 1 / 2.5, abs=1e-9)
    assert (person.tp, person.fp, person.fn) == (0, 1, 0) and person.pq == 0.0
    assert res.all.n == 3 and res.things.n == 2 and res.stuff.n == 1
    assert res.all.pq == pytest.approx(100 * (1.0 + car_pq + 0.0) / 3, abs=1e-9)
    assert res.things.pq == pytest.approx(100 * (car_pq + 0.0) / 2, abs=1e-9)
    assert res.stuff.pq == pytest.approx(100.0, abs=1e-9)
    assert res.all.sq == pytest.approx(100 * (1.0 + 0.6 + 0.0) / 3, abs=1e-9)
    # semantic part: road 10/10; car tp 15 of gt 20, no fp on labelled pixels; person 0/5
    assert road.iou == pytest.approx(100.0) and car.iou == pytest.approx(75.0) and person.iou == 0.0
    assert res.miou == pytest.approx((100 + 75 + 0) / 3, abs=1e-9)
    assert np.isnan(res.class_by_name("sky").iou)


def test_crowd_regions_absorb_predictions_of_their_category_only():
    gt = np.zeros((4, 10), np.int32)
    gt[0:2] = 1  # car crowd
    gt[2] = 2  # person
    gt_segs = [seg(1, CAR, crowd=1), seg(2, PERSON)]
    pred = np.zeros((4, 10), np.int32)
    pred[0:2, 0:6] = 21  # car on car crowd: ignored, not FP
    pred[0:2, 6:10] = 22  # person on car crowd: crowd of another class does not excuse it -> FP
    pred[2:4] = 23  # person: IoU 10 / (10 + 20 - 10 - 10) = 1
    pred_segs = [seg(21, CAR), seg(22, PERSON), seg(23, PERSON)]
    res = evaluate(gt, gt_segs, pred, pred_segs)
    car, person = res.class_by_name("car"), res.class_by_name("person")
    assert (car.tp, car.fp, car.fn) == (0, 0, 0)  # crowd gt is never a FN either
    assert (person.tp, person.fp, person.fn) == (1, 1, 0)
    assert res.all.n == 1
    assert res.all.pq == pytest.approx(100 * 1.0 / 1.5, abs=1e-9)
    assert res.all.sq == pytest.approx(100.0, abs=1e-9)
    # crowd pixels keep their class for the semantic part: car tp 12, person fp 8 there
    assert car.iou == pytest.approx(100 * 12 / 20, abs=1e-9)


@pytest.mark.parametrize("road_in_void_row, expect_fp", [(0, 0), (2, 1)])
def test_void_plus_crowd_fraction_decides_false_positive(road_in_void_row, expect_fp):
    # A car prediction over the whole 3x4 image: 4 px on car crowd (1/3) and 4 - k px on VOID,
    # neither alone over half; together 8/12 -> ignored, with k = 2 road pixels 6/12 -> FP.
    gt = np.zeros((3, 4), np.int32)
    gt[0] = 1  # car crowd
    gt[2] = 2  # road
    gt[1, :road_in_void_row] = 2
    pred = np.full((3, 4), 5, np.int32)
    res = evaluate(gt, [seg(1, CAR, crowd=1), seg(2, ROAD)], pred, [seg(5, CAR)])
    car, road = res.class_by_name("car"), res.class_by_name("road")
    assert car.fp == expect_fp
    assert (road.tp, road.fn) == (0, 1)


def test_gt_segment_listed_but_absent_is_a_false_negative():
    gt = np.ones((2, 3), np.int32)
    res = evaluate(gt, [seg(1, ROAD), seg(7, CAR)], gt.copy(), [seg(1, ROAD)])
    assert res.class_by_name("car").fn == 1 and res.class_by_name("road").tp == 1


def _reference_pq(images, categories):
    """Plain-loop port of panopticapi's rules (the thing the vectorised code must equal)."""
    stats = {c.id: [0, 0, 0, 0.0] for c in categories}  # tp fp fn iou
    for gt, gt_segs, pred, pred_segs in images:
        g = {s.id: s for s in gt_segs}
        p = {s.id: s for s in pred_segs}
        inter = {}
        for a, b in zip(gt.ravel().tolist(), pred.ravel().tolist()):
            inter[(a, b)] = inter.get((a, b), 0) + 1
        g_area = {k: int((gt == k).sum()) for k in g}
        p_area = {k: int((pred == k).sum()) for k in p}
        gm, pm = set(), set()
        for (a, b), n in inter.items():
            if a not in g or b not in p or g[a].iscrowd or g[a].category_id != p[b].category_id:
                continue
            iou = n / (g_area[a] + p_area[b] - n - inter.get((0, b), 0))
            if iou > 0.5:
                st = stats[g[a].category_id]
                st[0] += 1
                st[3] += iou
                gm.add(a)
                pm.add(b)
        crowd = {}
        for a, s in g.items():
            if a in gm:
                continue
            if s.iscrowd:
                crowd[s.category_id] = a
                continue
            stats[s.category_id][2] += 1
        for b, s in p.items():
            if b in pm:
                continue
            n = inter.get((0, b), 0)
            if s.category_id in crowd:
                n += inter.get((crowd[s.category_id], b), 0)
            if n / p_area[b] > 0.5:
                continue
            stats[s.category_id][1] += 1
    pqs = []
    for tp, fp, fn, iou in stats.values():
        if tp + fp + fn:
            pqs.append(iou / (tp + 0.5 * fp + 0.5 * fn))
    return stats, 100 * sum(pqs) / len(pqs)


def _random_image(rng, h=24, w=32):
    gt = np.zeros((h, w), np.int32)
    gt_segs = []
    gt[h // 2:] = 1
    gt_segs.append(seg(1, ROAD))
    gt[: h // 4] = 2
    gt_segs.append(seg(2, 10))  # sky
    crowd_id = 3
    gt[h // 4: h // 3, : w // 3] = crowd_id
    gt_segs.append(seg(crowd_id, CAR, crowd=1))
    for k in range(rng.integers(2, 6)):
        y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
        gt[y:y + rng.integers(3, 8), x:x + rng.integers(3, 8)] = 100 + k
        gt_segs.append(seg(100 + k, int(rng.choice([CAR, PERSON]))))
    present = set(np.unique(gt).tolist())
    gt_segs = [s for s in gt_segs if s.id in present]
    pred = np.roll(gt, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    pred[rng.random((h, w)) < 0.05] = 0
    pred_segs = [seg(s.id, s.category_id if rng.random() > 0.2 else PERSON) for s in gt_segs]
    y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
    pred[y:y + 4, x:x + 4] = 999
    pred_segs.append(seg(999, CAR))
    gt[rng.random((h, w)) < 0.05] = 0  # VOID in gt
    present_p = set(np.unique(pred).tolist())
    pred_segs = [s for s in pred_segs if s.id in present_p]
    return gt, gt_segs, pred, pred_segs


def test_vectorised_equals_plain_loop_reference_on_random_maps():
    rng = np.random.default_rng(5)
    images = [_random_image(rng) for _ in range(12)]
    acc = PQAccumulator(SPACE)
    for i, im in enumerate(images):
        acc.add(*im, image_id=str(i))
    res = acc.result()
    stats, ref_pq = _reference_pq(images, SPACE.categories)
    for c in res.per_class:
        tp, fp, fn, _ = stats[c.id]
        assert (c.tp, c.fp, c.fn) == (tp, fp, fn), c.name
    assert res.all.pq == pytest.approx(ref_pq, abs=1e-9)
    assert res.num_images == 12


def test_merge_equals_single_accumulator():
    rng = np.random.default_rng(1)
    images = [_random_image(rng) for _ in range(6)]
    one, a, b = PQAccumulator(SPACE), PQAccumulator(SPACE), PQAccumulator(SPACE)
    for i, im in enumerate(images):
        one.add(*im)
        (a if i % 2 else b).add(*im)
    merged = a.merge(b).result()
    assert merged.all.pq == pytest.approx(one.result().all.pq, abs=1e-12)
    np.testing.assert_array_equal(a.confusion, one.confusion)


def test_semantic_confusion_hand_case():
    conf = SemanticConfusion(num_classes=3, ignore_id=255)
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 255, 0, 2]])
    conf.add(gt, pred)
    iou = conf.iou()
    # class 0: tp 1, fn 1 (pred 1), fp 0 (the pred 0 on ignore is not counted) -> 1/2
    # class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 (pred ignore on a labelled pixel) -> 1/2
    np.testing.assert_allclose(iou, [50.0, 100 * 2 / 3, 50.0])
    assert conf.miou() == pytest.approx((50 + 200 / 3 + 50) / 3, abs=1e-9)


def test_bad_inputs_name_the_problem():
    gt = np.ones((2, 2), np.int32)
    acc = PQAccumulator(SPACE)
    with pytest.raises(InputError, match=r"segment id\(s\) \[5\].*no segments_info"):
        acc.add(gt, [seg(1, ROAD)], np.full((2, 2), 5), [seg(1, ROAD)], image_id="im0")
    with pytest.raises(InputError, match="unknown category id 77"):
        acc.add(gt, [seg(1, ROAD)], gt, [seg(1, 77)], image_id="im0")
    with pytest.raises(InputError, match="same"):
        acc.add(gt, [seg(1, ROAD)], np.ones((2, 3), np.int32), [seg(1, ROAD)])
    with pytest.raises(InputError, match="not in the PNG"):
        acc.add(gt, [seg(1, ROAD)], gt, [seg(1, ROAD), seg(2, CAR)])
    with pytest.raises(InputError, match="appears twice"):
        acc.add(gt, [seg(1, ROAD), seg(1, CAR)], gt, [seg(1, ROAD)])
    assert acc.num_images == 0


def test_large_coco_style_ids_take_the_binary_search_path():
    # panopticapi-style random colour ids above the lookup-table limit
    big = np.array([[1 << 22, 5_000_000], [12_345_678, 1 << 22]], np.int32)
    segs = [seg(1 << 22, ROAD), seg(5_000_000, CAR), seg(12_345_678, PERSON)]
    res = evaluate(big, segs, big.copy(), segs)
    assert res.all.pq == pytest.approx(100.0, abs=1e-9) and res.all.n == 3
    with pytest.raises(InputError, match=r"\[12345678\]"):
        evaluate(big, segs, big.copy(), segs[:2])


def _with_listed_void(rng, image):
    """The prediction lists id 0 in segments_info (tools that number segments from 0 do): its
    pixels form a regular segment of some category."""
    gt, gt_segs, pred, pred_segs = image
    pred = pred.copy()
    pred[rng.random(pred.shape) < 0.1] = 0  # some scattered, some large: overlaps of every size
    pred[: pred.shape[0] // 4] = np.where(pred[: pred.shape[0] // 4] == 2, 0, pred[: pred.shape[0] // 4])
    if not (pred == 0).any():
        pred[0, 0] = 0
    present = set(np.unique(pred).tolist())
    return gt, gt_segs, pred, [seg(0, int(rng.choice([10, CAR, ROAD])))] + [s for s in pred_segs if s.id in present]


@pytest.mark.parametrize("offset", [0, 1 << 22])  # lookup-table path and binary-search path
def test_prediction_segment_id_0_listed_is_scored_as_panopticapi_does(offset):
    rng = np.random.default_rng(11)
    images = []
    for _ in range(12):
        gt, gt_segs, pred, pred_segs = _with_listed_void(rng, _random_image(rng))
        if offset:  # large ids, as panopticapi's random colours give; 0 stays 0
            pred = np.where(pred == 0, 0, pred + offset)
            pred_segs = [seg(s.id + offset if s.id else 0, s.category_id) for s in pred_segs]
        images.append((gt, gt_segs, pred, pred_segs))
    acc = PQAccumulator(SPACE)
    for i, im in enumerate(images):
        acc.add(*im, image_id=str(i))
    res = acc.result()
    stats, ref_pq = _reference_pq(images, SPACE.categories)
    assert sum(stats[c.id][0] + stats[c.id][1] for c in SPACE.categories) > 0
    for c in res.per_class:
        tp, fp, fn, _ = stats[c.id]
        assert (c.tp, c.fp, c.fn) == (tp, fp, fn), c.name
    assert res.all.pq == pytest.approx(ref_pq, abs=1e-9)


def test_listed_id_0_scores_its_pixels_and_must_be_in_the_png():
    gt = np.array([[1, 1, 2, 2]], np.int32)
    pred = np.array([[0, 0, 2, 2]], np.int32)
    res = evaluate(gt, [seg(1, ROAD), seg(2, CAR)], pred, [seg(0, ROAD), seg(2, CAR)])
    assert res.class_by_name("road").tp == 1 and res.all.pq == pytest.approx(100.0)
    unlisted = evaluate(gt, [seg(1, ROAD), seg(2, CAR)], pred, [seg(2, CAR)])  # 0 unlisted: VOID
    assert unlisted.class_by_name("road").fn == 1
    with pytest.raises(InputError, match=r"\[0\] are in segments_info but not in the PNG"):
        evaluate(gt, [seg(1, ROAD), seg(2, CAR)], gt, [seg(0, ROAD), seg(1, ROAD), seg(2, CAR)])


def test_things_under_the_area_limit_count_as_crowd_and_pq_ignores_them():
    """A far car of 4 px that nothing finds, and one of 6 px that a prediction covers badly: each costs
    the car class without the limit; at 8 px both are crowd, so neither is a miss, and the prediction
    lying on one is no false positive. A large person and the road are untouched; so is mIoU."""
    from panoptic_perception.eval.run import void_small_things

    gt = np.zeros((8, 12), np.int32)
    gt[4:] = 1  # road
    gt[0:4, 0:5] = 2  # a large car, found
    gt[0, 6:10] = 3  # a 4 px car, missed
    gt[2, 6:12] = 4  # a 6 px car: the prediction below takes 4 of its pixels and 2 road ones (IoU 4/8)
    gt[1, 10:12] = 5  # a 2 px person (a thing, under the limit too)
    segs = [seg(1, ROAD), seg(2, CAR), seg(3, CAR), seg(4, CAR), seg(5, PERSON)]
    pred = np.zeros((8, 12), np.int32)
    pred[4:] = 10
    pred[0:4, 0:5] = 11
    pred[2, 8:12] = 12
    pred[4, 8:10] = 12  # on road: 4 of its 6 px are on the small car
    pred_segs = [seg(10, ROAD), seg(11, CAR), seg(12, CAR)]

    plain = evaluate(gt, segs, pred, pred_segs)
    car = plain.class_by_name("car")
    assert (car.tp, car.fp, car.fn) == (1, 1, 2)
    assert plain.class_by_name("person").fn == 1

    voided = void_small_things(gt, segs, SPACE.thing_ids, 8)
    assert [s.iscrowd for s in voided] == [False, False, True, True, True]
    assert void_small_things(gt, segs, SPACE.thing_ids, 4)[2].iscrowd is False  # 4 px is not under 4
    res = evaluate(gt, voided, pred, pred_segs)
    car = res.class_by_name("car")
    assert (car.tp, car.fp, car.fn) == (1, 0, 0)  # the 6 px prediction lies mostly (4/6) on crowd
    assert car.pq == plain.class_by_name("car").sq  # only the found large car remains, at its IoU
    person = res.class_by_name("person")
    assert (person.tp, person.fp, person.fn) == (0, 0, 0)
    assert res.miou == pytest.approx(plain.miou)
    assert res.class_by_name("road").pq == plain.class_by_name("road").pq
