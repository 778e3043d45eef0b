"""Models ready to run: built or loaded once per process and device, and reused.

A run names what to run with a :class:`ModelSource` (a path, a name and a digest: cheap to
ship to a dask worker); :func:`prepared_model` turns it into a :class:`PreparedModel` on a
device, from a small per-process cache, so a run, its bands and its workers build a model
once. :func:`clear_model_cache` frees them.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import (
    PRECISION_DTYPES,
    free_memory,
    resolve_backend,
    resolve_device,
    resolve_precision,
    uses_channels_last,
)
from ..models import is_package_model
from ..settings import DenoiseSettings

#: Share of the free device memory an automatic batch may use.
MEMORY_SHARE = 0.6
#: Pixels per batch on devices without a memory query (CPU, MPS): four 256^2 tiles.
HOST_BATCH_PIXELS = 4 * 256 * 256
_MAX_AUTO_BATCH = 256
_CACHE_SIZE = 2

_MODULE_TOKENS: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
_MODEL_CACHE: OrderedDict[tuple[str, str, str, str], PreparedModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class ModelSource:
    """What to run, in a form that is cheap to ship to a worker (a path, a name and a digest)."""

    kind: str  # "module", "path" or "state_dict"
    payload: Any
    architecture: str | None
    token: str

    @classmethod
    def from_settings(cls, settings: DenoiseSettings) -> ModelSource:
        model, weights = settings.model, settings.weights
        if isinstance(model, nn.Module):
            return cls("module", model, None, _module_token(model))
        if isinstance(weights, Mapping):
            return cls("state_dict", dict(weights), model, f"state-{uuid.uuid4().hex}")
        if isinstance(weights, (str, os.PathLike)):
            from ..checkpoint import file_sha256

            path = Path(weights).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"weights file not found: {weights}")
            return cls("path", str(path), model, f"file-{model}-{file_sha256(path)}")
        raise ValueError(
            f"weights must be a file path or a state dict, got {type(weights).__name__}"
        )

    def build(self, device: torch.device, channels_last: bool) -> nn.Module:
        """Return the model in eval mode on ``device``, never modifying a caller's module."""
        if self.kind == "path":
            from ..checkpoint import load_model

            model, _ = load_model(self.payload, device, architecture=self.architecture)
        elif self.kind == "state_dict":
            from ..checkpoint import model_from_state_dict

            model = model_from_state_dict(self.payload, self.architecture).to(device)
        else:
            model = self.payload
            params = list(model.parameters())
            in_eval = not any(m.training for m in model.modules())
            ready = in_eval and all(p.device == device for p in params)
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


class PreparedModel:
    """A model ready on one device, with its precision, backend and a lock serialising forwards.

    With the ``"openvino"`` backend (CPU only) OpenVINO runs a conversion of the model.
    """

    def __init__(
        self, model: nn.Module, device: torch.device, precision: str, backend: str = "torch"
    ) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self.backend = backend
        self.openvino = None
        if backend == "openvino":
            from .openvino_model import OpenVinoModel

            self.openvino = OpenVinoModel(model, precision)
        self.channels_last = uses_channels_last(device, precision, backend)
        # A GPU batch takes well under a second, and new hooks would make a torch.compile'd
        # model retrace: cancel hooks only where one forward pass can take seconds.
        self.cancel_hooks = device.type != "cuda" and not hasattr(model, "_orig_mod")
        self.lock = threading.Lock()

    def forward(
        self, batch: torch.Tensor, check_cancel: Callable[[], None] | None = None
    ) -> torch.Tensor:
        """Run one batch (N x 3 x H x W float32 on the device) and return float32.

        ``check_cancel`` (raising :class:`~napari_histo_denoise.events.Cancelled`) is also
        called before every submodule's forward, so a cancel stops a long pass part-way.

        Raises
        ------
        ValueError
            If the model returns another shape than its input's (a denoiser must not).
        """
        if self.openvino is not None:
            out = torch.from_numpy(self.openvino(batch.numpy(), check_cancel))
            return self._checked(out, batch)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(self.device.type, dtype=PRECISION_DTYPES[self.precision])
            if self.precision != "fp32"
            else contextlib.nullcontext()
        )
        hooks = check_cancel if self.cancel_hooks else None
        with self.lock, _pre_hooks(self.model, hooks), torch.inference_mode(), autocast:
            out = self.model(batch)
        return self._checked(out, batch)

    @staticmethod
    def _checked(out: Any, batch: torch.Tensor) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.shape != batch.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"the model returned {got} for a batch of shape {tuple(batch.shape)}; a "
                "denoiser must return its input's shape (N x 3 x H x W, RGB in [0, 1])"
            )
        return out.float()

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


def prepared_model(
    source: ModelSource, device_name: str, precision: str, backend: str = "auto"
) -> PreparedModel:
    """The model of ``source`` on a device, precision and backend, from this process's cache."""
    device = resolve_device(device_name)
    precision = resolve_precision(precision, device)
    own_model = source.kind != "module" or is_package_model(source.payload)
    backend = resolve_backend(backend, device, own_model=own_model)
    key = (source.token, str(device), precision, backend)
    with _CACHE_LOCK:
        prepared = _MODEL_CACHE.get(key)
        if prepared is None:
            model = source.build(device, uses_channels_last(device, precision, backend))
            prepared = _MODEL_CACHE[key] = PreparedModel(model, device, precision, backend)
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
