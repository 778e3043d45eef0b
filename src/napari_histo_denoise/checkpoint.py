"""Safe weights I/O: save and load the two models without ever running code from a file.

Our format is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
state dict as raw tensors plus one JSON string (architecture, parameter count,
package version, creation time and the caller's training figures) in the header
metadata under the key ``napari_histo_denoise``. Loading it cannot execute code.

Tensors are stored in float32, float16, or as compact int8: every convolution weight
quantised symmetrically per output channel (weight only), beside its float32 scales
under ``<key>:int8_scale``; biases and batch-norm tensors stay float32. Every reader
dequantises at load, so callers always get a float32 state dict.

Plain PyTorch files (``.pt``/``.pth``) holding a state dict with the seed's layer
names, bare or wrapped under ``state_dict``/``model_state_dict``, are also read,
always with ``torch.load(weights_only=True)``: a file whose pickle would create
arbitrary Python objects is refused before any of them is built. So are bioimage.io
model packages of the two models (:mod:`napari_histo_denoise.bmz`): their state dict,
the same way.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from . import __version__
from .devices import resolve_device
from .files import atomic_output, give_default_mode
from .files import file_sha256 as file_sha256  # public here too (docs/checkpoints.md)
from .models import MODELS

#: Header-metadata key under which our JSON metadata is stored.
METADATA_KEY = "napari_histo_denoise"
#: Version of the metadata layout written by :func:`save_weights`.
FORMAT_VERSION = 1
#: Keys under which training scripts commonly nest the state dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict")
#: Key prefixes added by ``nn.DataParallel``/DDP and ``torch.compile``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

#: Storage dtypes of :func:`save_weights`.
STORAGE_DTYPES = ("float32", "float16", "int8")
#: Key suffix of the per-output-channel scales of an int8 tensor.
SCALE_SUFFIX = ":int8_scale"
#: Largest magnitude of a symmetric int8 code.
INT8_MAX = 127
#: Integer tensors a state dict may hold (batch norm's step counter); all others are float.
INTEGER_KEYS = ("num_batches_tracked",)

#: Names of a bioimage.io package's description file.
PACKAGE_YAML_NAMES = ("rdf.yaml", "bioimageio.yaml")

_SHOWN = 5  # how many offending keys an error message names
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


class WeightsError(ValueError):
    """A file or state dict that cannot be loaded as weights of the basic or deep model."""


def save_weights(
    path: str | os.PathLike,
    model: nn.Module,
    metadata: Mapping[str, Any] | None = None,
    *,
    dtype: str = "float32",
) -> Path:
    """Save a model's weights and metadata as a safetensors file, atomically.

    The file is written under a temporary name in the destination folder and then
    renamed over ``path``, so a failure never leaves a half-written file behind.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (``.safetensors`` recommended). Its folder must exist.
    model : torch.nn.Module
        The basic or deep model (a ``DataParallel`` or ``torch.compile`` wrapper is unwrapped).
    metadata : mapping, optional
        JSON-serialisable extras to store, e.g. training noise, mode, steps and
        validation figures. ``architecture``, ``parameters``, ``package_version``,
        ``created_utc``, ``format_version`` and ``storage_dtype`` are always set by this
        function.
    dtype : {"float32", "float16", "int8"}
        How tensors are stored. ``"int8"``: each convolution and transposed-convolution
        weight as symmetric per-output-channel int8 with float32 scales (about a quarter
        of the float32 size; every weight within half a quantisation step), the rest float32.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        If the model is not a known architecture or the metadata is not JSON-serialisable.
    """
    from safetensors.torch import save_file

    if dtype not in STORAGE_DTYPES:
        raise ValueError(
            f"unknown storage dtype {dtype!r}; valid values are "
            f"{', '.join(map(repr, STORAGE_DTYPES))}"
        )
    model = _unwrap(model)
    architecture = getattr(model, "architecture", None)
    if architecture not in MODELS:
        raise ValueError(
            f"save_weights saves the {' or '.join(MODELS)} model; got a {type(model).__name__} "
            "without a known 'architecture'"
        )
    meta = dict(metadata or {})
    meta.update(
        architecture=architecture,
        parameters=sum(p.numel() for p in model.parameters()),
        package_version=__version__,
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        format_version=FORMAT_VERSION,
        storage_dtype=dtype,
    )
    try:
        header = json.dumps(meta, sort_keys=True, allow_nan=True)
    except TypeError as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
    tensors = _stored_tensors(model, dtype)

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(path.parent)!r} does not exist")
    with atomic_output(path) as partial:
        save_file(tensors, partial, metadata={METADATA_KEY: header})
        give_default_mode(partial)
    return path


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    architecture: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load weights from a file and return the model, in eval mode, with its metadata.

    Parameters
    ----------
    path : str or os.PathLike
        A safetensors file written by :func:`save_weights` (or any safetensors file
        with the seed's layer names), a PyTorch ``.pt``/``.pth`` state dict, or a
        bioimage.io model package (``.zip`` or ``rdf.yaml``) of the basic or deep model.
    device : str or torch.device
        Where to put the model: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    architecture : {"basic", "deep"}, optional
        The architecture the caller expects; weights of the other one are refused.
        By default the file's metadata decides, else the state-dict keys.

    Returns
    -------
    model : torch.nn.Module
        The model with the loaded weights, in eval mode, on ``device``.
    metadata : dict
        The stored metadata (``{}`` for a plain state dict), with ``architecture`` set.

    Raises
    ------
    WeightsError
        If the file is unsafe, truncated, not a weights file, or does not fit the model.
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``device`` is unknown or not available here.
    """
    state_dict, metadata = read_weights(path)
    expected = architecture or metadata.get("architecture")
    try:
        model = model_from_state_dict(state_dict, expected)
    except WeightsError as exc:
        raise WeightsError(f"{Path(path).name}: {exc}") from None
    metadata = {**metadata, "architecture": model.architecture}
    return model.to(resolve_device(device)).eval(), metadata


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a state dict and its metadata from a file without executing any code.

    Parameters
    ----------
    path : str or os.PathLike
        A safetensors file, a PyTorch ``.pt``/``.pth`` file or a bioimage.io package (see
        :func:`load_model`).

    Returns
    -------
    state_dict : dict of str to torch.Tensor
        The tensors, on the CPU, with any ``module.``/``_orig_mod.`` prefix removed, int8
        tensors dequantised to float32.
    metadata : dict
        Our JSON metadata (a package's: what its weights file held), the scalar entries
        beside a wrapped state dict, or ``{}``.

    Raises
    ------
    WeightsError
        If the file is unsafe, truncated or not a weights file, or a package this plugin
        cannot run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    with path.open("rb") as fh:
        head = fh.read(16)
    if is_package(path):
        from .bmz import read_package

        state_dict, metadata = read_package(path)
    elif head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        with path.open("rb") as fh:
            state_dict, metadata = read_torch_state(fh, path.name)
    elif _looks_like_safetensors(head):
        state_dict, metadata = _read_safetensors(path)
    else:
        raise WeightsError(
            f"{path.name} is not a weights file ({_describe(head)}): expected a safetensors file "
            "or a PyTorch state dict (.pt/.pth)"
        )
    try:
        state_dict = _float_state_dict(state_dict)
    except WeightsError as exc:
        raise WeightsError(f"{path.name}: {exc}") from None
    return _strip_prefixes(state_dict), metadata


def model_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], architecture: str | None = None
) -> nn.Module:
    """Build the basic or deep model and load a state dict into it, strictly.

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor
        Keys are the seed's layer names (a ``module.`` or ``_orig_mod.`` prefix is removed).
    architecture : {"basic", "deep"}, optional
        The expected architecture; detected from the keys when ``None``.

    Returns
    -------
    torch.nn.Module
        The model in eval mode, on the CPU, in float32.

    Raises
    ------
    WeightsError
        If the keys belong to the other architecture, keys are missing or unexpected,
        or a tensor's shape differs from the model's.
    """
    if architecture is not None and architecture not in MODELS:
        raise WeightsError(
            f"unknown architecture {architecture!r}; valid names: {', '.join(map(repr, MODELS))}"
        )
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise WeightsError("a state dict must map parameter names (str) to tensors")
    state_dict = _strip_prefixes(_float_state_dict(state_dict))
    detected = detect_architecture(state_dict)
    if architecture is not None and detected is not None and detected != architecture:
        raise WeightsError(
            f"these are weights of the {detected} model, not the {architecture} model; "
            f"choose model={detected!r}"
        )
    architecture = architecture or detected
    if architecture is None:
        raise WeightsError(
            "the keys match neither the basic nor the deep model (first keys: "
            f"{_first(state_dict)})"
        )
    expected = _expected_shapes(architecture)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        raise WeightsError(f"the weights do not fit the {architecture} model: {'; '.join(parts)}")
    for key, shape in expected.items():
        got = tuple(state_dict[key].shape)
        if got != shape:
            raise WeightsError(
                f"shape mismatch for {key!r}: the file has {got}, the {architecture} model "
                f"expects {shape}"
            )
    tensors = {
        k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()
    }  # half-precision files load into a float32 model
    with torch.device("meta"):
        model = MODELS[architecture]()
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.eval()


def detect_architecture(state_dict: Mapping[str, Any]) -> str | None:
    """Name the architecture whose layer names best match the keys, or ``None`` if none does.

    Parameters
    ----------
    state_dict : mapping
        A state dict (only its keys are used).

    Returns
    -------
    str or None
        ``"basic"`` or ``"deep"`` (the one sharing the largest fraction of keys), or
        ``None`` when no key matches either model.
    """
    keys = set(state_dict)
    scores = {}
    for name in MODELS:
        names = set(_expected_shapes(name))
        scores[name] = len(keys & names) / len(keys | names)
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else None


def quantize_int8(weight: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise a tensor to symmetric int8, one scale per index along ``axis``.

    Parameters
    ----------
    weight : torch.Tensor
        A float tensor, e.g. a convolution weight.
    axis : int
        The output-channel axis (0 for ``Conv2d``, 1 for ``ConvTranspose2d``).

    Returns
    -------
    codes : torch.Tensor
        int8 values in [-127, 127], ``weight``'s shape.
    scales : torch.Tensor
        float32, ``weight``'s shape with every axis but ``axis`` of size 1, so that
        ``codes * scales`` restores ``weight`` to within half a scale step.
    """
    weight = weight.detach().to("cpu", torch.float32)
    dims = [d for d in range(weight.ndim) if d != axis]
    scales = weight.abs().amax(dim=dims, keepdim=True) / INT8_MAX
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # all-zero channels
    codes = torch.round(weight / scales).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return codes, scales


@functools.cache
def _expected_shapes(architecture: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = MODELS[architecture]()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _stored_tensors(model: nn.Module, dtype: str) -> dict[str, torch.Tensor]:
    """The state dict as it is written: CPU tensors, cast or quantised per ``dtype``."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype == "float16":
        return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    if dtype == "int8":
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                key = f"{name}.weight"
                # A transposed convolution's weight is (in, out, kH, kW).
                codes, scales = quantize_int8(state[key], axis=1 if module.transposed else 0)
                state[key], state[key + SCALE_SUFFIX] = codes, scales
    return state


def _float_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Dequantise int8 tensors with their scales, and refuse any other non-float tensor."""
    out = {}
    for key, tensor in state_dict.items():
        if key.endswith(SCALE_SUFFIX):
            if key.removesuffix(SCALE_SUFFIX) not in state_dict:
                raise WeightsError(f"int8 scales {key!r} belong to no tensor")
            continue
        scales = state_dict.get(key + SCALE_SUFFIX)
        if scales is not None:
            if tensor.dtype != torch.int8 or not scales.is_floating_point():
                raise WeightsError(
                    f"{key!r} has int8 scales but is {tensor.dtype}, not int8 with float scales"
                )
            if scales.ndim != tensor.ndim or any(
                s not in (1, t) for s, t in zip(scales.shape, tensor.shape, strict=True)
            ):
                raise WeightsError(
                    f"int8 scales of {key!r} have shape {tuple(scales.shape)}, which does not "
                    f"fit the tensor's {tuple(tensor.shape)}"
                )
            tensor = tensor.float() * scales.float()
        elif not tensor.is_floating_point() and not (
            key.endswith(INTEGER_KEYS) and tensor.dtype in (torch.int64, torch.int32)
        ):
            raise WeightsError(
                f"{key!r} holds {str(tensor.dtype).removeprefix('torch.')} values; weights must "
                "be floating point (int8 only with per-channel scales written by save_weights)"
            )
        out[key] = tensor
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(model, parallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON object. The length is not checked
    # against the file size, so that a truncated file is reported as truncated.
    return head[8:9] == b"{" and int.from_bytes(head[:8], "little") < _MAX_HEADER


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            state_dict = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise WeightsError(
            f"{path.name} is a truncated or corrupt safetensors file ({exc})"
        ) from None
    metadata: dict[str, Any] = {}
    if METADATA_KEY in header:
        try:
            metadata = json.loads(header[METADATA_KEY])
        except json.JSONDecodeError:
            raise WeightsError(
                f"{path.name} has corrupt metadata under {METADATA_KEY!r}"
            ) from None
    return state_dict, metadata


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io model package.

    A package is a zip file with ``rdf.yaml`` or ``bioimageio.yaml`` at its root (a
    PyTorch file is a zip file too, without them), or such a YAML file itself.
    """
    import zipfile

    path = Path(path)
    if path.name in PACKAGE_YAML_NAMES or path.name.endswith(".bioimageio.yaml"):
        return path.is_file()
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name in PACKAGE_YAML_NAMES for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_torch_state(
    source: BinaryIO, name: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a PyTorch state-dict file with ``torch.load(weights_only=True)``, never running code.

    Parameters
    ----------
    source : binary file
        The open file (or bytes stream).
    name : str
        The file's name, for messages.

    Returns
    -------
    state_dict : dict of str to torch.Tensor
        The tensors, as stored.
    metadata : dict
        The scalar entries beside a wrapped state dict, or ``{}``.

    Raises
    ------
    WeightsError
        If the file would run code when unpickled, is truncated, or holds no state dict.
    """
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise WeightsError(
                f"{name} is not a safe weights file: it holds Python objects that would run "
                "code when unpickled, so it was refused without loading them. Re-save the plain "
                "state dict (model.state_dict()) or use save_weights()."
            ) from None
        raise WeightsError(f"{name} is a truncated or corrupt PyTorch file ({exc})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).split(". ")[0]  # torch appends paragraphs of advice
        raise WeightsError(f"{name} is a truncated or corrupt PyTorch file ({reason})") from None

    metadata: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                metadata = {
                    k: v for k, v in obj.items() if isinstance(v, str | int | float | bool)
                }
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(
            f"{name} does not hold a state dict (found {type(obj).__name__}); expected a "
            f"dict of tensors, bare or under {' or '.join(map(repr, WRAPPER_KEYS))}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{name}: these entries are not tensors: {_first(bad)}")
    return dict(obj), metadata


def _describe(head: bytes) -> str:
    signatures = {
        b"\x89PNG": "a PNG image",
        b"\xff\xd8\xff": "a JPEG image",
        b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image",
        b"II+\x00": "a BigTIFF image",
        b"\x1f\x8b": "a gzip archive",
    }
    for magic, what in signatures.items():
        if head.startswith(magic):
            return f"it looks like {what}"
    if not head:
        return "it is empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary content"
    return "it looks like text"


def _first(keys: Any) -> str:
    keys = list(keys)
    shown = ", ".join(map(repr, keys[:_SHOWN]))
    return shown + (", ..." if len(keys) > _SHOWN else "")
