"""Weights trained in this napari session, so Denoise can use them at once."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psygnal import Signal

_workdir: Path | None = None


def workdir() -> Path:
    """Return the session's scratch folder (trained weights, streamed results); gone at exit."""
    global _workdir
    if _workdir is None:
        _workdir = Path(tempfile.mkdtemp(prefix="histo-denoise-napari-"))
        atexit.register(shutil.rmtree, _workdir, ignore_errors=True)
    return _workdir


@dataclass(frozen=True)
class TrainedWeights:
    """A weights file written after a training run of this session."""

    path: Path
    architecture: str
    label: str


def save_trained(result: Any, architecture: str, steps: int) -> TrainedWeights:
    """Write a ``TrainResult`` to this session's folder (call in the worker thread).

    ``trained-HHMMSS.safetensors`` (a suffix ``-2``, ``-3``... when a run ends in the
    same second), with its report and curves beside it (``TrainResult.save``).
    """
    stem = f"trained-{time.strftime('%H%M%S')}"
    path = workdir() / f"{stem}.safetensors"
    count = 1
    while path.exists():
        count += 1
        path = workdir() / f"{stem}-{count}.safetensors"
    result.save(path)
    label = f"trained here {time.strftime('%H:%M')}: {architecture}, {steps} steps"
    return TrainedWeights(path, architecture, label)


class _Registry:
    """The session's trained weights; ``added`` fires (main thread) for each new one."""

    added = Signal(object)

    def __init__(self) -> None:
        self.items: list[TrainedWeights] = []

    def register(self, item: TrainedWeights) -> None:
        self.items.append(item)
        self.added.emit(item)


trained_weights = _Registry()
