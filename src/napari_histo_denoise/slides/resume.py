"""What makes two denoise runs the same job, so a resume never mixes two inputs or models."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np


def model_fingerprint(model: Any, weights: Any) -> str:
    """A short identity of the model and weights, stable across processes."""
    digest = hashlib.sha256(str(model if isinstance(model, str) else type(model)).encode())
    if isinstance(weights, (str, os.PathLike)):
        from ..checkpoint import file_sha256

        digest.update(file_sha256(weights).encode())
    state = weights if weights is not None else getattr(model, "state_dict", dict)()
    if isinstance(state, dict):
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def content_sample(level0: Any, edge: int = 64) -> str:
    """Hash of three small patches (corner, centre, far corner): same-shaped inputs differ."""
    h, w = level0.shape[:2]
    digest = hashlib.sha256()
    for y, x in ((0, 0), (h // 2, w // 2), (max(0, h - edge), max(0, w - edge))):
        digest.update(np.ascontiguousarray(level0[y : y + edge, x : x + edge]).tobytes())
    return digest.hexdigest()[:16]


def run_signature(level0: Any, source: str, run: Any, chunk: int) -> dict[str, Any]:
    """Everything a resumed run must share with the run it continues.

    ``run`` is the :class:`~napari_histo_denoise.engine.DenoiseRun`: its settings, its tissue
    skips and its plan of bands and segments (finished bands are recorded by index, so a
    plan that cuts the image differently, e.g. after an upgrade, must start afresh).
    """
    settings, plan = run.settings, run.plan
    bounds = [(b.start, b.out_stop) for b in plan.bands] + [
        (s.start, s.out_stop) for s in plan.segments
    ]
    return {
        "shape": list(level0.shape),
        "dtype": str(level0.dtype),
        "source": source,
        "content": content_sample(level0),
        "model": model_fingerprint(settings.model, settings.weights),
        "tile_size": settings.tile_size,
        "overlap": settings.overlap,
        "chunk": chunk,
        "skip": None if plan.skip is None else _digest(np.packbits(plan.skip).tobytes()),
        "plan": _digest(repr(bounds).encode()),
    }


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
