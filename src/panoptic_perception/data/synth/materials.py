"""Material table: base colour and a procedural pattern per surface, indexed by material id.

Materials are appended as the world is generated (every car gets its own paint), so one id per
hit is all the renderer stores; colour is computed once per pixel at the end.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

# Pattern kinds (see textures.shade_pixels).
PLAIN, ASPHALT, PAVING, CURB, GRASS, FACADE, FOLIAGE, FENCE, METAL, PAINT, GLASS, RUBBER, CLOTH, SKIN = range(
    14
)


class MaterialTable:
    def __init__(self) -> None:
        self._base: List[Sequence[float]] = []
        self._kind: List[int] = []
        self._params: List[Sequence[float]] = []
        self._frozen: tuple | None = None

    def add(
        self, base_rgb: Sequence[float], kind: int, params: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    ) -> int:
        self._base.append(tuple(float(c) for c in base_rgb))
        self._kind.append(int(kind))
        self._params.append(tuple(float(p) for p in params) + (0.0,) * (4 - len(params)))
        self._frozen = None
        return len(self._base) - 1

    def arrays(self) -> tuple:
        """(base (M,3) float32 0..255, kind (M,) int16, params (M,4) float32)."""
        if self._frozen is None:
            self._frozen = (
                np.asarray(self._base, dtype=np.float32).reshape(-1, 3),
                np.asarray(self._kind, dtype=np.int16),
                np.asarray(self._params, dtype=np.float32).reshape(-1, 4),
            )
        return self._frozen

    def __len__(self) -> int:
        return len(self._base)
