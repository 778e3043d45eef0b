"""The lazy result: a dask graph of two tasks per band (compute, join), never one per tile."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
from torch import nn

from ..events import drain
from .blending import DenoiseRun, Parts, span


def _finish_band(run: DenoiseRun, rows: np.ndarray, plane: tuple[int, ...], index: int) -> Parts:
    """One band from its rows (read by dask, full width): top seam, middle rows, bottom seam."""
    band = run.plan.bands[index]
    parts: list[tuple] = []

    def read(segment):
        return run.pad_block(rows[:, span(segment, run.layout.width)], plane, band, segment)

    def keep(columns, top, middle, bottom):
        parts.append((top, middle, bottom))

    drain(run.band_segments(read, plane, index, keep))
    tops, middles, bottoms = zip(*parts, strict=True)
    return torch.cat(tops, 2), np.concatenate(middles, 1), torch.cat(bottoms, 2)


def _join(run: DenoiseRun, previous: Any, top: Any, middle: np.ndarray, index: int) -> np.ndarray:
    """A band's output rows: its top seam completed by the band above, then its middle."""
    seam = run.seam_rows(index, previous, top, slice(0, run.layout.width))
    return middle if seam is None else np.concatenate([seam, middle])


def denoise(
    image: Any,
    model: str | nn.Module = "basic",
    weights: Any = None,
    *,
    tile_size: int = 256,
    overlap: int = 32,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "auto",
    progress: Callable[[int, int], object] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
) -> da.Array:
    """Denoise an image lazily, tile by tile: nothing runs until the result is computed.

    Parameters
    ----------
    image : numpy.ndarray, dask.array.Array or zarr.Array
        (Y, X) grayscale, (Y, X, 3) RGB or (Y, X, 4) RGBA (alpha passed through), with
        any leading axes, e.g. (Z, Y, X, 3) or (T, Y, X), processed plane by plane.
        uint8, uint16 (scaled by the dtype's maximum), float32 or float64 (taken as
        [0, 1] and clipped; NaN or infinite values are refused, naming where they are).
        Grayscale planes go through the RGB model as three equal channels and the output
        channels are averaged back to one.
    model : {"basic", "deep"} or torch.nn.Module
        Architecture name or any module mapping N x 3 x H x W floats in [0, 1] to the same
        shape (another shape is refused with the shapes named).
    weights : path, state dict or None
        Weights for a named model (safetensors or PyTorch state-dict file, or a state
        dict); ``None``: the weights bundled with the package for that model.
    tile_size : int
        Tile side, a multiple of 16 larger than ``2 * overlap``.
    overlap : int
        Pixels neighbouring tiles share and blend.
    batch_size : int or None
        Tiles per forward pass; ``None`` picks it from the free device memory (CUDA)
        or a budget of four 256 x 256 tiles' pixels (CPU, MPS). On CUDA out-of-memory
        the batch is halved.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU; resolved where the work runs), ``"cpu"``,
        ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"``: bf16 autocast with channels_last on CUDA and on CPUs with native
        bf16 (AVX512-BF16 or AMX), fp32 elsewhere.
    backend : {"auto", "torch", "openvino"}
        What runs the model. ``"auto"``: OpenVINO on the CPU for the basic and deep models
        where the optional ``openvino`` package is installed (converted in memory, compiled
        once per batch shape), torch otherwise.
    progress : callable, optional
        Called as ``progress(done_tiles, total_tiles)`` after each batch (in the process
        that runs the batch). Computing the result again counts from the start again.
    cancel : threading.Event or callable, optional
        Checked before each batch and, on CPU and MPS, before each submodule's forward
        inside a batch; when set (or returning True) the computation raises
        :class:`~napari_histo_denoise.events.Cancelled`.

    Returns
    -------
    dask.array.Array
        The denoised image, same shape and dtype as ``image``, one chunk per band of
        tile rows.

    Raises
    ------
    ValueError
        For an unsupported image, model, weights, tiling, device, precision or backend, when
        called (a named model is loaded now, so bad weights raise
        :class:`~napari_histo_denoise.checkpoint.WeightsError` here, not at compute time).
    """
    from . import make_run

    run = make_run(
        image,
        model,
        weights,
        progress=progress,
        cancel=cancel,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        precision=precision,
        backend=backend,
        square_blocks=False,  # a task reads its whole band: keep bands one tile row high
    )
    layout = run.layout
    source = image if isinstance(image, da.Array) else da.from_array(image)
    name = f"histo-denoise-{uuid.uuid4().hex[:12]}"
    shared = dask.delayed(run, name=f"{name}-run", traverse=False)
    compute = dask.delayed(_finish_band, nout=3, pure=True)
    join = dask.delayed(_join, pure=True)
    planes = []
    for plane in layout.planes:
        chunks, previous = [], None
        for b, band in enumerate(run.plan.bands):
            rows = source[run.band_rows(plane, band)]
            top, middle, bottom = compute(
                shared, rows, plane, b, dask_key_name=f"{name}-band-{plane}-{b}"
            )
            out = join(shared, previous, top, middle, b, dask_key_name=f"{name}-join-{plane}-{b}")
            previous = bottom
            shape = (band.out_stop - band.start, layout.width, *([3] if layout.channels else []))
            chunks.append(da.from_delayed(out, shape=shape, dtype=layout.dtype))
        result = da.concatenate(chunks, axis=0)
        if layout.channels == 4:
            result = da.concatenate([result, source[(*plane, Ellipsis, slice(3, 4))]], axis=-1)
        planes.append(result)
    if not layout.leading:
        return planes[0]
    return da.stack(planes).reshape(layout.shape)
