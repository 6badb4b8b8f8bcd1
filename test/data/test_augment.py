"""Augmentation keeps image and labels aligned, segments exact, and is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_perception.config import from_dict
from panoptic_perception.data.augment import AugmentConfig, Augmenter
from panoptic_perception.data.panoptic_io import segments_from_map
from panoptic_perception.errors import ConfigError

PALETTE = {
    0: (0, 0, 0),
    1: (200, 30, 30),
    2: (30, 200, 30),
    3: (30, 30, 200),
    4: (220, 220, 40),
    5: (40, 220, 220),
}


def _sample(h=48, w=96):
    pan = np.full((h, w), 1, np.int32)
    pan[h // 2 :] = 2
    pan[10:30, 8:30] = 3
    pan[14:40, 60:70] = 4
    pan[40:44, 90:94] = 5  # small, near the right edge: crops cut it away
    image = np.zeros((h, w, 3), np.uint8)
    for k, c in PALETTE.items():
        image[pan == k] = c
    segs = segments_from_map(pan, {1: 10, 2: 0, 3: 13, 4: 11, 5: 13})
    return {"image": image, "panoptic": pan, "segments": segs, "image_id": "x"}


def _no_photometric(**kw):
    return AugmentConfig(photometric_prob=0.0, **kw)


def _check_alignment(out, tol):
    pan, img = out["panoptic"], out["image"].astype(int)
    # pixels whose 3x3 neighbourhood has one id: bilinear resampling cannot blend colours there
    pad = np.pad(pan, 1, mode="edge")
    uniform = np.ones(pan.shape, bool)
    for dy in range(3):
        for dx in range(3):
            uniform &= pad[dy : dy + pan.shape[0], dx : dx + pan.shape[1]] == pan
    assert uniform.sum() > pan.size // 2
    expected = np.array([PALETTE[int(k)] for k in pan[uniform]])
    assert np.abs(img[uniform] - expected).max() <= tol


def test_unit_scale_crop_and_flip_are_pixel_exact():
    s = _sample()
    cfg = _no_photometric(crop_height_px=48, crop_width_px=40, min_scale=1.0, max_scale=1.0, hflip_prob=1.0)
    out = Augmenter(cfg, seed=3)(s)
    y0, x0 = out["augment"]["crop_yx"]
    assert out["augment"]["flipped"] and y0 == 0
    np.testing.assert_array_equal(out["panoptic"], s["panoptic"][:, x0 : x0 + 40][:, ::-1])
    np.testing.assert_array_equal(out["image"], s["image"][:, x0 : x0 + 40][:, ::-1])
    _check_alignment(out, tol=0)


@pytest.mark.parametrize("seed", range(6))
def test_scaled_crops_keep_image_and_labels_aligned(seed):
    cfg = _no_photometric(crop_height_px=40, crop_width_px=64, min_scale=0.6, max_scale=1.8)
    out = Augmenter(cfg, seed=seed)(_sample())
    assert out["image"].shape == (40, 64, 3) and out["panoptic"].shape == (40, 64)
    assert out["panoptic"].dtype == np.int32 and out["image"].dtype == np.uint8
    _check_alignment(out, tol=2)
    # segments re-measured: area and bbox equal a fresh measurement, empty ones dropped
    pan = out["panoptic"]
    present = set(np.unique(pan).tolist()) - {0}
    assert {s.id for s in out["segments"]} == present
    fresh = {s.id: s for s in segments_from_map(pan, {s.id: s.category_id for s in out["segments"]})}
    for seg in out["segments"]:
        assert seg.area_px == fresh[seg.id].area_px and seg.bbox_xywh == fresh[seg.id].bbox_xywh
        assert seg.category_id == {1: 10, 2: 0, 3: 13, 4: 11, 5: 13}[seg.id]


def test_instances_cut_to_nothing_are_dropped():
    cfg = _no_photometric(crop_height_px=48, crop_width_px=40, min_scale=1.0, max_scale=1.0, hflip_prob=0.0)
    cut = kept = 0
    for seed in range(12):
        out = Augmenter(cfg, seed=seed)(_sample())
        ids = {s.id for s in out["segments"]}
        if out["augment"]["crop_yx"][1] + 40 <= 90:  # crop ends before the small segment starts
            assert 5 not in ids
            cut += 1
        else:
            assert 5 in ids
            kept += 1
    assert cut > 0


def test_seeded_reproducible_and_photometric_touches_only_the_image():
    cfg = AugmentConfig(crop_height_px=32, crop_width_px=48, photometric_prob=1.0)
    a = Augmenter(cfg, seed=11)(_sample())
    b = Augmenter(cfg, seed=11)(_sample())
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["panoptic"], b["panoptic"])
    plain = Augmenter(AugmentConfig(crop_height_px=32, crop_width_px=48, photometric_prob=0.0), seed=11)(
        _sample()
    )
    np.testing.assert_array_equal(plain["panoptic"], a["panoptic"])
    assert not np.array_equal(plain["image"], a["image"])
    c = Augmenter(cfg, seed=12)(_sample())
    assert not np.array_equal(a["panoptic"], c["panoptic"]) or not np.array_equal(a["image"], c["image"])


def test_small_image_is_padded_with_void():
    cfg = _no_photometric(crop_height_px=48, crop_width_px=200, min_scale=1.0, max_scale=1.0)
    out = Augmenter(cfg, seed=0)(_sample())
    assert (out["panoptic"] == 0).sum() >= 48 * (200 - 96)
    assert (out["image"][out["panoptic"] == 0] == 0).all()


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="min_scale"):
        from_dict(AugmentConfig, {"min_scale": 2.0, "max_scale": 1.0})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(AugmentConfig, {"flip": 0.5})
