"""One run from its settings to its result: setup, resume, the steps and their checkpoints."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import resolve_device, resolve_precision
from ..events import Cancelled
from ..patches import PatchSampler
from ..settings import TrainSettings
from ..train_state import TrainState, read_state, write_state
from .batches import PATCH_WORKERS, prefetched
from .history import Record, TrainProgress, TrainResult, metadata
from .images import load_images
from .loop import Loop
from .model import describe_init, parentage, prepare_model
from .schedule import Budget
from .state import check_resumable, check_same_run, restore, snapshot
from .validation import Validation


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the learning rate is too high for this setup."""


class Run:
    """A run's parts and where it stands: ``done`` steps, whose validation may be ``owed``."""

    def __init__(
        self,
        settings: TrainSettings,
        images: Any,
        model: Any,
        val_images: Any,
        init_weights: Any,
        resume: Any,
    ) -> None:
        resumed = None
        if resume is not None:
            if init_weights is not None:
                raise ValueError("resume continues a run from its own weights; drop init_weights")
            resumed = read_state(resume)
            check_resumable(resumed.info, settings, resume)
        self.settings, self.resume = settings, resume
        self.device = resolve_device(settings.device)
        self.precision = resolve_precision(settings.precision, self.device)
        net, architecture, parent_meta = prepare_model(model, init_weights, settings.seed)
        arrays, names = load_images(images, what="images")
        self.sampler = PatchSampler(arrays, names, settings.patch_size)
        self.validation = None
        if val_images is not None:
            val_arrays, val_names = load_images(val_images, what="val_images")
            self.validation = Validation(val_arrays, val_names, settings)
        self.budget = Budget(settings)
        warm = init_weights is not None or (resumed is not None and resumed.info["init_weights"])
        batch_size = resumed.info["batch_size"] if resumed else None
        self.loop = Loop(
            net, settings, self.device, self.precision, batch_size, warm_start=bool(warm)
        )
        self.record = Record()
        # Separate streams: patches are drawn in worker threads while the model trains; noise
        # and stain jitter are drawn from the step stream.
        self.patch_rng, self.step_rng = (np.random.default_rng([settings.seed, i]) for i in (0, 1))
        self.info = {
            "architecture": architecture,
            "train_images": names,
            "val_images": None if self.validation is None else self.validation.names,
            "init_weights": describe_init(init_weights),
            **parentage(init_weights, parent_meta),
        }
        self.done, self.owed = 0, self.validation is not None
        if resumed is not None:
            self._resume(resumed)
        self.patch_state = self.patch_rng.bit_generator.state  # the patch stream after `done`
        self.last = False

    def _resume(self, resumed: TrainState) -> None:
        check_same_run(resumed.info, self.info, self.resume)
        self.info.update({k: resumed.info[k] for k in ("init_weights", "init_sha256", "parents")})
        self.done, self.owed = restore(
            resumed, self.loop, self.budget, self.record, self.patch_rng, self.step_rng
        )

    def snapshot(self) -> TrainState:
        """The resumable state of the run as it stands."""
        return snapshot(
            self.settings,
            self.info,
            self.loop,
            self.budget,
            self.record,
            self.done,
            self.owed,
            self.patch_state,
            self.step_rng,
        )

    def validate(self, step: int, is_cancelled: Callable[[], bool]) -> None:
        """Validate after ``step``; the validation stays owed until it completes."""
        self.owed = True
        self.record.validate(step, self.validation, self.loop, is_cancelled)
        self.owed = False

    def result(self) -> TrainResult:
        """The trained model (best validation weights when validated) and its metadata."""
        best = self.record.best
        trained = self.loop.finish(best[3] if best is not None else None)
        meta = metadata(
            self.settings,
            self.info,
            self.validation,
            best,
            self.device,
            self.precision,
            self.budget,
            self.done,
            self.loop.batch_size,
        )
        if self.resume is not None:
            meta["resumed_from"] = str(self.resume)
        return TrainResult(trained, meta, self.record.history)


def run_steps(
    run: Run,
    is_cancelled: Callable[[], bool],
    progress: Callable[[TrainProgress], None] | None,
    state: Any,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train ``run`` to its end, yielding a :class:`TrainProgress` after every step.

    Its resumable state goes to ``state`` (when given) at every validation point and when
    the run is cancelled or closed; the file is deleted once the run completes.
    """
    settings = run.settings
    workers = 1 if run.device.type == "cpu" else PATCH_WORKERS
    batches = prefetched(
        run.sampler, run.loop.batch_size, run.patch_rng, settings.steps - run.done, workers
    )
    try:
        with contextlib.closing(batches):
            if run.owed:
                run.validate(run.done, is_cancelled)
            for step, (batch, drawn) in enumerate(batches, start=run.done + 1):
                if is_cancelled():
                    raise Cancelled(
                        f"training cancelled after {run.done} of {settings.steps} steps"
                    )
                event = _step(run, step, batch, drawn, is_cancelled, state)
                if progress is not None:
                    progress(event)
                yield event
                if run.last:
                    break
    except (Cancelled, GeneratorExit):
        if state is not None and run.done > 0 and not run.last:
            write_state(state, run.snapshot())
        raise
    result = run.result()
    if state is not None:
        Path(state).unlink(missing_ok=True)  # a finished run has nothing left to resume
    return result


def _step(
    run: Run,
    step: int,
    batch: np.ndarray,
    drawn: dict[str, Any],
    is_cancelled: Callable[[], bool],
    state: Any,
) -> TrainProgress:
    """One optimiser step, its validation and state when due; the event that reports it."""
    loop, budget, history = run.loop, run.budget, run.record.history
    loss = loop.step(batch, run.step_rng, step, budget)
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged at step {step}: the loss is {loss}; lower lr "
            f"(now {run.settings.lr:g})"
        )
    history["loss"].append(loss)
    history["lr"].append(loop.last_lr)
    run.done, run.patch_state = step, drawn
    run.last = budget.finished(step)
    checkpoint = budget.validation_due(step) or run.last
    if run.validation is not None and checkpoint:
        run.validate(step, is_cancelled)
    if state is not None and checkpoint and not run.last:
        write_state(state, run.snapshot())
    latest = history["val"][-1] if history["val"] else {}
    return TrainProgress(
        step,
        run.settings.steps,
        loss,
        latest.get("psnr"),
        latest.get("ssim"),
        budget.elapsed(),
        budget.fraction(step),
        loop.last_lr,
        latest.get("step"),
    )
