"""Which compute devices work here, the automatic choice, precision and free memory."""

from __future__ import annotations

import functools
import platform
import re

import torch

#: Precision names accepted by :func:`resolve_precision` besides ``"auto"``.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


@functools.cache
def _works(name: str) -> bool:
    try:
        torch.zeros(1, device=name).add_(1)
    except (RuntimeError, AssertionError):
        return False
    return True


def available_devices() -> list[str]:
    """Return the devices that really run a tensor operation here, best first.

    Returns
    -------
    list of str
        ``"cuda:0"``, ``"cuda:1"``, ... (if CUDA works), ``"mps"`` (Apple), then ``"cpu"``.
    """
    names = []
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return [name for name in names if _works(name)] + ["cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device name into a working :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"mps"``, ``"cuda"``
        (the current CUDA device) or ``"cuda:N"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the name is malformed or the device does not work on this machine; the
        message lists the devices that do.
    """
    text = str(device).strip().lower()
    match = _DEVICE_PATTERN.match(text)
    available = available_devices()
    if match is None or (match.group(1) in ("auto", "cpu", "mps") and match.group(2)):
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N' "
            f"(available here: {', '.join(available)})"
        )
    kind = match.group(1)
    if kind == "auto":
        return torch.device(available[0])
    if kind == "cuda" and match.group(2) is None:
        if available[0].startswith("cuda"):
            return torch.device("cuda", torch.cuda.current_device())
    elif text in available:
        return torch.device(text)
    raise ValueError(
        f"device {device!r} is not available on this machine "
        f"(available here: {', '.join(available)})"
    )


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), as torch reports it.

    Elsewhere oneDNN emulates bf16, slower than fp32, so ``"auto"`` keeps fp32 there.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return torch.backends.mkldnn.is_available() and any(
        getattr(torch.cpu, name, lambda: False)() for name in probes
    )


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Return the precision to run at.

    ``"auto"`` is ``"bf16"`` on CUDA and on CPUs with native bf16
    (:func:`cpu_has_native_bf16`; with trained weights its output stays at least 45 dB PSNR
    from fp32's, docs/engine.md), else ``"fp32"``.

    Raises
    ------
    ValueError
        If ``precision`` is not ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """
    if precision == "auto":
        kind = torch.device(device).type
        native = kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16())
        return "bf16" if native else "fp32"
    if precision not in PRECISION_DTYPES:
        raise ValueError(
            f"unknown precision {precision!r}; valid values are 'auto', "
            f"{', '.join(map(repr, PRECISION_DTYPES))}"
        )
    return precision


@functools.cache
def resolve_run(
    device: torch.device | str, precision: str, backend: str, *, own_model: bool = True
) -> dict[str, str]:
    """Where and how a model runs, as records say it: ``device``, ``precision``, ``backend``.

    Each is resolved as the engine resolves it (``"auto"`` says what it meant here). With
    OpenVINO the precision is the one its CPU plugin really runs, which may differ from the
    one asked for (fp16 on a CPU without FP16).
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    backend = resolve_backend(backend, device, own_model=own_model)
    if backend == "openvino":
        from .engine.openvino_model import precision_run

        precision = precision_run(precision)
    return {"device": str(device), "precision": precision, "backend": backend}


def openvino_installed() -> bool:
    """Whether the optional OpenVINO runtime imports (``pip install ...[openvino]``).

    A broken install counts as none, so ``"auto"`` falls back to torch.
    """
    try:
        import openvino  # noqa: F401
    except Exception:  # ImportError, or a missing shared library of a damaged install
        return False
    return True


def resolve_backend(backend: str, device: torch.device | str, *, own_model: bool = True) -> str:
    """Return what runs the model: ``"torch"`` or ``"openvino"``.

    ``"auto"`` is OpenVINO on the CPU for this package's own models (``own_model``: the
    basic and deep U-Nets, by name or as modules, whose OpenVINO output was checked against
    torch fp32 with trained weights, docs/engine.md) where it is installed, else torch: any
    other module runs in torch unless OpenVINO is asked for.

    Raises
    ------
    ValueError
        For an unknown backend, OpenVINO on another device than the CPU, or OpenVINO asked
        for but not installed.
    """
    kind = torch.device(device).type
    if backend == "auto":
        return "openvino" if kind == "cpu" and own_model and openvino_installed() else "torch"
    if backend == "openvino":
        if kind != "cpu":
            raise ValueError(
                f"the OpenVINO backend runs on the CPU, not on {kind}: choose device 'cpu' "
                "or backend 'torch'"
            )
        if not openvino_installed():
            raise ValueError(
                "the OpenVINO backend needs the openvino package: "
                "pip install 'napari-histo-denoise[openvino]' (or choose backend 'torch')"
            )
        return backend
    if backend != "torch":
        raise ValueError(
            f"unknown backend {backend!r}; valid values are 'auto', 'torch', 'openvino'"
        )
    return backend


def uses_channels_last(device: torch.device | str, precision: str, backend: str = "torch") -> bool:
    """Whether the model runs in channels_last.

    In torch: on CUDA, and on the CPU in bf16 (oneDNN's fast path). Never with OpenVINO,
    which takes plain tensors and lays them out itself.
    """
    if backend != "torch":
        return False
    device = torch.device(device)
    return device.type == "cuda" or (device.type == "cpu" and precision == "bf16")


def device_name(device: torch.device) -> str:
    """What ``device`` is, for records: the GPU's name, else the CPU's model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    return f"{_cpu_model()}, {torch.get_num_threads()} threads"


@functools.cache
def _cpu_model() -> str:
    # Linux names the model in /proc/cpuinfo; platform.processor() is often empty there.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def free_memory(device: torch.device) -> int | None:
    """Return the free memory of a CUDA device in bytes, or ``None`` where it is not known."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)
