"""The tiled denoising engine: the one place that tiles, batches and blends.

Data flow of one plane: normalise by dtype (the same rule for the whole image) -> read a
band of tile rows -> batches of tiles on the device (bf16 autocast + channels_last on
CUDA and on CPUs with native bf16) -> weighted overlap-add, segment by segment -> divide
by the summed weights -> back to the input dtype -> a sink. Neighbouring bands share a
seam of ``overlap`` rows whose partial sums are added when the later band is joined, so no
tile is computed twice.

The modules of this package, each one job: :mod:`.tiling` (tile grids, blending windows,
bands of tile rows), :mod:`.geometry` (layout, tile plan, bands, segments, skipped tiles),
:mod:`.model_cache` (models built once per process and device), :mod:`.blending` (a run:
batches on the device and the weighted sums), :mod:`.lazy` (the dask graph of
:func:`denoise`), :mod:`.sinks` (where finished rows go), :mod:`.region` (one region of an
image, with a cache of tiles for views that pan).

:func:`denoise` returns a lazy dask array with two tasks per band (compute, join), never one
task per tile; :func:`iter_denoise` and :func:`run_bands` run the same band code in order,
yielding :class:`Progress` between batches. The faces' routes from a source to a
destination (the widget, ``histo-denoise denoise``, slides) go through
:func:`napari_histo_denoise.pipeline.iter_denoise_into`; helpers that denoise an in-memory
crop (evaluation, the demo, the before/after picture) call :func:`denoise` directly.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..events import Cancelled, Progress, drain
from ..files import atomic_output, check_target
from ..settings import DenoiseSettings
from .blending import DenoiseRun
from .geometry import DTYPE_SCALE, ImageLayout, TilePlan
from .lazy import denoise
from .model_cache import clear_model_cache
from .region import RegionResult, TileCache, denoise_region, iter_denoise_region
from .sinks import ArraySink

__all__ = [
    "DTYPE_SCALE",
    "ArraySink",
    "Cancelled",
    "DenoiseRun",
    "ImageLayout",
    "Progress",
    "RegionResult",
    "TileCache",
    "TilePlan",
    "clear_model_cache",
    "denoise",
    "denoise_region",
    "denoise_to_zarr",
    "iter_denoise",
    "iter_denoise_region",
    "make_run",
    "run_bands",
]


def make_run(
    image: Any,
    model: Any,
    weights: Any,
    *,
    progress: Callable[[int, int], object] | None = None,
    cancel: Any = None,
    tissue: np.ndarray | None = None,
    square_blocks: bool = True,
    **options: Any,
) -> DenoiseRun:
    """Validate the settings and make the run (the model is loaded now, once).

    ``square_blocks`` cuts images too wide for whole-width bands into square-ish blocks
    (the eager runs); the lazy result keeps bands of one tile row (see :class:`TilePlan`).
    """
    if isinstance(options.get("device"), torch.device):
        options["device"] = str(options["device"])
    settings = DenoiseSettings(model=model, weights=weights, **options)
    return DenoiseRun(image, settings, progress, cancel, tissue, square_blocks)


def run_bands(
    run: DenoiseRun, image: Any, sink: Any, first_band: int = 0
) -> Generator[Progress, None, None]:
    """Denoise ``image`` band by band into ``sink``, yielding a :class:`Progress` per batch.

    Each band segment's finished pixels go to ``sink.write(plane, rows, columns, values,
    source)`` as soon as they are done, so no full-width row buffer is kept beyond the
    seams. ``first_band`` resumes a run whose earlier bands are in the sink already: they
    count as done, and the band before it is computed again (its bottom seam completes
    ``first_band``) but not written. The sink's ``band_done(plane, index)``, when it has
    one, is called after each band written.
    """
    band_done = getattr(sink, "band_done", None)
    if first_band >= len(run.plan.bands):  # a resumed run with every band in the sink
        yield run.advance("done", run.total)
        return
    for plane in run.layout.planes:
        strip, previous = run.seam_strip(), False  # bottom seams, one band's at a time
        for b, band in enumerate(run.plan.bands):
            if b < first_band - 1:
                yield run.advance((plane, b), run.plan.band_tiles(band))
                continue
            emit = functools.partial(
                _emit, run, sink if b >= first_band else None, image, plane, b, strip, previous
            )
            read = functools.partial(run.read_block, image, plane, band)
            yield from run.band_segments(read, plane, b, emit)
            if b >= first_band and band_done is not None:
                band_done(plane, b)
            previous = True
        first_band = 0


def _emit(run, sink, image, plane, index, strip, previous, columns, top, middle, bottom):
    """Write a segment's finished rows to the sink; keep its bottom seam for the next band.

    The band above's bottom seam in ``columns`` is read from ``strip`` before this band's
    takes its place there, so one full-width strip serves every band.
    """
    if sink is not None:  # else a band computed again for its bottom seam only
        above = strip[:, : top.shape[1]] if previous else None
        seam = run.seam_rows(index, above, top, columns)
        values = middle if seam is None else np.concatenate([seam, middle])
        band = run.plan.bands[index]
        sink.write(plane, slice(band.start, band.out_stop), columns, values, image)
    strip[:, : bottom.shape[1], columns] = bottom


def iter_denoise(
    image: Any,
    model: str | nn.Module = "basic",
    weights: Any = None,
    *,
    out: Any = None,
    **options: Any,
) -> Generator[Progress, None, Any]:
    """Denoise now, band by band, yielding a :class:`Progress` after each batch.

    Takes the same arguments as :func:`denoise`, plus ``out``: a numpy or zarr array of
    the image's shape and dtype to write into (memory then stays bounded by one band).
    The generator's return value (``StopIteration.value``, or the value of
    ``yield from``) is ``out``, or a new numpy array when ``out`` is None. Settings are
    validated when this function is called, before the generator is first advanced.
    """
    run = make_run(image, model, weights, **options)
    if out is None:
        out = np.empty(run.layout.shape, dtype=run.layout.dtype)
    sink = ArraySink(out, run.layout)
    return _returning(run_bands(run, image, sink), out)


def _returning(events: Generator[Progress, None, None], value: Any):
    yield from events
    return value


def denoise_to_zarr(
    image: Any,
    store: str | os.PathLike,
    model: str | nn.Module = "basic",
    weights: Any = None,
    *,
    overwrite: bool = False,
    **options: Any,
):
    """Denoise ``image`` into a zarr array on disk, one band at a time.

    The array is written under ``<store>.partial`` and renamed when complete, so a
    cancelled or failed run leaves nothing behind. Takes the same keyword arguments as
    :func:`denoise`; chunks are one band of rows by at most 4096 columns.

    Returns
    -------
    zarr.Array
        The finished array, opened read-only.

    Raises
    ------
    FileExistsError
        If ``store`` exists and ``overwrite`` is False.
    """
    target = Path(store).expanduser()
    check_target(target, overwrite)
    run = make_run(image, model, weights, **options)
    drain(write_zarr_array(run, image, target))
    import zarr

    return zarr.open_array(str(target), mode="r")


def write_zarr_array(run: DenoiseRun, image: Any, target: Path) -> Generator[Progress, None, Path]:
    """Run ``run`` into a new zarr array at ``target``, published atomically."""
    import zarr

    layout = run.layout
    chunks = (
        *([1] * len(layout.leading)),
        min(layout.height, run.plan.bands[0].out_stop),
        min(layout.width, 4096),
        *layout.shape[len(layout.leading) + 2 :],
    )
    with atomic_output(target) as partial:
        array = zarr.create_array(
            store=str(partial), shape=layout.shape, dtype=layout.dtype, chunks=chunks
        )
        yield from run_bands(run, image, ArraySink(array, layout))
    return target
