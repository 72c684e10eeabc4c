"""Reproducible discrete Laplace noise for `fraudscreen evaluate --privacy --seed` only.

OpenDP samples from a CSPRNG that cannot be seeded, which is what a gateway must use; an
evaluation table that changes on every run cannot be checked against the README, though.
This draws the same distribution (P(z) proportional to exp(-|z| / scale), the difference
of two geometric variables) from NumPy's PCG64 with a seed. The scales and thresholds
still come from the release plans (OpenDP's privacy maps). Never used on a gateway.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np


class SeededDiscreteLaplace:
    """A `release.NoiseSampler`: adds discrete Laplace noise of `scale` to each count."""

    def __init__(self, *seed: int) -> None:
        self._rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
        self._lock = threading.Lock()  # releases run on a thread pool; draws stay ordered

    def __call__(self, counts: Sequence[int], scale: float) -> list[int]:
        if not scale > 0:
            raise ValueError(f"noise scale must be > 0, got {scale}")
        p = -math.expm1(-1.0 / scale)  # 1 - exp(-1/scale), exact for large scales
        with self._lock:
            noise = self._rng.geometric(p, len(counts)) - self._rng.geometric(p, len(counts))
        return [int(c) + int(z) for c, z in zip(counts, noise, strict=True)]
