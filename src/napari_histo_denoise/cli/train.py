"""``histo-denoise train``: train the basic or deep model on your images, save the weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..settings import PRECISIONS, TRAIN_MODES, TrainSettings

_DEFAULTS = TrainSettings.__dataclass_fields__  # one source for the defaults shown in --help


def _default(name: str) -> object:
    return _DEFAULTS[name].default


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train the basic or deep model on your images and save the weights",
        description="Train on image files or folders (PNG, JPEG, TIFF, SVS: level 0). "
        "synthetic mode: clean images, fresh synthetic noise every step. self-supervised "
        "mode: noisy images only (Neighbor2Neighbor). With --val, PSNR/SSIM on fixed noisy "
        "crops of clean validation images are measured during training and the best "
        "weights are saved.",
    )
    parser.add_argument(
        "--images", nargs="+", required=True, metavar="PATH", help="training image files/folders"
    )
    parser.add_argument("--model", choices=("basic", "deep"), default="basic")
    parser.add_argument("--mode", choices=TRAIN_MODES, default=_default("mode"))
    parser.add_argument(
        "--noise",
        default=_default("noise"),
        help="noise spec, e.g. gaussian:25, gaussian:15-50, poisson:30, mix "
        f"(default {_default('noise')}); in self-supervised mode only for --val",
    )
    parser.add_argument("--steps", type=int, default=_default("steps"))
    parser.add_argument("--patch-size", type=int, default=_default("patch_size"), metavar="PX")
    parser.add_argument("--batch-size", type=int, default=_default("batch_size"))
    parser.add_argument("--lr", type=float, default=_default("lr"), help="peak learning rate")
    parser.add_argument("--val", nargs="+", metavar="PATH", help="clean validation images/folders")
    parser.add_argument("--val-every", type=int, metavar="STEPS", help="validation interval")
    parser.add_argument("--val-crop", type=int, default=_default("val_crop"), metavar="PX")
    parser.add_argument("--val-crops", type=int, default=_default("val_crops"), metavar="N")
    parser.add_argument("--device", default=_default("device"))
    parser.add_argument("--precision", choices=PRECISIONS, default=_default("precision"))
    parser.add_argument("--seed", type=int, default=_default("seed"))
    parser.add_argument(
        "--init-weights", type=Path, metavar="FILE", help="start from these weights (resume)"
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="weights file to write (.safetensors)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train, showing a progress line, and save the weights with their metadata."""
    if args.output.exists() and not args.overwrite:
        raise ValueError(f"{args.output} exists; pass --overwrite to replace it")
    if not args.output.parent.is_dir():
        raise FileNotFoundError(f"folder {args.output.parent} does not exist")
    noise = None if args.noise.lower() == "none" else args.noise

    from ..checkpoint import save_weights
    from ..events import drain
    from ..training import iter_train

    events = iter_train(
        args.images,
        args.model,
        mode=args.mode,
        noise=noise,
        steps=args.steps,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        lr=args.lr,
        val_images=args.val,
        val_every=args.val_every,
        val_crop=args.val_crop,
        val_crops=args.val_crops,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        init_weights=args.init_weights,
    )
    bar = _ProgressLine(sys.stderr)
    result = drain(events, bar.show)
    bar.close()
    save_weights(args.output, result.model, result.metadata)
    meta = result.metadata
    summary = f"trained {meta['steps']} steps in {meta['elapsed_s']:.0f} s on {meta['device']}"
    if "best_val_psnr" in meta:
        summary += (
            f"; validation PSNR {meta['best_val_psnr']:.2f} dB, SSIM {meta['best_val_ssim']:.3f} "
            f"(step {meta['best_step']}; noisy input {meta['val_noisy_psnr']:.2f} dB)"
        )
    print(summary)
    print(f"wrote {args.output}")
    return 0


class _ProgressLine:
    """A one-line text progress bar: redrawn in place on a terminal, every 10% otherwise."""

    WIDTH = 24

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.best: float | None = None

    def show(self, event) -> None:
        if event.val_psnr is not None:
            self.best = event.val_psnr if self.best is None else max(self.best, event.val_psnr)
        tenth = max(1, event.steps // 10)
        if not self.tty and event.step % tenth and event.step != event.steps:
            return
        filled = self.WIDTH * event.step // event.steps
        bar = "#" * filled + "." * (self.WIDTH - filled)
        eta = event.elapsed_s / event.step * (event.steps - event.step)
        line = f"[{bar}] {event.step}/{event.steps} loss {event.loss:.5f}"
        if event.val_psnr is not None:
            line += f" val {event.val_psnr:.2f} dB (best {self.best:.2f})"
        line += f" {_clock(event.elapsed_s)} elapsed, {_clock(eta)} left"
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
