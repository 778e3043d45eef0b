"""Benchmark of whole-slide denoising (``python benchmarks/bench_slides.py``).

Cases, each run in a child process so that its peak RSS is its own:

- ``large``: a 100,000 x 100,000 RGB uint8 synthetic slide (30 GB, more than this machine's
  memory; generated lazily, chunk by chunk, as a pyramid with 70% white glass)
  streamed through :func:`denoise_slide` with a tiny module for ``--seconds`` seconds, then
  cancelled: throughput, peak RSS, tiles done, and the time the whole slide would take.
- ``pyramid``: an 8192 x 8192 synthetic slide denoised completely (tiny module) into an
  OME-Zarr pyramid, with and without ``tissue_only``: wall time and peak RSS.
- ``tissue``: the tissue-only speed-up with the basic model (random weights: the work does
  not depend on them) on the bundled CMU-1 slide (2220 x 2967) and on a 2048 x 3072
  synthetic slide with 70% background (tiles without tissue are skipped).

The device is ``auto`` (CUDA where it works). Figures go to stdout as markdown tables
(``--json PATH`` also writes them).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import SVS, tiny_module

CASES = ("large", "pyramid", "tissue")


def _pattern(block: np.ndarray, block_info=None, *, scale: int, width: int, tissue: float):
    """H&E-like texture left of ``tissue * width``, white glass with a little noise elsewhere."""
    (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
    y = (np.arange(y0, y1, dtype=np.float32) * scale)[:, None]
    x = (np.arange(x0, x1, dtype=np.float32) * scale)[None, :]
    wave = np.sin(y / 37.0) * np.cos(x / 23.0) + 0.5 * np.sin((x + y) / 11.0)
    out = np.empty(block.shape, dtype=np.uint8)
    for c, (base, amp) in enumerate(((180, 50), (110, 60), (170, 40))):
        out[..., c] = np.clip(base + amp * wave, 0, 255)
    glass = np.broadcast_to(x >= tissue * width, block.shape[:2])
    noise = (np.abs(np.sin(x * 12.9898 + y * 78.233)) * 8).astype(np.uint8)
    out[glass] = (238 + np.broadcast_to(noise, block.shape[:2])[glass])[:, None]
    return out


def synthetic_slide(height: int, width: int, *, tissue: float = 0.3) -> list:
    """A lazy RGB uint8 pyramid (level 0 first): nothing is generated until read."""
    import dask.array as da

    from napari_histo_denoise.slides import pyramid_depth

    pyramid = []
    for k in range(pyramid_depth((height, width))):
        shape = (-(-height // 2**k), -(-width // 2**k), 3)
        template = da.empty(shape, dtype=np.uint8, chunks=(2048, 2048, 3))
        pyramid.append(
            template.map_blocks(
                _pattern, scale=2**k, width=width, tissue=tissue, dtype=np.uint8, meta=np.array(())
            )
        )
    return pyramid


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed_slide(source, out: Path, **kwargs) -> dict:
    from napari_histo_denoise.engine import Cancelled
    from napari_histo_denoise.pipeline import denoise_slide

    done = [0, 1]
    start = time.perf_counter()
    deadline = kwargs.pop("seconds", None)
    cancel = (lambda: time.perf_counter() - start > deadline) if deadline else None

    def progress(d, t):
        done[:] = [d, t]

    finished = True
    try:
        denoise_slide(source, out, progress=progress, cancel=cancel, resume=False, **kwargs)
    except Cancelled:
        finished = False
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "fraction": done[0] / done[1], "finished": finished}


def case_large(args, tmp: Path) -> list[dict]:
    import psutil

    size = args.large_size
    slide = synthetic_slide(size, size)
    t0 = time.perf_counter()
    from napari_histo_denoise.slides import tissue_mask

    mask = tissue_mask(slide)
    mask_s = time.perf_counter() - t0
    run = _timed_slide(
        slide, tmp / "large.ome.zarr", model=tiny_module(), seconds=args.seconds, overwrite=True
    )
    pixels = run["fraction"] * size * size  # tiles done, as a share of the slide's pixels
    rate = pixels / run["seconds"]
    return [
        {
            "case": f"{size:,} x {size:,} RGB uint8 synthetic, tiny module",
            "slide GB": round(size * size * 3 / 1e9, 1),
            "machine RAM GB": round(psutil.virtual_memory().total / 1e9, 1),
            "ran s": round(run["seconds"], 1),
            "Mpx done": round(pixels / 1e6, 1),
            "Mpx/s": round(rate / 1e6, 2),
            "whole slide h (extrapolated)": round(size * size / rate / 3600, 1),
            "tissue mask s": round(mask_s, 2),
            "tissue fraction": round(float(mask.mean()), 3),
            "peak RSS MB": round(_peak_rss_mb()),
        }
    ]


def case_pyramid(args, tmp: Path) -> list[dict]:
    size = args.pyramid_size
    rows = []
    for tissue_only in (False, True):
        run = _timed_slide(
            synthetic_slide(size, size),
            tmp / f"p{tissue_only}.ome.zarr",
            model=tiny_module(),
            tissue_only=tissue_only,
            overwrite=True,
        )
        rows.append(
            {
                "case": f"{size:,}^2 synthetic, 70% glass, tiny module",
                "tissue_only": tissue_only,
                "s (level 0 + pyramid)": round(run["seconds"], 1),
                "Mpx/s": round(size * size / run["seconds"] / 1e6, 2),
                "peak RSS MB so far": round(_peak_rss_mb()),
            }
        )
    return rows


def case_tissue(args, tmp: Path) -> list[dict]:
    import torch

    from napari_histo_denoise.models import build_model

    torch.manual_seed(0)
    model = tiny_module() if args.model == "tiny" else build_model(args.model).eval()
    tiles = [0]
    model.register_forward_pre_hook(
        lambda _, inputs: tiles.__setitem__(0, tiles[0] + len(inputs[0]))
    )
    sources = {
        "CMU-1 (2220 x 2967)": SVS,
        "synthetic 2048 x 3072, 70% glass": synthetic_slide(2048, 3072),
    }
    rows = []
    for name, source in sources.items():
        times, counts = {}, {}
        for tissue_only in (False, True):
            tiles[0] = 0
            run = _timed_slide(
                source, tmp / "t.ome.zarr", model=model, tissue_only=tissue_only, overwrite=True
            )
            times[tissue_only], counts[tissue_only] = run["seconds"], tiles[0]
        rows.append(
            {
                "slide": name,
                "model": args.model,
                "all tiles s": round(times[False], 1),
                "tissue only s": round(times[True], 1),
                "speed-up": round(times[False] / times[True], 2),
                "tiles all / tissue only": f"{counts[False]} / {counts[True]}",
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of rows sharing keys."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seconds", type=float, default=120.0, help="time on the large slide")
    parser.add_argument("--large-size", type=int, default=100_000)
    parser.add_argument("--pyramid-size", type=int, default=8192)
    parser.add_argument(
        "--model",
        choices=("basic", "deep", "tiny"),
        default="basic",
        help="model of the tissue case (tiny: tile counts in seconds, times not representative)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            rows = globals()[f"case_{args.child}"](args, Path(tmp))
        print(json.dumps(rows))
        return 0
    results = {}
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--cases"]
    passthrough = [a for a in passthrough if a not in CASES]
    for case in args.cases:
        child = subprocess.run(
            [sys.executable, __file__, *passthrough, "--child", case],
            capture_output=True,
            text=True,
            check=True,
        )
        results[case] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"\n### {case}\n\n{table(results[case])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
