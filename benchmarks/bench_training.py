"""Benchmark of training speed: seconds per step of ``iter_train`` on the current device.

Runs a few steps of the basic and/or deep model through the real training loop (patch
sampling, synthetic noise, AdamW; ``--precision auto``: bf16 + channels_last on CUDA and on
CPUs with native bf16) on the bundled CMU-1 H&E region, skips the first steps (warm-up,
cuDNN autotuning) and prints a markdown table with seconds per step, patches per second
and how many steps fit in 10 minutes, which is what sizes a time-boxed training run::

    python benchmarks/bench_training.py --models basic deep --patch-size 128 --batch-size 32
    python benchmarks/bench_training.py --patch-size 64 --batch-size 4 --steps 6   # a CPU

Random weights are fine for speed: the work per step does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SVS = Path(__file__).resolve().parents[1] / "src/napari_histo_denoise/data/cmu1_small_region.svs"


def seconds_per_step(model: str, args: argparse.Namespace) -> dict:
    """Train ``args.steps`` steps and time the ones after ``args.warmup``."""
    import tifffile
    import torch

    from napari_histo_denoise.devices import resolve_device
    from napari_histo_denoise.training import iter_train

    image = tifffile.imread(SVS, key=0)
    stamps = []
    events = iter_train(
        image,
        model,
        steps=args.steps,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        mode=args.mode,
    )
    for _event in events:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    timed = stamps[args.warmup :]
    per_step = (timed[-1] - timed[0]) / (len(timed) - 1)
    return {
        "model": model,
        "device": str(resolve_device(args.device)),
        "mode": args.mode,
        "patch": args.patch_size,
        "batch": args.batch_size,
        "s_per_step": per_step,
        "patches_per_s": args.batch_size / per_step,
        "steps_in_10_min": int(600 / per_step),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["basic"], choices=("basic", "deep"))
    parser.add_argument("--mode", default="synthetic", choices=("synthetic", "self-supervised"))
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30, help="steps per model, warm-up included")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.steps < args.warmup + 2:
        parser.error("--steps must exceed --warmup by at least 2")

    rows = [seconds_per_step(model, args) for model in args.models]
    print("| model | device | mode | patch x batch | s/step | patches/s | steps in 10 min |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['device']} | {r['mode']} | {r['patch']} x {r['batch']} | "
            f"{r['s_per_step']:.3f} | {r['patches_per_s']:.1f} | {r['steps_in_10_min']:,} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
