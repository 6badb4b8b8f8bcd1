"""Procedural textures and shading: colour from (material, texture coordinates in metres, light).

Textures are functions of world coordinates (never of pixels), so a surface's pattern stays put
while the camera moves. One tileable fractal noise image per drive, sampled nearest-neighbour at
two scales, gives asphalt grain, facade dirt, foliage and clouds cheaply.
"""

from __future__ import annotations

import numpy as np

from panoptic_perception.data.synth import materials as M

_SIZE = 256
_MASK = _SIZE - 1


class NoiseTexture:
    def __init__(self, rng: np.random.Generator) -> None:
        white = rng.standard_normal((_SIZE, _SIZE))
        f = np.fft.fftfreq(_SIZE)
        radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
        radius[0, 0] = 1.0
        spectrum = np.fft.fft2(white) / radius**1.6  # 1/f^beta: natural-looking fractal noise
        spectrum[0, 0] = 0.0
        img = np.real(np.fft.ifft2(spectrum))
        img = (img - img.min()) / (img.max() - img.min())
        self.image = img.astype(np.float32)  # values in 0..1, mean ~0.5
        self._row = self.image[17].astype(np.float64)

    def sample(self, a: np.ndarray, b: np.ndarray, texels_per_m: float) -> np.ndarray:
        i = (np.asarray(a) * texels_per_m).astype(np.int64) & _MASK
        j = (np.asarray(b) * texels_per_m).astype(np.int64) & _MASK
        return self.image[i, j]

    def profile(self, x: np.ndarray) -> np.ndarray:
        """A smooth 1-D noise in -1..1 (linear interpolation along one texture row), for ragged tops."""
        x = np.asarray(x, dtype=np.float64)
        i = np.floor(x)
        frac = x - i
        i = i.astype(np.int64) & _MASK
        v = self._row[i] * (1 - frac) + self._row[(i + 1) & _MASK] * frac
        return 2.0 * v - 1.0


def colourise(
    material: np.ndarray,
    tu: np.ndarray,
    tv: np.ndarray,
    shade: np.ndarray,
    table: M.MaterialTable,
    noise: NoiseTexture,
    exposure: float,
) -> np.ndarray:
    """(N,) hits -> (N, 3) float RGB, before sky and sensor noise. material -1 rows are left black."""
    base, kind_of, params = table.arrays()
    hit = material >= 0
    m = np.where(hit, material, 0)
    kind = kind_of[m]
    fine = noise.sample(tu, tv, 23.0)
    coarse = noise.sample(tu + 57.0, tv, 2.5)
    factor = 0.9 + 0.2 * (fine - 0.5) + 0.15 * (coarse - 0.5)
    rgb = base[m] * factor[:, None]

    def where(k: int) -> np.ndarray:
        return np.nonzero(kind == k)[0]

    i = where(M.ASPHALT)
    rgb[i] *= (0.75 + 0.5 * fine[i] + 0.3 * (coarse[i] - 0.5))[:, None]
    i = where(M.PAVING)
    joints = (np.mod(tu[i], 1.2) < 0.05) | (np.mod(tv[i], 1.2) < 0.05)
    rgb[i] *= np.where(joints, 0.7, 1.0)[:, None]
    i = where(M.GRASS)
    rgb[i] *= (0.6 + 0.8 * fine[i] * coarse[i] + 0.2)[:, None]
    i = where(M.FOLIAGE)
    leaves = noise.sample(tu[i] * 1.3 + 11.0, tv[i] * 1.3, 9.0)
    rgb[i] *= (0.45 + 1.1 * leaves * (0.6 + 0.8 * coarse[i]))[:, None]
    i = where(M.FACADE)
    if i.size:
        p = params[m[i]]
        spacing, floor_h, win_w, win_h = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
        fx = np.mod(tu[i], spacing) / spacing
        fz = np.mod(tv[i], floor_h) / floor_h
        window = (np.abs(fx - 0.5) < win_w / 2) & (np.abs(fz - 0.55) < win_h / 2) & (tv[i] > 0.8)
        glass = np.array([45.0, 55.0, 70.0], dtype=np.float32) * (0.7 + 0.8 * coarse[i])[:, None]
        rgb[i] = np.where(window[:, None], glass, rgb[i])
    i = where(M.FENCE)
    slats = np.mod(tu[i], 0.14) < 0.035
    rgb[i] *= np.where(slats, 0.55, 1.0)[:, None]
    i = where(M.GLASS)
    rgb[i] *= (0.6 + 0.6 * np.clip(tv[i] - 0.8, 0, 1) + 0.3 * coarse[i])[:, None]
    i = where(M.PAINT)
    rgb[i] = rgb[i] * 0.95 + 10.0 * fine[i][:, None]
    rgb *= (shade * exposure)[:, None]
    rgb[~hit] = 0.0
    return rgb


def sky(
    dirs: np.ndarray, noise: NoiseTexture, horizon_rgb: np.ndarray, zenith_rgb: np.ndarray, cloud_cover: float
) -> np.ndarray:
    """Sky colour per ray: a gradient with elevation plus clouds drawn on a plane high above."""
    norm = np.linalg.norm(dirs, axis=1)
    up = np.clip(dirs[:, 2] / norm, 0.0, 1.0)
    w = np.sqrt(up)[:, None]
    rgb = horizon_rgb * (1 - w) + zenith_rgb * w
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(dirs[:, 2] > 1e-3, 1.0 / dirs[:, 2], 1e3)
    cloud = noise.sample(dirs[:, 0] * s * 0.6, dirs[:, 1] * s * 0.6 + 100.0, 2.0)
    amount = np.clip((cloud - (1.0 - cloud_cover)) * 3.0, 0.0, 1.0)[:, None] * np.clip(up * 8, 0, 1)[:, None]
    return rgb * (1 - amount) + np.array([235.0, 235.0, 240.0]) * amount
