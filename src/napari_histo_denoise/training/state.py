"""A run's resumable state: taken after a step, put back, and checked against the new run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..settings import TrainSettings
from ..train_state import TrainState, prefixed
from .history import Record
from .loop import Loop
from .schedule import Budget

#: Settings a resumed run may change: where and how fast it runs, not what it computes
#: (with another device or precision the figures still differ in the last bits).
RESUME_MAY_CHANGE = ("device", "precision", "compile")


def snapshot(
    settings: TrainSettings,
    run: dict[str, Any],
    loop: Loop,
    budget: Budget,
    record: Record,
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


def restore(
    state: TrainState,
    loop: Loop,
    budget: Budget,
    record: Record,
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


def check_resumable(info: dict[str, Any], settings: TrainSettings, path: Any) -> None:
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


def check_same_run(info: dict[str, Any], run: dict[str, Any], path: Any) -> None:
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
