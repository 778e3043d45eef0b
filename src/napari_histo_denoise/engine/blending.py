"""One denoise run: tiles of a band on the device, blended into finished rows.

A :class:`DenoiseRun` holds what a call decided (plan, model source, progress and cancel)
and is shipped once to each dask worker; its :class:`BandDenoiser` (one per process) runs
the batches. A band of tile rows is denoised segment by segment (segments of tile columns,
each read on its own), each segment's weighted sums completed by the one before it (the
shared columns) and its finished pixels divided by the summed weights. A band's top and
bottom seams (the rows shared with its neighbours) are passed on as partial sums and
completed by :meth:`DenoiseRun.seam_rows` once the band above is done, so no tile is
computed twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import dask.array as da
import numpy as np
import torch

from ..events import Cancelled, Progress, cancel_check
from ..settings import DenoiseSettings
from .geometry import DTYPE_SCALE, ImageLayout, TilePlan
from .model_cache import ModelSource, PreparedModel, prepared_model
from .tiling import Band, reflect_indices

_OOM_ERRORS = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)
Parts = tuple[torch.Tensor, np.ndarray, torch.Tensor]


class DenoiseRun:
    """Plan, settings, model and progress of one denoise call.

    Run-level work happens here, once: the weights are hashed and the model is built (into
    the process cache that every band and the lazy result then reuse), so an unusable
    device or weights file fails when the run is made, not when it is computed.
    """

    def __init__(
        self,
        image: Any,
        settings: DenoiseSettings,
        progress: Callable[[int, int], object] | None = None,
        cancel: Any = None,
        tissue: np.ndarray | None = None,
        square_blocks: bool = True,
    ) -> None:
        if progress is not None and not callable(progress):
            raise ValueError("progress must be a callable taking (done, total)")
        self.is_cancelled = cancel_check(cancel)
        layout = ImageLayout.of(image)
        self.plan = TilePlan(
            layout,
            settings.tile_size,
            settings.overlap,
            settings.batch_size,
            tissue,
            square_blocks=square_blocks,
        )
        self.layout = layout
        self.settings = settings
        self.source = ModelSource.from_settings(settings)
        prepared_model(self.source, settings.device, settings.precision, settings.backend)
        self.norm_y = torch.from_numpy(self.plan.grid_y.normaliser())
        self.norm_x = torch.from_numpy(self.plan.grid_x.normaliser())
        self.progress = progress
        self._done: dict[Any, int] = {}
        self._lock, self._t0 = threading.Lock(), time.perf_counter()
        self._denoiser: BandDenoiser | None = None

    @property
    def total(self) -> int:
        return self.plan.total

    def __getstate__(self) -> dict[str, Any]:
        # Callbacks, locks and device state stay in the process that made them.
        state = self.__dict__.copy()
        state.update(progress=None, is_cancelled=None, _lock=None, _denoiser=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), is_cancelled=cancel_check(None))

    def check_cancel(self) -> None:
        if self.is_cancelled():
            raise Cancelled("denoising was cancelled")

    def advance(self, band_key: Any, tiles: int) -> Progress:
        """Count ``tiles`` more done in a band (a band computed again starts from zero)."""
        with self._lock:
            self._done[band_key] = self._done.get(band_key, 0) + tiles
            done = sum(self._done.values())
        event = Progress(done, self.total, time.perf_counter() - self._t0)
        if self.progress is not None:
            self.progress(event.done, event.total)
        return event

    def restart_band(self, band_key: Any) -> None:
        with self._lock:
            self._done[band_key] = 0

    def denoiser(self) -> BandDenoiser:
        with self._lock:
            if self._denoiser is None:
                settings = self.settings
                prepared = prepared_model(
                    self.source, settings.device, settings.precision, settings.backend
                )
                self._denoiser = BandDenoiser(self, prepared)
            return self._denoiser

    # -- bands ---------------------------------------------------------------------

    def band_rows(self, plane: tuple[int, ...], band: Band) -> tuple[Any, ...]:
        """Index of the source rows a band reads (its denoised channels only)."""
        return (*plane, span(band, self.layout.height), slice(None), *self.layout.colour)

    def read_block(
        self, image: Any, plane: tuple[int, ...], band: Band, segment: Band
    ) -> np.ndarray:
        """Read one band segment from the source (numpy, dask, zarr), padded for the tiles."""
        rows, columns = span(band, self.layout.height), span(segment, self.layout.width)
        pixels = image[(*plane, rows, columns, *self.layout.colour)]
        return self.pad_block(pixels, plane, band, segment)

    def pad_block(
        self, pixels: Any, plane: tuple[int, ...], band: Band, segment: Band
    ) -> np.ndarray:
        """A segment's source pixels as numpy, reflect-padded where tiles reach past the image.

        Float pixels are checked for NaN and infinite values here, block by block, so the
        check never needs a mask of the whole image.
        """
        pixels = np.asarray(pixels.compute() if isinstance(pixels, da.Array) else pixels)
        if self.layout.dtype.kind == "f":
            check_finite(pixels, (*plane, band.start, segment.start))
        height, width = self.layout.height, self.layout.width
        if band.stop > height:
            pixels = pixels[reflect_indices(band.start, band.stop, height) - band.start]
        if segment.stop > width:
            pixels = pixels[:, reflect_indices(segment.start, segment.stop, width) - segment.start]
        return pixels

    def band_segments(
        self,
        read: Callable[[Band], np.ndarray],
        plane: tuple[int, ...],
        index: int,
        emit: Callable[[slice, torch.Tensor, np.ndarray, torch.Tensor], None],
    ) -> Generator[Progress, None, None]:
        """Denoise one band, segment by segment, yielding a :class:`Progress` after each batch.

        ``read(segment)`` gives a segment's padded pixels (:meth:`pad_block`), so only one
        segment of the band is in memory as pixels and as weighted sums at a time. For each
        segment's finished columns ``emit(columns, top, middle, bottom)`` receives the partial
        sums of the top seam, the finished middle rows (output dtype) and the partial sums of
        the bottom seam (seams as float32 CPU tensors, C x rows x columns).
        """
        band = self.plan.bands[index]
        key = (plane, index)
        self.restart_band(key)
        denoiser = self.denoiser()
        segments = self.plan.segments
        top_rows = band.seam_start - band.start
        middle_stop = min(band.seam_end, self.layout.height) - band.start
        carry = None  # partial sums of the columns shared with the previous segment
        for s, segment in enumerate(segments):
            numerator = yield from denoiser.accumulate(read(segment), band, segment, key)
            if carry is not None:
                numerator[:, :, : carry.shape[2]] += carry
            last = s == len(segments) - 1
            columns = slice(segment.start, segment.out_stop if last else segment.seam_end)
            done = columns.stop - columns.start
            # Copies: views would keep the segment's sums alive (.cpu() copies nothing on a CPU).
            emit(
                columns,
                numerator[:, :top_rows, :done].cpu().clone(),
                self.finish(
                    numerator[:, top_rows:middle_stop, :done], band.seam_start, columns.start
                ),
                numerator[:, band.seam_end - band.start :, :done].cpu().clone(),
            )
            if not last:
                carry = numerator[:, :, segment.seam_end - segment.start :].clone()

    def seam_rows(
        self, index: int, previous: torch.Tensor | None, top: torch.Tensor, columns: slice
    ) -> np.ndarray | None:
        """Band ``index``'s top seam in ``columns``, completed by the band above (None if none)."""
        if previous is None or top.shape[1] == 0:
            return None
        return self.finish(
            previous[:, :, columns] + top, self.plan.bands[index].start, columns.start
        )

    def seam_strip(self) -> torch.Tensor:
        """A full-width buffer for the bottom seam partial sums of any band of the plan."""
        rows = max(band.stop - band.seam_end for band in self.plan.bands)
        channels = 3 if self.layout.channels else 1
        return torch.zeros(channels, rows, self.layout.width)

    def finish(self, numerator: torch.Tensor, row0: int, col0: int) -> np.ndarray:
        """Divide by the summed weights, clip and convert to the input dtype (rows, cols[, C])."""
        rows, cols = numerator.shape[1:]
        norm_y = self.norm_y[row0 : row0 + rows].to(numerator.device)
        norm_x = self.norm_x[col0 : col0 + cols].to(numerator.device)
        values = (numerator / (norm_y[:, None] * norm_x[None, :])).clamp_(0.0, 1.0)
        dtype = self.layout.dtype
        if dtype.kind == "u":
            values = values.mul_(DTYPE_SCALE[dtype]).round_()
            values = values.to(torch.uint8 if dtype == np.uint8 else torch.int32)
        elif dtype == np.float64:
            values = values.double()
        out = values[0] if self.layout.channels == 0 else values.permute(1, 2, 0)
        return out.cpu().numpy().astype(dtype, copy=False)


class BandDenoiser:
    """Turns a band segment's pixels into weighted sums of model outputs, batch by batch."""

    def __init__(self, run: DenoiseRun, prepared: PreparedModel) -> None:
        self.run, self.prepared = run, prepared
        device = prepared.device
        plan = run.plan
        self.tile = (plan.grid_y.tile, plan.grid_x.tile)
        self.batch = run.settings.batch_size or prepared.auto_batch(self.tile)
        self.win_y = [
            torch.from_numpy(plan.grid_y.window(i)).to(device)
            for i in range(len(plan.grid_y.starts))
        ]
        self.win_x = [
            torch.from_numpy(plan.grid_x.window(j)).to(device)
            for j in range(len(plan.grid_x.starts))
        ]
        self.scale = DTYPE_SCALE[run.layout.dtype]

    def to_device(self, pixels: np.ndarray) -> torch.Tensor:
        """Pixels -> C x H x W float32 in [0, 1] on the device (uint8 travels as uint8)."""
        if pixels.dtype != np.uint8:
            pixels = pixels.astype(np.float32)  # a fresh array: the caller's is never touched
        elif not pixels.flags.writeable:
            pixels = pixels.copy()
        tensor = torch.from_numpy(np.ascontiguousarray(pixels))
        tensor = tensor.to(self.prepared.device).to(torch.float32)
        if self.scale != 1.0:
            tensor = tensor.div_(self.scale)
        else:
            tensor = tensor.clamp_(0.0, 1.0)
        return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)

    def accumulate(
        self, pixels: np.ndarray, band: Band, segment: Band, key: Any
    ) -> Generator[Progress, None, torch.Tensor]:
        """Weighted overlap-add of the tiles of one band segment, one batch at a time.

        Skipped tiles (the plan's skip mask) add their input instead of the model's output.
        """
        run, plan = self.run, self.run.plan
        run.check_cancel()  # also between segments whose tiles are all skipped
        image = self.to_device(pixels)
        numerator = torch.zeros_like(image)
        tiles = [
            (i, j)
            for i in range(band.first_tile, band.stop_tile)
            for j in range(segment.first_tile, segment.stop_tile)
        ]
        skipped = [t for t in tiles if plan.skipped(*t)]
        origin = (band.start, segment.start)
        for i, j in skipped:
            self.add(numerator, self._tile(image, origin, i, j), origin, i, j)
        if skipped:
            yield run.advance(key, len(skipped))
        todo = [t for t in tiles if not plan.skipped(*t)]

        def add(i: int, j: int, values: torch.Tensor) -> None:
            self.add(numerator, values, origin, i, j)

        yield from self.forward_tiles(image, origin, todo, add, lambda n: run.advance(key, n))
        return numerator

    def forward_tiles(
        self,
        image: torch.Tensor,
        origin: tuple[int, int],
        tiles: list[tuple[int, int]],
        on_output: Callable[[int, int, torch.Tensor], None],
        advance: Callable[[int], Progress],
    ) -> Generator[Progress, None, None]:
        """Run the model on tiles ``(i, j)`` of ``image``, one batch at a time.

        ``image`` is C x H x W on the device with its pixel (0, 0) at ``origin`` (row,
        column) of the padded plane. ``on_output(i, j, values)`` receives each tile's output
        (C x tile x tile, grey averaged back to one channel); after each batch the
        :class:`Progress` made by ``advance(tiles_in_batch)`` is yielded.
        """
        gray = image.shape[0] == 1
        check = self.run.check_cancel
        position = 0
        while position < len(tiles):
            check()
            chunk = tiles[position : position + self.batch]
            batch = torch.stack([self._tile(image, origin, i, j) for i, j in chunk])
            if gray:
                batch = batch.expand(-1, 3, -1, -1)
            try:
                output = self.prepared.forward(batch, check)
            except _OOM_ERRORS:
                self._halve()
                continue
            del batch
            for k, (i, j) in enumerate(chunk):
                on_output(i, j, output[k].mean(0, keepdim=True) if gray else output[k])
            position += len(chunk)
            yield advance(len(chunk))

    def add(
        self,
        numerator: torch.Tensor,
        values: torch.Tensor,
        origin: tuple[int, int],
        i: int,
        j: int,
    ) -> None:
        """Add tile ``(i, j)``'s ``values``, weighted by its window, into ``numerator``."""
        weight = self.win_y[i][:, None] * self.win_x[j][None, :]
        self._tile(numerator, origin, i, j).addcmul_(values, weight)

    def _tile(self, tensor: torch.Tensor, origin: tuple[int, int], i: int, j: int) -> torch.Tensor:
        y = self.run.plan.grid_y.starts[i] - origin[0]
        x = self.run.plan.grid_x.starts[j] - origin[1]
        return tensor[:, y : y + self.tile[0], x : x + self.tile[1]]

    def _halve(self) -> None:
        if self.prepared.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch == 1:
            raise MemoryError(
                f"out of device memory with a single {self.tile[0]} x {self.tile[1]} tile; "
                "use a smaller tile_size, a lower precision or another device"
            )
        self.batch //= 2


def span(run: Band, size: int) -> slice:
    """The source pixels a band or segment reads along an axis of ``size`` (before padding)."""
    return slice(min(run.start, size - 1), min(run.stop, size))


def check_finite(pixels: np.ndarray, origin: tuple[int, ...] = ()) -> None:
    """Refuse NaN and infinite values, saying how many there are and where the first is.

    Parameters
    ----------
    pixels : numpy.ndarray
        The whole image, or rows of one plane.
    origin : tuple of int
        Index of ``pixels``' first pixel in the image (plane indices, row, column); empty
        for the whole image.

    Raises
    ------
    ValueError
        If ``pixels`` holds any NaN or infinite value.
    """
    bad = ~np.isfinite(pixels)
    if not bad.any():
        return
    first = [int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape)]
    if origin:
        *plane, row, column = origin
        first = [*plane, row + first[0], column + first[1], *first[2:]]
        where = f"rows {row}-{row + len(pixels) - 1} hold"
    else:
        where = "the image holds"
    raise ValueError(
        f"{where} {int(bad.sum())} NaN or infinite values (the first at index {tuple(first)}); "
        "replace them first, e.g. numpy.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)"
    )
