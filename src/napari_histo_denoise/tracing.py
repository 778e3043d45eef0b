"""Trace a model's real forward pass on the meta device: layers, stages, skips and memory.

Running on the meta device computes every shape exactly without allocating or
computing anything, so even the deep model at batch 8 traces in well under a
second. Memory figures come from the storages that the forward pass really
allocates (seen through a ``TorchDispatchMode``) and how long each stays alive,
not from a formula.
"""

from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .models import MODELS, build_model

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    """One leaf module of the forward pass, as in the seed's architecture map."""

    name: str
    type: str
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    params: int
    flops: int


@dataclass(frozen=True)
class StageTrace:
    """One top-level block (``encoder1``, ``bottleneck``, ...) and what feeds it.

    ``sources`` names the stages whose outputs were concatenated into this
    stage's input (empty when the input is the previous stage's output alone).
    ``retained_bytes`` is what the stage (and the concatenation feeding it)
    leaves allocated for the backward pass in training mode; ``peak_bytes`` is
    the most memory live while it ran in inference mode (its input, skips held
    for later, and its temporaries).
    """

    name: str
    input_shape: Shape
    output_shape: Shape
    sources: tuple[str, ...]
    layers: tuple[str, ...]
    retained_bytes: int = 0
    peak_bytes: int = 0


@dataclass
class Trace:
    """Everything one traced forward pass tells about a model."""

    layers: list[LayerRow] = field(default_factory=list)
    stages: list[StageTrace] = field(default_factory=list)
    peak_bytes: int = 0
    retained_bytes: int = 0


class _StorageTracker(TorchDispatchMode):
    """Count the bytes of live storages allocated by aten ops, and remember concatenations."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.concat_inputs: dict[int, list[int]] = {}
        self.owner: dict[int, str] = {}  # storage key -> name of the stage that produced it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self._track(tensor.untyped_storage())
        if func is torch.ops.aten.cat.default:
            self.concat_inputs[storage_key(out)] = [storage_key(t) for t in args[0]]
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self.live:  # an in-place op or a view: no new memory
            return
        self.live[key] = storage.nbytes()
        self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        # A freed storage's address (its key) can be reused by a later allocation.
        self.current -= self.live.pop(key)
        self.concat_inputs.pop(key, None)
        self.owner.pop(key, None)


def storage_key(tensor: torch.Tensor) -> int:
    """Identify a tensor's storage (views and in-place results share it)."""
    return tensor.untyped_storage()._cdata


def meta_copy(model_or_name: nn.Module | str) -> nn.Module:
    """Return a copy of the model on the meta device; the original is left untouched."""
    if isinstance(model_or_name, str):
        name = model_or_name
    elif getattr(model_or_name, "architecture", None) in MODELS:
        name = model_or_name.architecture
    else:
        return copy.deepcopy(model_or_name).to("meta")
    with torch.device("meta"):
        return build_model(name)


def _conv_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-adds x 2 of a convolution (bias and normalisation are negligible)."""
    # in_channels / groups * kh * kw (out_channels / groups * kh * kw for ConvT); shape
    # arithmetic only: indexing the weight would dispatch an op that the tracker counts
    kernel = math.prod(module.weight.shape[1:])
    if isinstance(module, nn.ConvTranspose2d):
        return 2 * inp.numel() * kernel
    return 2 * out.numel() * kernel


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not any(m.children())]


def trace(model_or_name: nn.Module | str, input_shape: Shape, *, train: bool) -> Trace:
    """Run one forward pass of ``input_shape`` on the meta device and record it.

    Parameters
    ----------
    model_or_name : torch.nn.Module or str
        The model, or an architecture name. A module is copied, never modified.
    input_shape : tuple of int
        ``(N, 3, H, W)``.
    train : bool
        Training mode (autograd records the tensors it saves for backward; they are
        counted as ``retained_bytes``) or inference mode (``torch.no_grad``).

    Returns
    -------
    Trace
    """
    model = meta_copy(model_or_name).train(train)
    result = Trace()
    tracker = _StorageTracker()
    live_after_previous_stage = 0  # so concatenations count towards the stage they feed
    overall_peak = 0
    handles = []

    def on_leaf(name: str):
        def hook(module, inputs, output):
            is_conv = isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
            result.layers.append(
                LayerRow(
                    name=name,
                    type=type(module).__name__,
                    input_shapes=tuple(tuple(t.shape) for t in inputs),
                    output_shape=tuple(output.shape),
                    params=sum(p.numel() for p in module.parameters(recurse=False)),
                    flops=_conv_flops(module, inputs[0], output) if is_conv else 0,
                )
            )

        return hook

    def on_stage_start(name: str):
        def pre_hook(module, inputs):
            nonlocal overall_peak
            overall_peak = max(overall_peak, tracker.peak)
            tracker.peak = tracker.current  # from here on, the peak is this stage's

        return pre_hook

    def on_stage_end(name: str):
        def hook(module, inputs, output):
            nonlocal overall_peak, live_after_previous_stage
            key = storage_key(inputs[0])
            owner = tracker.owner
            sources = tuple(owner[k] for k in tracker.concat_inputs.get(key, ()) if k in owner)
            owner[storage_key(output)] = name
            result.stages.append(
                StageTrace(
                    name=name,
                    input_shape=tuple(inputs[0].shape),
                    output_shape=tuple(output.shape),
                    sources=sources,
                    layers=tuple(describe(child) for child in module.children())
                    or (describe(module),),
                    retained_bytes=tracker.current - live_after_previous_stage,
                    peak_bytes=tracker.peak,
                )
            )
            overall_peak = max(overall_peak, tracker.peak)
            live_after_previous_stage = tracker.current

        return hook

    for name, module in _leaves(model):
        handles.append(module.register_forward_hook(on_leaf(name)))
    for name, module in model.named_children():
        handles.append(module.register_forward_pre_hook(on_stage_start(name)))
        handles.append(module.register_forward_hook(on_stage_end(name)))

    # The first convolution under a dispatch mode imports torch._dynamo lazily; that import
    # is not thread-safe against an engine run in another thread, so do it here first.
    import torch._dynamo

    x = torch.zeros(input_shape, device="meta")
    grad_mode = torch.enable_grad() if train else torch.no_grad()
    try:
        with grad_mode, tracker:
            out = model(x)
            result.retained_bytes = tracker.current
        result.peak_bytes = max(overall_peak, tracker.peak)
        del out
    finally:
        for handle in handles:
            handle.remove()
    return result


def describe(module: nn.Module) -> str:
    """A short name for a block, as drawn in the data-flow map (``Conv3x3/2``, ``BN``...)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kh, kw = module.kernel_size
        kind = "ConvT" if isinstance(module, nn.ConvTranspose2d) else "Conv"
        stride = f"/{module.stride[0]}" if module.stride[0] > 1 else ""
        return f"{kind}{kh}x{kw}{stride}"
    if isinstance(module, nn.MaxPool2d):
        return f"MaxPool{module.kernel_size}x{module.kernel_size}"
    short = {"BatchNorm2d": "BN", "ResidualBlock": "ResBlock"}
    name = type(module).__name__
    return short.get(name, name)
