"""Training augmentation applied identically to image and panoptic labels.

Order: random scale (bilinear for the image, nearest for the segment-id map so ids are never
blended), random crop to the fixed training size (padding with black / VOID where the scaled
image is smaller), horizontal flip, photometric jitter (image only: brightness, contrast,
saturation, hue as in the SSD / detectron2 colour augmentations). Segments are re-measured
afterwards (area, bbox) and those cut to nothing are dropped. Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np

from panoptic_perception.data.datasets.base import Sample
from panoptic_perception.data.targets import remeasure
from panoptic_perception.errors import InputError


@dataclass
class AugmentConfig:
    crop_height_px: int = 192
    crop_width_px: int = 640
    # scale relative to the factor that fits the image height to the crop height
    min_scale: float = 0.75
    max_scale: float = 1.5
    hflip_prob: float = 0.5
    brightness: float = 0.25  # multiplicative factor range 1 +- this
    contrast: float = 0.25
    saturation: float = 0.25
    hue_deg: float = 6.0
    photometric_prob: float = 0.8

    def __post_init__(self) -> None:
        if self.crop_height_px <= 0 or self.crop_width_px <= 0:
            raise ValueError(f"crop size must be positive, got {self.crop_width_px}x{self.crop_height_px}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        if not 0.0 <= self.hflip_prob <= 1.0 or not 0.0 <= self.photometric_prob <= 1.0:
            raise ValueError("probabilities must be within 0..1")


def resize_pair(
    image: np.ndarray, panoptic: np.ndarray, height_px: int, width_px: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Image bilinear (area when shrinking), ids nearest."""
    import cv2

    h, w = panoptic.shape
    if (h, w) == (height_px, width_px):
        return image, panoptic
    interp = cv2.INTER_AREA if height_px < h else cv2.INTER_LINEAR
    image = cv2.resize(image, (width_px, height_px), interpolation=interp)
    # nearest on explicit index grids: cv2 has no int32 nearest with exact pixel centres for all sizes
    ys = np.minimum(((np.arange(height_px) + 0.5) * h / height_px).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(width_px) + 0.5) * w / width_px).astype(np.int64), w - 1)
    return image, panoptic[ys[:, None], xs[None, :]]


def photometric(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter in random order on a uint8 RGB image."""
    import cv2

    img = image.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and config.brightness > 0:
            img *= rng.uniform(1 - config.brightness, 1 + config.brightness)
        elif op == 1 and config.contrast > 0:
            mean = img.mean()
            img = (img - mean) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean
        elif op == 2 and config.saturation > 0:
            gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
            img = (img - gray[..., None]) * rng.uniform(1 - config.saturation, 1 + config.saturation) + gray[
                ..., None
            ]
        elif op == 3 and config.hue_deg > 0:
            hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL).astype(
                np.float32
            )
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-config.hue_deg, config.hue_deg) * 256 / 360) % 256
            img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class Augmenter:
    """`Augmenter(config, seed)(sample) -> sample`; the rng advances per call (one stream per
    worker: give each DataLoader worker its own seed)."""

    def __init__(self, config: Optional[AugmentConfig] = None, seed: int = 0) -> None:
        self.config = config or AugmentConfig()
        self.rng = np.random.default_rng(seed)

    def __call__(self, sample: Sample, rng: Optional[np.random.Generator] = None) -> Sample:
        rng = rng or self.rng
        cfg = self.config
        image = np.asarray(sample["image"])
        panoptic = np.asarray(sample["panoptic"])
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"augment expects a uint8 [H, W, 3] image, got {image.shape} {image.dtype}")
        if image.shape[:2] != panoptic.shape:
            raise InputError(f"image {image.shape[:2]} and panoptic {panoptic.shape} differ in size")
        h, w = panoptic.shape
        ch, cw = cfg.crop_height_px, cfg.crop_width_px

        scale = ch / h * rng.uniform(cfg.min_scale, cfg.max_scale)
        new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        image, panoptic = resize_pair(image, panoptic, new_h, new_w)

        # crop offset; where the scaled image is smaller than the crop, place it at a random offset
        y0 = int(rng.integers(0, new_h - ch + 1)) if new_h >= ch else -int(rng.integers(0, ch - new_h + 1))
        x0 = int(rng.integers(0, new_w - cw + 1)) if new_w >= cw else -int(rng.integers(0, cw - new_w + 1))
        out_img = np.zeros((ch, cw, 3), np.uint8)
        out_pan = np.zeros((ch, cw), np.int32)
        sy, sx = max(y0, 0), max(x0, 0)
        dy, dx = max(-y0, 0), max(-x0, 0)
        hh, ww = min(new_h - sy, ch - dy), min(new_w - sx, cw - dx)
        out_img[dy : dy + hh, dx : dx + ww] = image[sy : sy + hh, sx : sx + ww]
        out_pan[dy : dy + hh, dx : dx + ww] = panoptic[sy : sy + hh, sx : sx + ww]

        flipped = bool(rng.random() < cfg.hflip_prob)
        if flipped:
            out_img = np.ascontiguousarray(out_img[:, ::-1])
            out_pan = np.ascontiguousarray(out_pan[:, ::-1])
        if rng.random() < cfg.photometric_prob:
            out_img = photometric(out_img, rng, cfg)

        segments = remeasure(out_pan, [replace(s) for s in sample["segments"]])
        out = dict(sample)
        out.update(
            image=out_img,
            panoptic=out_pan,
            segments=segments,
            augment={"scale": scale, "crop_yx": (y0, x0), "flipped": flipped},
        )
        return out
