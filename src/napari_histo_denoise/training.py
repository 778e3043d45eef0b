"""Train the basic or deep model: synthetic noise on clean images, or Neighbor2Neighbor.

One implementation, two ways to drive it: :func:`iter_train` is a generator that
yields a :class:`TrainProgress` after every step and returns the
:class:`TrainResult` (the napari widget wraps it in a thread worker, the CLI drives
it with a progress bar); :func:`train` runs it to the end.

Loss: mean squared error in both modes. PSNR, the figure users compare, is a
function of the MSE, so L2 optimises it directly and its minimiser is the mean of
the clean images given the noisy one (the MMSE estimate); Neighbor2Neighbor needs
L2 as well, since only under L2 does the target's own noise average out.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .devices import (
    PRECISION_DTYPES,
    device_name,
    resolve_device,
    resolve_precision,
    uses_channels_last,
)
from .events import Cancelled, cancel_check, drain
from .lineage import LINEAGE_KEY, chunk, lineage, parent_chunks
from .patches import PatchSampler, jitter_stain
from .selfsupervised import GAMMA, neighbor2neighbor_loss
from .settings import TrainSettings
from .train_state import TrainState, prefixed, read_state, write_state

#: Images of at most this many bytes are read into memory once; larger ones stay lazy.
IN_MEMORY_BYTES = 1 << 30
#: Seed of the validation crops and their noise: the same for every run, whatever ``seed``.
VAL_SEED = 20261128
#: AdamW weight decay (small: the models have batch norm and no dropout).
WEIGHT_DECAY = 1e-4
#: Warm-up of the learning rate: this fraction of the run, at most ``MAX_WARMUP`` steps.
WARMUP_FRACTION = 0.05
MAX_WARMUP = 200
#: Validations per run when neither ``val_every`` nor a step count sets the interval.
VALIDATIONS_PER_RUN = 10
#: Largest automatic batch (``batch_size=None``) and its share of the free CUDA memory.
MAX_AUTO_BATCH = 128
AUTO_BATCH_MEMORY_SHARE = 0.6
#: Batch of ``batch_size=None`` off CUDA.
HOST_BATCH = 8
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
#: Threads drawing training batches ahead of a GPU (numpy releases the GIL in them): half
#: the cores this process may use, at most 8. On a CPU one thread: the model is the limit.
PATCH_WORKERS = max(1, min(8, (_CORES or 2) // 2))
#: Settings a resumed run may change: where and how fast it runs, not what it computes
#: (with another device or precision the figures still differ in the last bits).
RESUME_MAY_CHANGE = ("device", "precision", "compile")

Cancel = threading.Event | Callable[[], bool] | None


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the learning rate is too high for this setup."""


@dataclass(frozen=True)
class TrainProgress:
    """One training step done.

    ``val_psnr``/``val_ssim`` are the latest validation figures (None before the first),
    measured after step ``val_step``; ``fraction`` is how much of the run is done, by steps
    or by the ``minutes`` budget; ``lr`` is the learning rate of this step.
    """

    step: int
    steps: int
    loss: float
    val_psnr: float | None = None
    val_ssim: float | None = None
    elapsed_s: float = 0.0
    fraction: float = 0.0
    lr: float | None = None
    val_step: int | None = None


@dataclass
class TrainResult:
    """The trained model (best validation weights when validated), its metadata, its history.

    ``metadata`` is what :func:`napari_histo_denoise.checkpoint.save_weights` stores;
    ``history`` holds ``loss`` and ``lr`` per step and ``val``: one dict (step, psnr,
    ssim) per validation, step 0 being the initial weights.
    """

    model: nn.Module
    metadata: dict[str, Any]
    history: dict[str, list] = field(default_factory=dict)

    def save(self, path: str | os.PathLike, *, int8: bool = False) -> list[Path]:
        """Write the weights and, beside them, the report and the curves (and int8 weights).

        ``NAME.safetensors`` (see :func:`~napari_histo_denoise.checkpoint.save_weights`),
        ``NAME.json`` (metadata and history), ``NAME.curves.png`` and with ``int8``
        ``NAME.int8.safetensors`` (see :mod:`napari_histo_denoise.train_report`).

        Returns
        -------
        list of pathlib.Path
            The files written, the weights first.
        """
        from .checkpoint import save_weights
        from .train_report import int8_path, write_report

        weights = save_weights(path, self.model, self.metadata)
        files = [weights, *write_report(weights, self.metadata, self.history)]
        if int8:
            files.append(save_weights(int8_path(weights), self.model, self.metadata, dtype="int8"))
        return files


def train(
    images: Any,
    model: str | nn.Module = "basic",
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a model and return it with its metadata and history.

    Takes the same arguments as :func:`iter_train` and runs it to the end.

    Returns
    -------
    TrainResult
    """
    return drain(iter_train(images, model, progress=progress, **options))


def iter_train(
    images: Any,
    model: str | nn.Module = "basic",
    *,
    mode: str = "synthetic",
    noise: str | None = "gaussian:25",
    steps: int = 2000,
    minutes: float | None = None,
    patch_size: int = 128,
    batch_size: int | None = 16,
    lr: float = 1e-3,
    clean_fraction: float = 0.0,
    stain_jitter: float = 0.0,
    ema: float | None = None,
    freeze_batch_norm: bool = False,
    compile: bool | None = False,
    val_images: Any = None,
    val_every: int | None = None,
    val_crop: int = 256,
    val_crops: int = 4,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: Cancel = None,
    init_weights: str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module | None = None,
    resume: str | os.PathLike | None = None,
    state: str | os.PathLike | None = None,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train a model, yielding a :class:`TrainProgress` after every step.

    The keyword arguments named like the fields of
    :class:`~napari_histo_denoise.settings.TrainSettings` mean the same (see there), so
    ``iter_train(images, **dataclasses.asdict(settings))`` runs a settings object.

    Parameters
    ----------
    images : array, path, folder, or a list of them
        Training images: numpy/dask arrays (H x W x 3, uint8, uint16 or float in [0, 1]),
        image files (PNG, JPEG, TIFF, SVS and other slides: level 0) or folders of them.
        Clean images in synthetic mode, noisy ones in self-supervised mode.
    model : {"basic", "deep"} or torch.nn.Module
        Architecture to train from scratch, or a module (a copy is trained; yours is untouched).
    val_images : same kinds as ``images``, optional
        Clean images. Fixed tissue crops of them get fixed-seed ``noise``; PSNR/SSIM of the
        model on these are measured at step 0, every ``val_every`` steps and at the end,
        and the best weights are kept and returned.
    progress : callable, optional
        Called with every :class:`TrainProgress` (as well as yielding it).
    cancel : threading.Event or callable, optional
        Checked before every step and between validation crops; when set (or returning
        True) training stops with :class:`~napari_histo_denoise.engine.Cancelled`.
    init_weights : path, state dict or torch.nn.Module, optional
        Start from these weights (fine-tune) instead of a random initialisation; the
        optimiser and the schedule start afresh.
    resume : path, optional
        Go on with an unfinished run from its state file (``state`` of that run): model,
        optimiser, schedule, step, clock, random states, weight average, best weights and
        history are restored, so the result is the one the run would have given
        uninterrupted. The images and settings must be the run's (``device``,
        ``precision`` and ``compile`` may change).
    state : path, optional
        Where to keep this run's resumable state (a safetensors file, see
        :mod:`~napari_histo_denoise.train_state`): written at every validation point
        (about ten times a run) and when the run is cancelled or its generator closed,
        deleted when the run completes.

    Returns
    -------
    TrainResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    ValueError
        For bad settings, images, model names or weights, or a ``resume`` state of
        another run (specific messages).
    Cancelled
        When ``cancel`` is set.
    TrainingDiverged
        When the loss becomes NaN or infinite.
    """
    settings = TrainSettings(
        mode=mode,
        noise=noise,
        steps=steps,
        minutes=minutes,
        patch_size=patch_size,
        batch_size=batch_size,
        lr=lr,
        clean_fraction=clean_fraction,
        stain_jitter=stain_jitter,
        ema=ema,
        freeze_batch_norm=freeze_batch_norm,
        compile=compile,
        val_every=val_every,
        val_crop=val_crop,
        val_crops=val_crops,
        device=device,
        precision=precision,
        seed=seed,
    )
    is_cancelled = cancel_check(cancel)
    if val_images is not None and settings.noise is None:
        raise ValueError("val_images need a noise spec to make their noisy copies; pass noise=")
    resumed = None
    if resume is not None:
        if init_weights is not None:
            raise ValueError("resume continues a run from its own weights; drop init_weights")
        resumed = read_state(resume)
        _check_resumable(resumed.info, settings, resume)
    dev = resolve_device(settings.device)
    prec = resolve_precision(settings.precision, dev)
    net, architecture, parent_meta = _prepare_model(model, init_weights, settings.seed)

    arrays, names = load_images(images, what="images")
    sampler = PatchSampler(arrays, names, settings.patch_size)
    validation = None
    if val_images is not None:
        val_arrays, val_names = load_images(val_images, what="val_images")
        validation = _Validation(val_arrays, val_names, settings)

    budget = _Budget(settings)
    warm = init_weights is not None or (resumed is not None and resumed.info["init_weights"])
    batch_size = resumed.info["batch_size"] if resumed else None
    loop = _Loop(net, settings, dev, prec, batch_size, warm_start=bool(warm))
    record = _Record()
    # Separate streams: patches are drawn in worker threads while the model trains; noise
    # and stain jitter are drawn from the step stream.
    patch_rng, step_rng = (np.random.default_rng([settings.seed, i]) for i in (0, 1))
    run = {
        "architecture": architecture,
        "train_images": names,
        "val_images": None if validation is None else validation.names,
        "init_weights": _describe_init(init_weights),
        **_parentage(init_weights, parent_meta),
    }
    done, owed = 0, validation is not None  # steps done; whether their validation is owed
    if resumed is not None:
        _check_same_run(resumed.info, run, resume)
        run.update({k: resumed.info[k] for k in ("init_weights", "init_sha256", "parents")})
        done, owed = _restore(resumed, loop, budget, record, patch_rng, step_rng)
    patch_state = patch_rng.bit_generator.state  # the patch stream just after step `done`

    def snapshot() -> TrainState:
        return _snapshot(settings, run, loop, budget, record, done, owed, patch_state, step_rng)

    workers = 1 if dev.type == "cpu" else PATCH_WORKERS
    batches = _prefetched(sampler, loop.batch_size, patch_rng, settings.steps - done, workers)
    last = False
    try:
        with contextlib.closing(batches):
            if owed:
                record.validate(done, validation, loop, is_cancelled)
                owed = False
            for step, (batch, drawn) in enumerate(batches, start=done + 1):
                if is_cancelled():
                    raise Cancelled(f"training cancelled after {done} of {settings.steps} steps")
                loss = loop.step(batch, step_rng, step, budget)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"training diverged at step {step}: the loss is {loss}; lower lr "
                        f"(now {settings.lr:g})"
                    )
                record.history["loss"].append(loss)
                record.history["lr"].append(loop.last_lr)
                done, patch_state = step, drawn
                last = budget.finished(step)
                checkpoint = budget.validation_due(step) or last
                if validation is not None and checkpoint:
                    owed = True
                    record.validate(step, validation, loop, is_cancelled)
                    owed = False
                if state is not None and checkpoint and not last:
                    write_state(state, snapshot())
                latest = record.history["val"][-1] if record.history["val"] else {}
                event = TrainProgress(
                    step,
                    settings.steps,
                    loss,
                    latest.get("psnr"),
                    latest.get("ssim"),
                    budget.elapsed(),
                    budget.fraction(step),
                    loop.last_lr,
                    latest.get("step"),
                )
                if progress is not None:
                    progress(event)
                yield event
                if last:
                    break
    except (Cancelled, GeneratorExit):
        if state is not None and done > 0 and not last:
            write_state(state, snapshot())
        raise

    trained = loop.finish(record.best[3] if record.best is not None else None)
    metadata = _metadata(
        settings, run, validation, record.best, dev, prec, budget, done, loop.batch_size
    )
    if resume is not None:
        metadata["resumed_from"] = str(resume)
    if state is not None:
        Path(state).unlink(missing_ok=True)  # a finished run has nothing left to resume
    return TrainResult(trained, metadata, record.history)


class _Record:
    """The run's history and its best validation so far (with those weights, on the CPU)."""

    def __init__(self) -> None:
        self.history: dict[str, list] = {"loss": [], "lr": [], "val": []}
        self.best: tuple[float, float, int, dict[str, torch.Tensor]] | None = None

    def validate(
        self, step: int, validation: _Validation, loop: _Loop, is_cancelled: Callable[[], bool]
    ) -> None:
        psnr, ssim = validation.measure(loop, is_cancelled)
        self.history["val"].append({"step": step, "psnr": psnr, "ssim": ssim})
        if self.best is None or psnr > self.best[0]:
            self.best = (psnr, ssim, step, _cpu_state(loop.evaluated))


def _snapshot(
    settings: TrainSettings,
    run: dict[str, Any],
    loop: _Loop,
    budget: _Budget,
    record: _Record,
    done: int,
    owed: bool,
    patch_state: dict[str, Any],
    step_rng: np.random.Generator,
) -> TrainState:
    """The state of a run after ``done`` steps (``owed``: their validation is still to do)."""
    moments = loop.optimizer.state_dict()["state"]  # {parameter index: {name: tensor}}
    tensors = {
        **prefixed("model", loop.model.state_dict()),
        **prefixed("optimizer", {f"{i}.{k}": v for i, m in moments.items() for k, v in m.items()}),
        **prefixed("rng", _torch_rng_states(loop.device)),
        "history.loss": torch.tensor(record.history["loss"], dtype=torch.float64),
        "history.lr": torch.tensor(record.history["lr"], dtype=torch.float64),
    }
    if loop.ema is not None:
        tensors.update(prefixed("ema", loop.ema.state_dict()))
    best = None
    if record.best is not None:
        best = dict(zip(("psnr", "ssim", "step"), record.best[:3], strict=True))
        tensors.update(prefixed("best", record.best[3]))
    info = {
        **run,
        "step": done,
        "validation_owed": owed,
        "settings": dataclasses.asdict(settings),
        "batch_size": loop.batch_size,
        "elapsed_s": budget.elapsed(),
        "next_validation": budget.next_validation,
        "patch_rng": patch_state,
        "step_rng": step_rng.bit_generator.state,
        "scaler": loop.scaler.state_dict(),
        "val": record.history["val"],
        "best": best,
    }
    return TrainState(info, tensors)


def _restore(
    state: TrainState,
    loop: _Loop,
    budget: _Budget,
    record: _Record,
    patch_rng: np.random.Generator,
    step_rng: np.random.Generator,
) -> tuple[int, bool]:
    """Put a run back where ``state`` left it; return its steps done and ``validation_owed``."""
    info = state.info
    loop.model.load_state_dict(state.group("model"))
    if loop.ema is not None:
        loop.ema.load_state_dict(state.group("ema"))
    optimizer = loop.optimizer.state_dict()
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.group("optimizer").items():
        index, name = key.split(".", 1)
        moments.setdefault(int(index), {})[name] = tensor
    loop.optimizer.load_state_dict({**optimizer, "state": moments})
    if info["scaler"]:
        loop.scaler.load_state_dict(info["scaler"])
    budget.start -= info["elapsed_s"]
    budget.next_validation = info["next_validation"]
    record.history = {
        "loss": state.tensors["history.loss"].tolist(),
        "lr": state.tensors["history.lr"].tolist(),
        "val": info["val"],
    }
    if info["best"] is not None:
        best = info["best"]
        record.best = (best["psnr"], best["ssim"], best["step"], state.group("best"))
    patch_rng.bit_generator.state = info["patch_rng"]
    step_rng.bit_generator.state = info["step_rng"]
    _set_torch_rng_states(state.group("rng"), loop.device)
    return info["step"], info["validation_owed"]


def _torch_rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """The random states of torch (uint8 tensors): the CPU's, and the CUDA device's if used.

    The loop itself draws from numpy generators; these matter for modules that draw
    from torch's own (dropout, say).
    """
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_torch_rng_states(states: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _check_resumable(info: dict[str, Any], settings: TrainSettings, path: Any) -> None:
    """Refuse a state whose run had other settings, or that has nothing left to do."""
    saved = info["settings"]
    changed = [
        f"{name} {value!r} (the run's: {saved.get(name)!r})"
        for name, value in dataclasses.asdict(settings).items()
        if name not in RESUME_MAY_CHANGE and saved.get(name) != value
    ]
    if changed:
        raise ValueError(
            f"cannot resume {Path(path).name} with other settings: {'; '.join(changed)}"
        )
    if info["step"] >= settings.steps and not info["validation_owed"]:
        raise ValueError(f"{Path(path).name}: the run is complete, nothing to resume")


def _check_same_run(info: dict[str, Any], run: dict[str, Any], path: Any) -> None:
    """Refuse a state of another model or other training or validation images."""
    for key, what in (
        ("architecture", "model"),
        ("train_images", "training images"),
        ("val_images", "validation images"),
    ):
        if info[key] != run[key]:
            raise ValueError(
                f"cannot resume {Path(path).name} with other {what}: {run[key]!r}, "
                f"the run's were {info[key]!r}"
            )


class _Budget:
    """How far a run is, by steps or by its ``minutes`` budget, and when it validates."""

    def __init__(self, settings: TrainSettings) -> None:
        self.steps = settings.steps
        self.seconds = None if settings.minutes is None else settings.minutes * 60
        self.interval = settings.validation_interval
        # With a clock budget and no val_every, validate every tenth of the budget.
        self.by_clock = self.seconds is not None and settings.val_every is None
        self.next_validation = 1 / VALIDATIONS_PER_RUN
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction(self, step: int) -> float:
        """Share of the run done after ``step`` steps: of the steps, or of the clock."""
        done = step / self.steps
        if self.seconds is not None:
            done = max(done, self.elapsed() / self.seconds)
        return min(1.0, done)

    def finished(self, step: int) -> bool:
        return self.fraction(step) >= 1.0

    def validation_due(self, step: int) -> bool:
        if not self.by_clock:
            return step % self.interval == 0
        if self.fraction(step) < self.next_validation:
            return False
        self.next_validation = (math.floor(self.fraction(step) * VALIDATIONS_PER_RUN) + 1) / (
            VALIDATIONS_PER_RUN
        )
        return True

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak learning rate for optimiser step ``step`` (from 1).

        A linear warm-up over the first ``WARMUP_FRACTION`` of the run (at most
        ``MAX_WARMUP`` steps) times a cosine decay over the whole run.
        """
        warm = max(step / MAX_WARMUP, self.fraction(step) / WARMUP_FRACTION)
        return min(1.0, warm) * 0.5 * (1 + math.cos(math.pi * self.fraction(step - 1)))


def _prefetched(
    sampler: PatchSampler, batch_size: int, rng: np.random.Generator, count: int, workers: int
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Yield ``count`` batches, drawn ahead in ``workers`` threads while the caller trains.

    Each batch is drawn with its own generator, seeded in order from ``rng`` (only this
    thread touches ``rng``; :meth:`PatchSampler.sample` only reads the sampler), so the
    batches do not depend on how many threads draw them. Each comes with ``rng``'s state just
    after its seed was taken: a run resumed after this batch starts there.
    """

    def submit() -> tuple[Future, dict[str, Any]]:
        generator = np.random.default_rng(int(rng.integers(2**63)))
        return pool.submit(sampler.sample, batch_size, generator), rng.bit_generator.state

    pool = ThreadPoolExecutor(workers, thread_name_prefix="histo-denoise-patches")
    try:
        pending = collections.deque(submit() for _ in range(min(count, workers)))
        for index in range(count):
            future, state = pending.popleft()
            if index + len(pending) + 1 < count:
                pending.append(submit())
            yield future.result(), state
    finally:
        pool.shutdown(cancel_futures=True)  # a closed run does not wait for unused batches


def load_images(images: Any, *, what: str = "images") -> tuple[list[Any], list[str]]:
    """Resolve arrays, image files and folders to a list of arrays (level 0) and names.

    ``images`` is one array, path or folder, or a list of them; a list or tuple inside
    that list is a multiscale pyramid (as napari holds one) and gives its level 0.
    Images up to ``IN_MEMORY_BYTES`` are read into memory; larger slides stay lazy.

    Raises
    ------
    ValueError
        If nothing is given, a folder holds no image, or a file type is not supported.
    FileNotFoundError
        If a path does not exist.
    """
    from .io import PICTURE_SUFFIXES, TIFF_SUFFIXES, read_image

    if images is None:
        raise ValueError(f"{what}: no images given")
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise ValueError(f"{what}: no images given")
    suffixes = (*PICTURE_SUFFIXES, *TIFF_SUFFIXES, ".zarr")
    arrays, names = [], []
    for index, item in enumerate(items):
        if isinstance(item, (list, tuple)) and item:  # a multiscale pyramid: level 0
            item = item[0]
        if not isinstance(item, (str, os.PathLike)):
            arrays.append(_in_memory(item))
            names.append(f"{what}[{index}]")
            continue
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{what}: no such file or folder: {path}")
        if path.is_dir() and not path.name.lower().endswith(".zarr"):
            files = sorted(p for p in path.iterdir() if p.name.lower().endswith(suffixes))
            if not files:
                raise ValueError(
                    f"{what}: folder {path} holds no images (looked for "
                    f"{', '.join(s.lstrip('.').upper() for s in suffixes)})"
                )
        elif not path.name.lower().endswith(suffixes):
            raise ValueError(
                f"{what}: {path.name} is not a supported image; use one of {', '.join(suffixes)}"
            )
        else:
            files = [path]
        for file in files:
            data, _meta = read_image(file)
            arrays.append(_in_memory(data[0] if isinstance(data, list) else data))
            names.append(file.name)
    return arrays, names


def _in_memory(array: Any) -> Any:
    """Read a lazy array (dask, zarr) into memory unless it is larger than IN_MEMORY_BYTES."""
    if isinstance(array, np.ndarray):
        return array
    if not hasattr(array, "shape"):
        return np.asarray(array)  # PatchSampler then names what is wrong with its shape
    nbytes = getattr(array, "nbytes", None)
    return np.asarray(array) if nbytes is not None and nbytes <= IN_MEMORY_BYTES else array


class _Loop:
    """Model, optimiser, precision and weight average of one run; one :meth:`step` per step."""

    def __init__(
        self,
        model: nn.Module,
        settings: TrainSettings,
        device: torch.device,
        precision: str,
        batch_size: int | None = None,
        *,
        warm_start: bool = False,
    ):
        self.settings = settings
        self.device = device
        self.warm_start = warm_start
        self.memory_format = (
            torch.channels_last
            if uses_channels_last(device, precision)
            else torch.contiguous_format
        )
        self.model = model.to(device=device, memory_format=self.memory_format)
        self.train_mode()
        compiled = device.type == "cuda" if settings.compile is None else settings.compile
        self.forward = torch.compile(self.model) if compiled else self.model
        self.dtype = None if precision == "fp32" else PRECISION_DTYPES[precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=settings.lr, weight_decay=WEIGHT_DECAY
        )
        self.last_lr = settings.lr
        self.noise = None
        if settings.mode == "synthetic":
            from .noise import parse_noise

            self.noise = parse_noise(settings.noise)
        self.ema = None
        if settings.ema is not None:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        # A resumed run keeps its batch: the automatic one may differ from run to run.
        self.batch_size = batch_size or settings.batch_size or self._auto_batch()

    def train_mode(self) -> None:
        """The model in training mode; with ``freeze_batch_norm`` its batch norms are not."""
        self.model.train()
        if self.settings.freeze_batch_norm:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and returned: the average when there is one."""
        return self.model if self.ema is None else self.ema

    def _auto_batch(self) -> int:
        """The largest power-of-two batch whose step fits the free CUDA memory (else 8)."""
        if self.device.type != "cuda":
            return HOST_BATCH
        from .devices import free_memory

        probe = 2
        size = self.settings.patch_size
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        batch = torch.rand(probe, 3, size, size, device=self.device)
        with self.autocast():  # eager: compiling for the probe's shape would be wasted
            out = self.model(batch.contiguous(memory_format=self.memory_format))
        F.mse_loss(out.float(), batch).backward()
        self.optimizer.zero_grad(set_to_none=True)
        per_patch = max(1, (torch.cuda.max_memory_allocated(self.device) - base) / probe)
        fits = AUTO_BATCH_MEMORY_SHARE * (free_memory(self.device) or 0) / per_patch
        return int(min(MAX_AUTO_BATCH, 2 ** max(1, int(math.log2(max(fits, 2))))))

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def to_device(self, batch: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """A host batch on the device in the loop's layout; with ``rng``, stain-jittered."""
        tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
        if rng is not None and self.settings.stain_jitter:
            tensor = jitter_stain(tensor, rng, self.settings.stain_jitter)
        return tensor.contiguous(memory_format=self.memory_format)

    def step(
        self, clean_or_noisy: np.ndarray, rng: np.random.Generator, step: int, budget: _Budget
    ) -> float:
        """One optimiser step on a batch of N x 3 x P x P patches; returns the loss."""
        self.last_lr = self.settings.lr * budget.lr_factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr
        batch = self.to_device(clean_or_noisy, rng)
        self.optimizer.zero_grad(set_to_none=True)
        if self.noise is not None:  # synthetic: fresh noise, drawn on the device, in fp32
            noisy = self.noise(batch, rng)
            if self.settings.clean_fraction:
                clean = torch.from_numpy(rng.random(len(batch)) < self.settings.clean_fraction)
                noisy[clean.to(self.device)] = batch[clean.to(self.device)]
            with self.autocast():
                out = self.forward(noisy.contiguous(memory_format=self.memory_format))
            loss = F.mse_loss(out.float(), batch)
        else:
            gamma = GAMMA * budget.fraction(step)
            with self.autocast():
                loss = neighbor2neighbor_loss(self.forward, batch, rng, gamma, self.memory_format)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self._update_ema(step)
        return float(loss.detach())

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # From random weights the decay ramps up from 0.1, so that early averages do not
        # remember the random start; from given weights (a warm restart) it is full at once.
        decay = self.settings.ema
        if not self.warm_start:
            decay = min(decay, (1 + step) / (10 + step))
        for average, param in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            average.lerp_(param, 1 - decay)
        # Batch norm's running statistics are averaged too: from small batches (a CPU's)
        # they are noisy, and copied they cost a trained model 0.15 dB in 120 steps.
        for average, buffer in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            if average.is_floating_point():
                average.lerp_(buffer, 1 - decay)
            else:
                average.copy_(buffer)

    @torch.no_grad()
    def predict(self, noisy: np.ndarray) -> np.ndarray:
        """Denoise one H x W x 3 float image in eval mode; returns H x W x 3 float32."""
        model = self.evaluated
        model.eval()
        try:
            with self.autocast():
                out = model(self.to_device(noisy.transpose(2, 0, 1)[None].copy()))
            return out.float().clamp_(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        finally:
            self.train_mode()

    def finish(self, best_state: dict[str, torch.Tensor] | None) -> nn.Module:
        """Restore the best weights (when validated) and return the model in eval mode."""
        model = self.evaluated
        if best_state is not None:
            model.load_state_dict(best_state)
        return model.to(memory_format=torch.contiguous_format).eval()


class _Validation:
    """Fixed tissue crops of the validation images with fixed-seed noise, and their scores."""

    def __init__(self, arrays: list[Any], names: list[str], settings: TrainSettings) -> None:
        from .noise import parse_noise

        sampler = PatchSampler(arrays, names, 16)  # no padding: crops fit each image
        self.names = names
        self.clean = sampler.fixed_crops(settings.val_crop, settings.val_crops, VAL_SEED, 16)
        noise = parse_noise(settings.noise)
        self.noisy = [
            noise(crop, np.random.default_rng([VAL_SEED, i])).astype(np.float32)
            for i, crop in enumerate(self.clean)
        ]
        self.noisy_psnr, self.noisy_ssim = _scores(self.clean, self.noisy)

    def measure(self, loop: _Loop, is_cancelled: Callable[[], bool]) -> tuple[float, float]:
        outputs = []
        for noisy in self.noisy:
            if is_cancelled():
                raise Cancelled("training cancelled during validation")
            outputs.append(loop.predict(noisy))
        return _scores(self.clean, outputs)


def _scores(clean: list[np.ndarray], images: list[np.ndarray]) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM over image pairs (the project's metrics, on [0, 1])."""
    from .metrics import psnr, ssim

    pairs = list(zip(clean, images, strict=True))
    return float(np.mean([psnr(c, x) for c, x in pairs])), float(
        np.mean([ssim(c, x) for c, x in pairs])
    )


def _prepare_model(
    model: str | nn.Module, init_weights: Any, seed: int
) -> tuple[nn.Module, str, dict[str, Any] | None]:
    """Build (or copy) the model to train and load ``init_weights`` into it.

    Returns the model, its architecture and the metadata of an ``init_weights`` file.
    """
    meta = None
    if isinstance(init_weights, (str, os.PathLike)):
        from .checkpoint import read_weights

        state, meta = read_weights(init_weights)
    else:
        state = _init_state(init_weights)
    return (*_build(model, state, seed), meta)


def _init_state(init_weights: Any) -> dict[str, Any] | None:
    """A copy of the state of an ``init_weights`` module or state dict (None: none given)."""
    if init_weights is None:
        return None
    if not isinstance(init_weights, (nn.Module, Mapping)):
        raise ValueError(
            "init_weights must be a weights file path, a state dict or a torch.nn.Module, "
            f"got {type(init_weights).__name__}"
        )
    state = init_weights.state_dict() if isinstance(init_weights, nn.Module) else init_weights
    # Copies: the model is built around these tensors, and training must not change the
    # caller's module or state dict.
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _build(model: str | nn.Module, state: Any, seed: int) -> tuple[nn.Module, str]:
    """The model to train, from a name or a module, with ``state`` loaded when given."""
    from .checkpoint import model_from_state_dict
    from .models import MODELS, build_model

    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(
                f"unknown model {model!r}; valid names are {', '.join(map(repr, MODELS))}"
            )
        if state is not None:
            return model_from_state_dict(state, model).train(), model
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            return build_model(model), model
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be 'basic', 'deep' or a torch.nn.Module, got {type(model).__name__}"
        )
    net = copy.deepcopy(model).float().train()
    if state is not None:
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"init_weights do not fit the model: {exc}") from None
    return net, getattr(net, "architecture", type(net).__name__)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _describe_init(init_weights: Any) -> str | None:
    """``init_weights`` as the metadata records it: a path, or the kind of object."""
    if isinstance(init_weights, (str, os.PathLike)):
        return str(init_weights)
    return None if init_weights is None else type(init_weights).__name__


def _parentage(init_weights: Any, meta: dict[str, Any] | None) -> dict[str, Any]:
    """Which weights a run started from: an ``init_weights`` file's SHA-256 and its chunks."""
    if not isinstance(init_weights, (str, os.PathLike)):
        return {"init_sha256": None, "parents": []}
    from .files import file_sha256

    sha256 = file_sha256(init_weights)
    return {"init_sha256": sha256, "parents": parent_chunks(meta or {}, sha256)}


def _metadata(
    settings: TrainSettings,
    run: dict[str, Any],
    validation: _Validation | None,
    best: tuple | None,
    device: torch.device,
    precision: str,
    budget: _Budget,
    steps_done: int,
    batch_size: int,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "architecture": run["architecture"],
        "mode": settings.mode,
        "method": "neighbor2neighbor" if settings.mode == "self-supervised" else "synthetic-noise",
        "loss": "mse",
        "noise": settings.noise,
        "clean_fraction": settings.clean_fraction,
        "steps": steps_done,
        "max_steps": settings.steps,
        "minutes": settings.minutes,
        "patch_size": settings.patch_size,
        "batch_size": batch_size,
        "lr": settings.lr,
        "optimizer": f"AdamW(weight_decay={WEIGHT_DECAY}), warm-up + cosine",
        "stain_jitter": settings.stain_jitter,
        "ema": settings.ema,
        "freeze_batch_norm": settings.freeze_batch_norm,
        "seed": settings.seed,
        "device": str(device),
        "precision": precision,
        "elapsed_s": round(budget.elapsed(), 1),
        "train_images": list(run["train_images"]),
        "init_weights": run["init_weights"],
        "init_sha256": run["init_sha256"],
        "machine": device_name(device),
    }
    if validation is not None:
        meta.update(
            val_images=validation.names,
            val_crop=settings.val_crop,
            val_crops=len(validation.clean),
            val_noisy_psnr=round(validation.noisy_psnr, 4),
            val_noisy_ssim=round(validation.noisy_ssim, 4),
            best_val_psnr=round(best[0], 4),
            best_val_ssim=round(best[1], 4),
            best_step=best[2],
        )
    meta[LINEAGE_KEY] = lineage(run["parents"], chunk(meta))
    return meta
