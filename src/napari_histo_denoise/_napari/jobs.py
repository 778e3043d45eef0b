"""What the worker thread runs: the core's generators, plus the record a result layer keeps.

These functions run off the main thread and never touch a widget or a layer.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .session import TrainedWeights, save_trained, workdir


@dataclass(frozen=True)
class DenoiseOutcome:
    """A finished denoise: the result (array, or pyramid levels level 0 first) and its record."""

    data: Any
    record: dict[str, Any]


def megapixels(shape: tuple[int, ...], rgb: bool) -> float:
    """Pixels of an image (all planes of a stack), channels not counted, in millions."""
    return math.prod(shape[:-1] if rgb else shape) / 1e6


def denoise_job(
    data: Any, settings: Any, cancel: threading.Event, *, stream: bool, rgb: bool
) -> Generator[Any, None, DenoiseOutcome]:
    """Denoise ``data`` (array or pyramid levels) with ``settings`` (a DenoiseSettings).

    In-memory inputs give an in-memory result. With ``stream`` (lazy, multiscale or very
    large inputs) the result goes to disk in the session folder and is read back lazily: a
    2-D image (grey, RGB or RGBA) as an OME-Zarr pyramid, a stack as one zarr array. Both
    go through the core's :func:`~napari_histo_denoise.pipeline.iter_denoise_into`. A
    cancelled or failed run deletes what it wrote.
    """
    from ..pipeline import iter_denoise_into

    ran = _resolved(settings)
    level0 = data[0] if isinstance(data, list) else data
    folder = destination = None
    if stream:
        folder = Path(tempfile.mkdtemp(prefix="denoised-", dir=workdir()))
        plane = level0.ndim == 2 or (rgb and level0.ndim == 3)
        destination = folder / ("denoised.ome.zarr" if plane else "denoised.zarr")
    start = time.perf_counter()
    try:
        result = yield from iter_denoise_into(
            data,
            destination,
            model=settings.model,
            weights=settings.weights,
            resume=False,
            **_engine_options(settings, ran, cancel),
        )
        if stream:
            result = _read_back(result)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    mpx = megapixels(tuple(level0.shape), rgb)
    return DenoiseOutcome(result, _record(settings, ran, seconds, mpx))


def view_job(
    data: Any, view: Any, settings: Any, cancel: threading.Event, *, cache: Any, source: Any
) -> Generator[Any, None, DenoiseOutcome]:
    """Denoise the ``view`` (a :class:`~.view.View`) of ``data``, the array of its level.

    Tiles come from ``cache`` where it has them (keyed by ``source``, what the data is) and
    go into it once computed; the record says how many of each.
    """
    from ..engine.region import iter_denoise_region

    ran = _resolved(settings)
    start = time.perf_counter()
    result = yield from iter_denoise_region(
        data,
        view.rows,
        view.columns,
        settings.model,
        settings.weights,
        plane=view.plane,
        cache=cache,
        source=source,
        **_engine_options(settings, ran, cancel),
    )
    seconds = time.perf_counter() - start
    record = _record(settings, ran, seconds, view.pixels / 1e6)
    record["view"] = {
        "level": view.level,
        "plane": list(view.plane),
        "rows": [view.rows.start, view.rows.stop],
        "columns": [view.columns.start, view.columns.stop],
        "tiles_computed": result.computed,
        "tiles_reused": result.reused,
    }
    return DenoiseOutcome(result.data, record)


def _engine_options(settings: Any, ran: dict[str, str], cancel: threading.Event) -> dict:
    """The engine's keyword arguments for ``settings`` on the resolved device, with cancel."""
    return {
        "tile_size": settings.tile_size,
        "overlap": settings.overlap,
        "batch_size": settings.batch_size,
        "device": ran["device"],
        "precision": settings.precision,
        "backend": settings.backend,
        "cancel": cancel.is_set,
    }


def _resolved(settings: Any) -> dict[str, str]:
    """The device, precision and backend ``settings`` run with here."""
    from ..devices import resolve_run
    from ..models import is_package_model

    return resolve_run(
        settings.device,
        settings.precision,
        settings.backend,
        own_model=is_package_model(settings.model),
    )


def _read_back(path: Path) -> Any:
    """A streamed result, lazily: the levels of an OME-Zarr pyramid, or the zarr array."""
    import zarr

    if path.name.endswith(".ome.zarr"):
        from ..io import read_image

        levels, _ = read_image(path)
        return levels if isinstance(levels, list) else [levels]
    return zarr.open_array(str(path), mode="r")


def _record(settings: Any, ran: dict[str, str], seconds: float, mpx: float) -> dict:
    """What a result layer keeps about the run that made it.

    ``ran``: the device, precision and backend, as resolved.
    """
    weights = settings.weights
    sha256 = None
    if isinstance(weights, (str, Path)):
        from ..checkpoint import file_sha256

        sha256 = file_sha256(weights)
    return {
        "model": settings.model
        if isinstance(settings.model, str)
        else type(settings.model).__name__,
        "weights": str(weights) if isinstance(weights, (str, Path)) else None,
        "weights_sha256": sha256,
        "tile_size": settings.tile_size,
        "overlap": settings.overlap,
        "batch_size": settings.batch_size,
        **ran,
        "seconds": round(seconds, 3),
        "megapixels": round(mpx, 4),
        "mpx_per_s": round(mpx / seconds, 4) if seconds > 0 else None,
    }


def train_job(
    images: list[Any],
    model: str,
    settings: Any,
    cancel: threading.Event,
    *,
    val_images: list[Any] | None,
    init_weights: Any,
) -> Generator[Any, None, tuple[Any, TrainedWeights]]:
    """Train with ``settings`` (a TrainSettings); save the weights in the session folder."""
    from ..training import iter_train

    result = yield from iter_train(
        images,
        model,
        val_images=val_images,
        init_weights=init_weights,
        cancel=cancel,
        **dataclasses.asdict(settings),
    )
    return result, save_trained(result, model, settings.steps)


def export_job(weights: Path, path: Path, cancel: threading.Event) -> Generator[Any, None, Path]:
    """Write ``weights`` as a bioimage.io package at ``path`` (replacing it), cancellably."""
    from ..bmz import iter_export_bmz

    return (yield from iter_export_bmz(weights, path, overwrite=True, cancel=cancel))
