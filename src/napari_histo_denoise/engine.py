"""The tiled denoising engine: lazy in and out, batched, seam-free, bounded in memory.

Data flow of one plane: normalise by dtype (the same rule for the whole image) -> read a
band of tile rows -> batches of tiles on the device (bf16 autocast + channels_last on
CUDA) -> weighted overlap-add into the band's accumulator -> divide by the summed weights
-> back to the input dtype. Neighbouring bands share a seam of ``overlap`` rows whose
partial sums are added when the later band is joined, so no tile is computed twice.

The lazy result (:func:`denoise`) is a dask graph with two tasks per band (compute, join),
never one task per tile; :func:`iter_denoise` runs the same band code in order, yielding
:class:`Progress` between batches. Models are built or loaded once per process and device
(:func:`clear_model_cache` frees them), so dask workers never receive a model per task.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import shutil
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
from torch import nn

from .devices import PRECISION_DTYPES, free_memory, resolve_device, resolve_precision
from .events import drain
from .settings import DenoiseSettings
from .tiling import Band, axis_grid, plan_bands, reflect_indices

#: Input dtypes and the value that maps to 1.0 (floats are taken as [0, 1] and clipped).
DTYPE_SCALE = {
    np.dtype(np.uint8): 255.0,
    np.dtype(np.uint16): 65535.0,
    np.dtype(np.float32): 1.0,
    np.dtype(np.float64): 1.0,
}
#: Pixels per batch on devices without a memory query (CPU, MPS): four 256^2 tiles.
HOST_BATCH_PIXELS = 4 * 256 * 256
#: Tiles a band should hold at least (bands are also capped by BAND_BYTES).
BAND_TILES = 64
#: Upper bound of one band's float32 accumulator, in bytes.
BAND_BYTES = 256 * 2**20
#: Share of the free device memory an automatic batch may use.
MEMORY_SHARE = 0.6
_MAX_AUTO_BATCH = 256
_OOM_ERRORS = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


class Cancelled(Exception):
    """Raised when a denoise run is cancelled (between batches or inside a forward pass)."""


@dataclass(frozen=True)
class Progress:
    """One progress event: tiles done so far, tiles in the run, seconds since the start."""

    done: int
    total: int
    elapsed_s: float


# --------------------------------------------------------------------------- models


_MODULE_TOKENS: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
_MODEL_CACHE: OrderedDict[tuple[str, str, str], _Prepared] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


@dataclass(frozen=True, eq=False)
class _ModelSource:
    """What to run, in a form that is cheap to ship to a worker (a path, a name and a sha)."""

    kind: str  # "module", "path" or "state_dict"
    payload: Any
    architecture: str | None
    token: str

    @classmethod
    def from_settings(cls, settings: DenoiseSettings) -> _ModelSource:
        model, weights = settings.model, settings.weights
        if isinstance(model, nn.Module):
            return cls("module", model, None, _module_token(model))
        if isinstance(weights, Mapping):
            return cls("state_dict", dict(weights), model, f"state-{uuid.uuid4().hex}")
        if isinstance(weights, (str, os.PathLike)):
            from .checkpoint import file_sha256

            path = Path(weights).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"weights file not found: {weights}")
            return cls("path", str(path), model, f"file-{model}-{file_sha256(path)}")
        raise ValueError(
            f"weights must be a file path or a state dict, got {type(weights).__name__}"
        )

    def build(self, device: torch.device) -> nn.Module:
        """Return the model in eval mode on ``device``, never modifying a caller's module."""
        channels_last = device.type == "cuda"
        if self.kind == "path":
            from .checkpoint import load_model

            model, _ = load_model(self.payload, device, architecture=self.architecture)
        elif self.kind == "state_dict":
            from .checkpoint import model_from_state_dict

            model = model_from_state_dict(self.payload, self.architecture).to(device)
        else:
            model = self.payload
            params = list(model.parameters())
            ready = not model.training and all(p.device == device for p in params)
            if channels_last:
                ready = ready and all(
                    p.is_contiguous(memory_format=torch.channels_last)
                    for p in params
                    if p.ndim == 4
                )
            if ready:
                return model  # used as it is (e.g. already compiled for this device)
            model = copy.deepcopy(model).to(device)
        model.eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


def _module_token(model: nn.Module) -> str:
    """Cache key of a module: its identity plus its tensors' in-place versions.

    Training or loading weights into the module after a run changes the versions, so
    the next run copies the module afresh instead of reusing a stale copy.
    """
    identity = _MODULE_TOKENS.setdefault(model, f"module-{uuid.uuid4().hex}")
    try:
        version = sum(t._version for t in itertools.chain(model.parameters(), model.buffers()))
    except RuntimeError:  # inference tensors keep no version: never reuse across runs
        version = uuid.uuid4().hex
    return f"{identity}-{version}"


class _Prepared:
    """A model ready on one device, with its precision and a lock serialising forwards."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self.channels_last = device.type == "cuda"
        # A GPU batch takes well under a second, and new hooks would make a torch.compile'd
        # model retrace: cancel hooks only where one forward pass can take seconds.
        self.cancel_hooks = device.type != "cuda" and not hasattr(model, "_orig_mod")
        self.lock = threading.Lock()

    def forward(
        self, batch: torch.Tensor, check_cancel: Callable[[], None] | None = None
    ) -> torch.Tensor:
        """Run one batch (N x 3 x H x W float32 on the device) and return float32.

        ``check_cancel`` (raising :class:`Cancelled`) is also called before every
        submodule's forward, so a cancel stops a long pass part-way through.
        """
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(self.device.type, dtype=PRECISION_DTYPES[self.precision])
            if self.precision != "fp32"
            else contextlib.nullcontext()
        )
        hooks = check_cancel if self.cancel_hooks else None
        with self.lock, _pre_hooks(self.model, hooks), torch.inference_mode(), autocast:
            return self.model(batch).float()

    def auto_batch(self, tile_shape: tuple[int, int]) -> int:
        """Pick a batch from the free device memory (measured with one tile) or a pixel budget."""
        pixels = tile_shape[0] * tile_shape[1]
        if self.device.type != "cuda":
            return max(1, HOST_BATCH_PIXELS // pixels)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        self.forward(torch.zeros(1, 3, *tile_shape, device=self.device))
        per_tile = max(1, torch.cuda.max_memory_allocated(self.device) - base)
        free = free_memory(self.device) or 0
        return int(min(_MAX_AUTO_BATCH, max(1, MEMORY_SHARE * free // per_tile)))


@contextlib.contextmanager
def _pre_hooks(model: nn.Module, hook: Callable[[], None] | None) -> Generator[None, None, None]:
    """Call ``hook()`` before each submodule's forward while the block runs, then unhook.

    Hooks live only for one forward pass (under the model's lock), so runs sharing a
    cached model never see each other's. A module without submodules (or one whose
    forward does not call them as modules, e.g. TorchScript) gets no calls.
    """
    handles = []
    if hook is not None:
        submodules = list(model.modules())[1:]
        handles = [m.register_forward_pre_hook(lambda _m, _args: hook()) for m in submodules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _prepared_model(source: _ModelSource, device_name: str, precision: str) -> _Prepared:
    device = resolve_device(device_name)
    precision = resolve_precision(precision, device)
    key = (source.token, str(device), precision)
    with _CACHE_LOCK:
        prepared = _MODEL_CACHE.get(key)
        if prepared is None:
            model = source.build(device)
            prepared = _MODEL_CACHE[key] = _Prepared(model, device, precision)
            while len(_MODEL_CACHE) > _CACHE_SIZE:
                _MODEL_CACHE.popitem(last=False)
        _MODEL_CACHE.move_to_end(key)
    return prepared


def clear_model_cache() -> None:
    """Drop the models kept for reuse (and free their device memory)."""
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class _Layout:
    """How an input array maps to planes: leading axes, colour channels, dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype
    channels: int  # 0: grayscale planes (Y, X); 3: RGB; 4: RGBA (alpha passed through)

    @classmethod
    def of(cls, image: Any) -> _Layout:
        shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", None)
        if shape is None or dtype is None or not hasattr(image, "__getitem__"):
            raise ValueError(
                f"image must be a numpy, dask or zarr array, got {type(image).__name__}"
            )
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        if dtype not in DTYPE_SCALE:
            raise ValueError(
                f"unsupported image dtype {dtype}; supported: uint8, uint16, float32, float64"
            )
        if len(shape) < 2:
            raise ValueError(f"image must have at least 2 axes (Y, X), got shape {shape}")
        channels = shape[-1] if len(shape) >= 3 and shape[-1] in (3, 4) else 0
        plane = shape[-3:-1] if channels else shape[-2:]
        if min(plane) < 1 or math.prod(shape) == 0:
            raise ValueError(f"image is empty: shape {shape}")
        return cls(shape, dtype, channels)

    @property
    def leading(self) -> tuple[int, ...]:
        return self.shape[:-3] if self.channels else self.shape[:-2]

    @property
    def height(self) -> int:
        return self.shape[len(self.leading)]

    @property
    def width(self) -> int:
        return self.shape[len(self.leading) + 1]

    @property
    def colour(self) -> tuple[slice, ...]:
        """Index of the denoised channels within rows of a plane (RGB of RGBA, else all)."""
        return (slice(None), slice(0, 3)) if self.channels == 4 else ()


class _Run:
    """Geometry, settings and progress of one denoise call; shipped once to each worker."""

    def __init__(
        self,
        image: Any,
        settings: DenoiseSettings,
        progress: Callable[[int, int], object] | None,
        cancel: threading.Event | Callable[[], bool] | None,
    ) -> None:
        if cancel is not None and not (isinstance(cancel, threading.Event) or callable(cancel)):
            raise ValueError("cancel must be a threading.Event or a callable returning a bool")
        if progress is not None and not callable(progress):
            raise ValueError("progress must be a callable taking (done, total)")
        self.layout = _Layout.of(image)
        self.settings = settings
        self.source = _ModelSource.from_settings(settings)
        # Build or load the model now (into the process cache the lazy result then reuses),
        # so an unusable device or weights file fails at call time, not at compute time.
        _prepared_model(self.source, settings.device, settings.precision)
        self.grid_y = axis_grid(self.layout.height, settings.tile_size, settings.overlap)
        self.grid_x = axis_grid(self.layout.width, settings.tile_size, settings.overlap)
        nx = len(self.grid_x.starts)
        row_bytes = (settings.tile_size - settings.overlap) * self.grid_x.padded * 3 * 4
        rows = min(
            math.ceil(max(BAND_TILES, settings.batch_size or 0) / nx),
            max(1, BAND_BYTES // row_bytes),
        )
        self.bands = plan_bands(self.grid_y, rows)
        self.norm_y = torch.from_numpy(self.grid_y.normaliser())
        self.norm_x = torch.from_numpy(self.grid_x.normaliser()[: self.layout.width])
        self.total = math.prod(self.layout.leading) * len(self.grid_y.starts) * nx
        self.progress, self.cancel = progress, cancel
        self._done, self._lock, self._t0 = 0, threading.Lock(), time.perf_counter()
        self._runner: _Runner | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Callbacks, locks and device state stay in the process that made them.
        state = self.__dict__.copy()
        state.update(progress=None, cancel=None, _lock=None, _runner=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def check_cancel(self) -> None:
        cancel = self.cancel
        if cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set") else cancel()):
            raise Cancelled("denoising was cancelled")

    def advance(self, tiles: int) -> Progress:
        with self._lock:
            self._done += tiles
            event = Progress(self._done, self.total, time.perf_counter() - self._t0)
        if self.progress is not None:
            self.progress(event.done, event.total)
        return event

    def runner(self) -> _Runner:
        with self._lock:
            if self._runner is None:
                prepared = _prepared_model(
                    self.source, self.settings.device, self.settings.precision
                )
                self._runner = _Runner(self, prepared)
            return self._runner

    # -- band work ----------------------------------------------------------------

    def band_rows(self, plane: tuple[int, ...], band: Band) -> tuple[Any, ...]:
        """Index of the source rows a band reads (its denoised channels only)."""
        size = self.layout.height
        return (
            *plane,
            slice(min(band.start, size - 1), min(band.stop, size)),
            *self.layout.colour,
        )

    def pad_band(self, rows: Any, band: Band) -> np.ndarray:
        """The band's pixels as numpy, reflect-padded where a tile reaches past a short image."""
        rows = np.asarray(rows.compute() if isinstance(rows, da.Array) else rows)
        size, width = self.layout.height, self.layout.width
        if band.stop > size:
            rows = rows[reflect_indices(band.start, band.stop, size) - band.start]
        if self.grid_x.padded > width:
            rows = rows[:, reflect_indices(0, self.grid_x.padded, width)]
        return rows

    def band_parts(
        self, pixels: np.ndarray, index: int
    ) -> Generator[Progress, None, tuple[torch.Tensor, np.ndarray, torch.Tensor]]:
        """Denoise one band's pixels, yielding a :class:`Progress` after each batch.

        Returns the partial sums of the top seam, the finished middle rows, and the partial
        sums of the bottom seam (seams as float32 CPU tensors).
        """
        band = self.bands[index]
        numerator = yield from self.runner().accumulate(pixels, band)
        top = numerator[:, : band.seam_top - band.start].cpu()
        middle_stop = min(band.seam_bottom, self.layout.height)
        middle = self.finish(
            numerator[:, band.seam_top - band.start : middle_stop - band.start],
            band.seam_top,
        )
        bottom = numerator[:, band.seam_bottom - band.start :].cpu()
        return top, middle, bottom

    def join(self, previous_bottom: torch.Tensor | None, top: torch.Tensor, middle, index):
        """Output rows of band ``index``: its top seam completed by the band above, then middle."""
        if previous_bottom is None or top.shape[1] == 0:
            return middle
        seam = self.finish(previous_bottom + top, self.bands[index].start)
        return np.concatenate([seam, middle], axis=0)

    def finish(self, numerator: torch.Tensor, row0: int) -> np.ndarray:
        """Divide by the summed weights, clip and convert rows back to the input dtype."""
        norm_y = self.norm_y[row0 : row0 + numerator.shape[1]].to(numerator.device)
        norm_x = self.norm_x.to(numerator.device)
        values = numerator[:, :, : self.layout.width] / (norm_y[:, None] * norm_x[None, :])
        values = values.clamp_(0.0, 1.0)
        dtype = self.layout.dtype
        if dtype.kind == "u":
            values = values.mul_(DTYPE_SCALE[dtype]).round_()
            values = values.to(torch.uint8 if dtype == np.uint8 else torch.int32)
        elif dtype == np.float64:
            values = values.double()
        out = values[0] if self.layout.channels == 0 else values.permute(1, 2, 0)
        return out.cpu().numpy().astype(dtype, copy=False)


class _Runner:
    """Turns bands of pixels into weighted sums of model outputs, batch by batch."""

    def __init__(self, run: _Run, prepared: _Prepared) -> None:
        self.run, self.prepared = run, prepared
        device = prepared.device
        self.tile = (run.grid_y.tile, run.grid_x.tile)
        self.batch = run.settings.batch_size or prepared.auto_batch(self.tile)
        self.win_y = [
            torch.from_numpy(run.grid_y.window(i)).to(device)
            for i in range(len(run.grid_y.starts))
        ]
        self.win_x = [
            torch.from_numpy(run.grid_x.window(j)).to(device)
            for j in range(len(run.grid_x.starts))
        ]
        self.scale = DTYPE_SCALE[run.layout.dtype]

    def to_device(self, pixels: np.ndarray) -> torch.Tensor:
        """Band pixels -> C x H x W float32 in [0, 1] on the device (uint8 travels as uint8)."""
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
        self, pixels: np.ndarray, band: Band
    ) -> Generator[Progress, None, torch.Tensor]:
        """Weighted overlap-add of the band's tiles, one batch at a time."""
        run = self.run
        image = self.to_device(pixels)
        numerator = torch.zeros_like(image)
        gray = image.shape[0] == 1
        tiles = [
            (i, j)
            for i in range(band.first_tile, band.stop_tile)
            for j in range(len(run.grid_x.starts))
        ]
        check = run.check_cancel if run.cancel is not None else None
        position = 0
        while position < len(tiles):
            run.check_cancel()
            chunk = tiles[position : position + self.batch]
            views = [self._view(image, band, i, j) for i, j in chunk]
            batch = torch.stack(views)
            if gray:
                batch = batch.expand(-1, 3, -1, -1)
            try:
                output = self.prepared.forward(batch, check)
            except _OOM_ERRORS:
                self._halve()
                continue
            del batch
            for k, (i, j) in enumerate(chunk):
                out = output[k].mean(0, keepdim=True) if gray else output[k]
                weight = self.win_y[i][:, None] * self.win_x[j][None, :]
                self._view(numerator, band, i, j).addcmul_(out, weight)
            position += len(chunk)
            yield run.advance(len(chunk))
        return numerator

    def _view(self, tensor: torch.Tensor, band: Band, i: int, j: int) -> torch.Tensor:
        y = self.run.grid_y.starts[i] - band.start
        x = self.run.grid_x.starts[j]
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


# --------------------------------------------------------------------------- public API


def _make_run(
    image: Any, model: Any, weights: Any, *, progress: Any = None, cancel: Any = None, **options
) -> _Run:
    if isinstance(options.get("device"), torch.device):
        options["device"] = str(options["device"])
    settings = DenoiseSettings(model=model, weights=weights, **options)
    return _Run(image, settings, progress, cancel)


def _finish_band(run: _Run, rows: np.ndarray, index: int) -> tuple:
    return drain(run.band_parts(run.pad_band(rows, run.bands[index]), index))


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
        [0, 1] and clipped). Grayscale planes go through the RGB model as three equal
        channels and the output channels are averaged back to one.
    model : {"basic", "deep"} or torch.nn.Module
        Architecture name (``weights`` required) or any module mapping N x 3 x H x W
        floats in [0, 1] to the same shape.
    weights : path, state dict or None
        Weights for a named model (safetensors or PyTorch state-dict file, or a state dict).
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
        ``"auto"``: bf16 autocast with channels_last on CUDA, fp32 elsewhere.
    progress : callable, optional
        Called as ``progress(done_tiles, total_tiles)`` after each batch (in the process
        that runs the batch).
    cancel : threading.Event or callable, optional
        Checked before each batch and, on CPU and MPS, before each submodule's forward
        inside a batch; when set (or returning True) the computation raises
        :class:`Cancelled`.

    Returns
    -------
    dask.array.Array
        The denoised image, same shape and dtype as ``image``, one chunk per band of
        tile rows.

    Raises
    ------
    ValueError
        For an unsupported image, model, weights, tiling, device or precision, when
        called (a named model is loaded now, so bad weights raise
        :class:`~napari_histo_denoise.checkpoint.WeightsError` here, not at compute time).
    """
    run = _make_run(
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
    )
    layout = run.layout
    source = image if isinstance(image, da.Array) else da.from_array(image)
    name = f"histo-denoise-{uuid.uuid4().hex[:12]}"
    shared = dask.delayed(run, name=f"{name}-run", traverse=False)
    compute = dask.delayed(_finish_band, nout=3, pure=True)
    join = dask.delayed(_Run.join, pure=True)
    planes = []
    for plane in np.ndindex(*layout.leading):
        chunks, previous = [], None
        for b, band in enumerate(run.bands):
            rows = source[run.band_rows(plane, band)]
            top, middle, bottom = compute(
                shared, rows, b, dask_key_name=f"{name}-band-{plane}-{b}"
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


def iter_denoise(
    image: Any,
    model: str | nn.Module = "basic",
    weights: Any = None,
    *,
    out: Any = None,
    **options,
) -> Generator[Progress, None, Any]:
    """Denoise now, band by band, yielding a :class:`Progress` after each batch.

    Takes the same arguments as :func:`denoise`, plus ``out``: a numpy or zarr array of
    the image's shape and dtype to write into (memory then stays bounded by one band).
    The generator's return value (``StopIteration.value``, or the value of
    ``yield from``) is ``out``, or a new numpy array when ``out`` is None. Settings are
    validated when this function is called, before the generator is first advanced.
    """
    run = _make_run(image, model, weights, **options)
    layout = run.layout
    if out is None:
        out = np.empty(layout.shape, dtype=layout.dtype)
    elif tuple(out.shape) != layout.shape or np.dtype(out.dtype) != layout.dtype:
        raise ValueError(
            f"out must have the image's shape {layout.shape} and dtype {layout.dtype}, "
            f"got {tuple(out.shape)} {np.dtype(out.dtype)}"
        )
    return _iter_bands(run, image, out)


def _iter_bands(run: _Run, image: Any, out: Any) -> Generator[Progress, None, Any]:
    layout = run.layout
    for plane in np.ndindex(*layout.leading):
        previous = None
        for b, band in enumerate(run.bands):
            pixels = run.pad_band(image[run.band_rows(plane, band)], band)
            top, middle, bottom = yield from run.band_parts(pixels, b)
            rows = (*plane, slice(band.start, band.out_stop))
            out[(*rows, *layout.colour)] = run.join(previous, top, middle, b)
            if layout.channels == 4:
                alpha = image[(*rows, slice(None), slice(3, 4))]
                out[(*rows, slice(None), slice(3, 4))] = np.asarray(
                    alpha.compute() if isinstance(alpha, da.Array) else alpha
                )
            previous = bottom
    return out


def denoise_to_zarr(
    image: Any,
    store: str | os.PathLike,
    model: str | nn.Module = "basic",
    weights: Any = None,
    *,
    overwrite: bool = False,
    **options,
):
    """Denoise ``image`` into a zarr array on disk, one band at a time.

    The array is written under a temporary name beside ``store`` and renamed when
    complete, so a cancelled or failed run leaves nothing behind. Takes the same
    keyword arguments as :func:`denoise`.

    Returns
    -------
    zarr.Array
        The finished array, opened read-only.

    Raises
    ------
    FileExistsError
        If ``store`` exists and ``overwrite`` is False.
    """
    import zarr

    target = Path(store).expanduser()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    run = _make_run(image, model, weights, **options)
    layout = run.layout
    band_rows = run.bands[0].out_stop
    chunks = (
        *([1] * len(layout.leading)),
        min(layout.height, band_rows),
        min(layout.width, 4096),
        *layout.shape[len(layout.leading) + 2 :],
    )
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        array = zarr.create_array(
            store=str(partial), shape=layout.shape, dtype=layout.dtype, chunks=chunks
        )
        drain(_iter_bands(run, image, array))
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return zarr.open_array(str(target), mode="r")
