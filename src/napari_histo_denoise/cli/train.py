"""``histo-denoise train``: train the basic or deep model on your images, save the weights."""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ..settings import MODEL_NAMES, PRECISIONS, TRAIN_MODES, TRAIN_PRESETS, TrainSettings
from .progress_line import ProgressLine

_DEFAULTS = TrainSettings.__dataclass_fields__  # one source for the defaults shown in --help


def _default(name: str) -> object:
    return _DEFAULTS[name].default


def _batch(text: str) -> int | None:
    return None if text == "auto" else int(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train the basic or deep model on your images and save the weights",
        description="Train on image files or folders (PNG, JPEG, TIFF, SVS: level 0). "
        "synthetic mode: clean images, fresh synthetic noise every step. self-supervised "
        "mode: noisy images only (Neighbor2Neighbor). With --val, PSNR/SSIM on fixed noisy "
        "crops of clean validation images are measured during training and the best "
        "weights are saved. --preset release is the recipe of the bundled weights; options "
        "given explicitly override a preset's. Ctrl-C stops after the current step and keeps "
        "the run's state (OUTPUT.state.safetensors) for --resume.",
    )
    # Options default to "not given" so that a preset can fill them; --help shows the
    # defaults used without a preset.
    add = functools.partial(_add_option, parser)
    parser.add_argument(
        "--images", nargs="+", required=True, metavar="PATH", help="training image files/folders"
    )
    parser.add_argument(
        "--model", choices=MODEL_NAMES, help="architecture (default basic, or the resumed run's)"
    )
    parser.add_argument(
        "--preset", choices=tuple(TRAIN_PRESETS), help="a named recipe (see docs/training.md)"
    )
    add("--mode", choices=TRAIN_MODES)
    add(
        "--noise",
        help="noise spec, e.g. gaussian:25, gaussian:15-50, poisson-gaussian:0-55, mix; in "
        "self-supervised mode only for --val",
    )
    add("--steps", type=int, help="optimiser steps (the most, with --minutes)")
    add("--minutes", type=float, help="wall-clock budget; the schedule follows it")
    add("--patch-size", type=int, metavar="PX")
    add("--batch-size", type=_batch, metavar="N|auto", help="auto: largest that fits (CUDA)")
    add("--lr", type=float, help="peak learning rate")
    add("--clean-fraction", type=float, help="share of patches left without noise")
    add("--stain-jitter", type=float, help="stain and brightness jitter strength")
    add("--ema", type=float, help="decay of a weight average that is validated and saved")
    add(
        "--freeze-batch-norm",
        action=argparse.BooleanOptionalAction,
        help="train with batch norm's running statistics, unchanged (fine-tuning, small batches)",
    )
    add(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="train through torch.compile",
    )
    parser.add_argument("--val", nargs="+", metavar="PATH", help="clean validation images/folders")
    add("--val-every", type=int, metavar="STEPS", help="validation interval")
    add("--val-crop", type=int, metavar="PX")
    add("--val-crops", type=int, metavar="N")
    add("--device")
    add("--precision", choices=PRECISIONS)
    add("--seed", type=int)
    parser.add_argument(
        "--init-weights",
        type=Path,
        metavar="FILE",
        help="start from these weights (fine-tune: a new optimiser and schedule)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="STATE",
        help="go on with an interrupted run from its state file (NAME.state.safetensors), "
        "exactly as if it had not stopped; options not given are the run's",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="weights file to write (.safetensors); beside it NAME.json (metadata and history), "
        "NAME.curves.png (the curves) and, while the run is unfinished, NAME.state.safetensors",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write the compact int8 weights beside --output (NAME.int8.safetensors)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.set_defaults(run=run)


def _add_option(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Add a TrainSettings option that is absent from the namespace unless given."""
    name = flag.lstrip("-").replace("-", "_")
    default = _default(name)
    shown = {None: "none", True: "on", False: "off"}.get(default, default)
    kwargs["help"] = f"{kwargs.get('help', '')} (default {shown})".lstrip()
    parser.add_argument(flag, default=argparse.SUPPRESS, **kwargs)


def settings_from_args(
    args: argparse.Namespace, resumed: dict[str, object] | None = None
) -> dict[str, object]:
    """TrainSettings fields: the options given, else the resumed run's, the preset's, defaults."""
    options = {name: field.default for name, field in _DEFAULTS.items()}
    options.update(TRAIN_PRESETS.get(args.preset, {}))
    options.update(resumed or {})
    options.update({k: v for k, v in vars(args).items() if k in _DEFAULTS})
    if isinstance(options["noise"], str) and options["noise"].lower() == "none":
        options["noise"] = None
    return options


def outputs(output: Path, int8: bool) -> list[Path]:
    """The files a run writes: the weights, the report, the curves, the int8 weights if asked."""
    from ..train_report import curves_path, int8_path, report_path

    files = [output, report_path(output), curves_path(output)]
    return [*files, int8_path(output)] if int8 else files


def run(args: argparse.Namespace) -> int:
    """Train, showing a progress line, and save the weights, report, curves and int8 weights."""
    from ..train_report import state_path
    from ..train_state import read_info

    files = outputs(args.output, args.int8)
    state = state_path(args.output)
    existing = [f for f in files if f.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"{existing[0]} exists; pass --overwrite to replace it")
    if not args.output.parent.is_dir():
        raise FileNotFoundError(f"folder {args.output.parent} does not exist")
    resuming_here = args.resume is not None and args.resume.resolve() == state.resolve()
    if state.exists() and not resuming_here:
        if not args.overwrite:
            raise ValueError(
                f"{state} holds an interrupted run: go on with --resume {state}, or pass "
                "--overwrite to start afresh"
            )
        state.unlink()
    info = read_info(args.resume) if args.resume is not None else {}
    options = settings_from_args(args, info.get("settings"))
    model = args.model or info.get("architecture", "basic")

    from ..engine import Cancelled
    from ..events import drain
    from ..training import iter_train

    stop = threading.Event()
    events = iter_train(
        args.images,
        model,
        val_images=args.val,
        init_weights=args.init_weights,
        resume=args.resume,
        state=state,
        cancel=stop,
        **options,
    )
    bar = ProgressLine(sys.stderr)
    try:
        with _stop_on_interrupt(stop):
            result = drain(events, bar.show)
    except Cancelled as exc:
        bar.close()
        kept = f"the run's state is in {state}; go on with --resume {state}"
        print(f"{exc}; {kept if state.exists() else 'nothing was kept'}", file=sys.stderr)
        return 130
    bar.close()
    result.save(args.output, int8=args.int8)
    meta = result.metadata
    summary = f"trained {meta['steps']} steps in {meta['elapsed_s']:.0f} s on {meta['device']}"
    if "best_val_psnr" in meta:
        summary += (
            f"; validation PSNR {meta['best_val_psnr']:.2f} dB, SSIM {meta['best_val_ssim']:.3f} "
            f"(step {meta['best_step']}; noisy input {meta['val_noisy_psnr']:.2f} dB)"
        )
    print(summary)
    print(f"wrote {', '.join(map(str, files))}")
    return 0


@contextlib.contextmanager
def _stop_on_interrupt(stop: threading.Event) -> Iterator[None]:
    """Make the first Ctrl-C set ``stop`` (the run ends after its step); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: object) -> None:
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
