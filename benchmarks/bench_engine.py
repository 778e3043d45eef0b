"""Benchmark of the tiled denoising engine (run: ``histo-denoise bench`` or this file).

Sections (each prints a markdown table; ``--json`` also writes the figures):

- ``cpu``: the engine end to end on a 2048 x 2048 RGB uint8 H&E image (uint8 in, uint8 out,
  overlap included) for each CPU path: torch fp32, torch bf16 + channels_last, and where
  OpenVINO is installed OpenVINO fp32 and bf16, each with its speed-up over torch fp32 and
  the PSNR of its output against torch fp32's on a noisy crop (trained weights);
  ``--cpu-compile`` adds torch.compile.
- ``train``: training steps of the basic model on the CPU (``bench_training.py``: 128 px
  patches, batch 4) in fp32 and in bf16 + channels_last: patches per second, side by side.
- ``rss``: a 16384 x 16384 x 3 uint8 zarr on disk denoised into a zarr on disk with a tiny
  module, in a child process whose peak RSS is reported.
- ``gpu`` (only where CUDA works): 16384 x 16384 RGB uint8, host in and host out, basic and
  deep, bf16 + channels_last (``--compile`` adds torch.compile), the bare forward for
  comparison, PSNR against the fp32 CPU result on a 512 x 512 crop, and MONAI's
  ``sliding_window_inference`` on the same model when monai is installed.

Random weights are fine for throughput: the work does not depend on the weights. The PSNR
against fp32 needs trained ones: the bundled basic weights, else the release candidate
(``release_candidate/``), else ``--weights``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# torch and the engine are imported lazily (``histo-denoise --help`` loads this file).
SVS = Path(__file__).resolve().parents[1] / "src/napari_histo_denoise/data/cmu1_small_region.svs"


def histology(size: int) -> np.ndarray:
    """A size x size RGB uint8 image tiled from the bundled CMU-1 H&E region (real texture)."""
    import tifffile

    region = tifffile.imread(SVS, key=0)[:2048, :2048]
    reps = math.ceil(size / region.shape[0]), math.ceil(size / region.shape[1]), 1
    return np.ascontiguousarray(np.tile(region, reps)[:size, :size])


def tiny_module():
    """A 3 x 3 convolution close to the identity (the stand-in for scale tests)."""
    import torch
    from torch import nn

    conv = nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[range(3), range(3), 1, 1] = 1.0
        conv.bias.zero_()
    return conv.eval()


def bare_forward(model, image: np.ndarray, tile: int, device, dtype) -> float:
    """Seconds for the model alone on the image's pixels as non-overlapping tiles (batch 1)."""
    import torch

    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    size = image.shape[0]
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    start = time.perf_counter()
    with torch.inference_mode(), autocast:
        for y in range(0, size, tile):
            for x0 in range(0, size, tile):
                batch = x[None, :, y : y + tile, x0 : x0 + tile].to(device)
                if device.type == "cuda":
                    batch = batch.contiguous(memory_format=torch.channels_last)
                model(batch).float().cpu()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed_engine(image, model, **options) -> float:
    import torch

    from napari_histo_denoise import engine
    from napari_histo_denoise.events import drain

    start = time.perf_counter()
    result = drain(engine.iter_denoise(image, model, **options))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    assert result.shape == image.shape and result.dtype == image.dtype
    return time.perf_counter() - start


def cpu_paths() -> list[tuple[str, str]]:
    """The (backend, precision) pairs a CPU can run here: torch, and OpenVINO where installed."""
    from napari_histo_denoise.devices import openvino_installed

    backends = ["torch", *(["openvino"] if openvino_installed() else [])]
    return [(b, p) for b in backends for p in ("fp32", "bf16")]


def psnr_vs_fp32(model, backend: str, precision: str, size: int = 512) -> float:
    """PSNR of a path's output against torch fp32's (engine, noisy H&E crop, CPU)."""
    from skimage.metrics import peak_signal_noise_ratio

    from napari_histo_denoise import engine
    from napari_histo_denoise.noise import add_gaussian_noise

    clean = histology(size).astype(np.float32) / 255
    noisy = add_gaussian_noise(clean, 25, seed=0).astype(np.float32)
    options = dict(tile_size=256, overlap=32, device="cpu")
    outputs = [
        engine.denoise(noisy, model, precision=p, backend=b, **options).compute()
        for b, p in (("torch", "fp32"), (backend, precision))
    ]
    return peak_signal_noise_ratio(*(o.astype(np.float64) for o in outputs), data_range=1.0)


def section_cpu(args) -> list[dict]:
    """The engine end to end on the CPU for every backend and precision, against torch fp32."""
    import torch

    from napari_histo_denoise import pretrained
    from napari_histo_denoise.checkpoint import load_model
    from napari_histo_denoise.devices import resolve_backend, resolve_precision
    from napari_histo_denoise.engine.tiling import axis_grid
    from napari_histo_denoise.models import build_model

    size, tile = args.cpu_size, args.cpu_tile
    image = histology(size)
    weights = args.weights or pretrained.best_basic_weights()
    if weights is None:
        torch.manual_seed(0)
        model, label = build_model("basic").eval(), "random weights (no PSNR)"
    else:
        model, label = load_model(weights)[0], Path(weights).name
    grid = axis_grid(size, tile, args.overlap)
    computed = (len(grid.starts) * grid.tile) ** 2
    mpx = size * size / 1e6
    auto = resolve_backend("auto", "cpu"), resolve_precision("auto", "cpu")
    options = {"tile_size": tile, "overlap": args.overlap, "device": "cpu", "batch_size": 1}
    rows = []
    for backend, precision in cpu_paths():
        path = dict(precision=precision, backend=backend, **options)
        # Warm up on one tile: the model's copy (channels_last) or conversion and compile.
        timed_engine(image[:tile, :tile], model, **path)
        took = timed_engine(image, model, **path)
        layout = " + channels_last" if backend == "torch" and precision == "bf16" else ""
        chosen = " (auto)" if auto == (backend, precision) else ""
        rows.append(
            {
                "path": f"{backend} {precision}{layout}{chosen}",
                "s": took,
                "Mpx/s": mpx / took,
                "speed-up": rows[0]["s"] / took if rows else 1.0,
                "PSNR vs torch fp32 (dB)": "reference"
                if rows == []
                else "no trained weights"
                if weights is None
                else psnr_vs_fp32(model, backend, precision),
            }
        )
    if args.cpu_compile:  # torch.compile on the CPU: kept in the engine only if faster
        compiled = torch.compile(model)
        path = dict(precision="bf16", backend="torch", **options)
        warm = timed_engine(image[:tile, :tile], compiled, **path)  # compiles
        took = timed_engine(image, compiled, **path)
        rows.append(
            {
                "path": "torch bf16 + channels_last + torch.compile",
                "s": took,
                "Mpx/s": mpx / took,
                "speed-up": rows[0]["s"] / took,
                "compile s": warm,
            }
        )
    print(
        f"engine end to end, {size}^2 RGB uint8 H&E in and out, tile {tile}, overlap "
        f"{args.overlap} ({computed / size**2:.3f}x pixels computed), batch 1; PSNR on a noisy "
        f"512^2 crop with {label}"
    )
    return rows


def section_train(args) -> list[dict]:
    """Training on the CPU, fp32 against bf16 + channels_last (benchmarks/bench_training.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_training", Path(__file__).with_name("bench_training.py")
    )
    bench_training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_training)
    if args.train_steps < 1:
        raise SystemExit("--train-steps must be at least 1")
    rows = []
    for precision in ("fp32", "bf16"):
        options = argparse.Namespace(
            steps=args.train_steps + 3,  # 2 warm-up steps, then train_steps timed intervals
            warmup=2,
            patch_size=128,
            batch_size=args.train_batch,
            device="cpu",
            precision=precision,
            mode="synthetic",
        )
        figures = bench_training.seconds_per_step("basic", options)
        layout = " + channels_last" if precision == "bf16" else ""
        rows.append(
            {
                "what": f"training step {precision}{layout}, basic, batch {args.train_batch}, "
                f"128 px, {args.train_steps} timed steps",
                "s/step": figures["s_per_step"],
                "patches/s": figures["patches_per_s"],
            }
        )
    rows[1]["speed-up"] = rows[1]["patches/s"] / rows[0]["patches/s"]
    return rows


def rss_child(path: str, out: str, tile: int, overlap: int) -> None:
    import zarr

    from napari_histo_denoise import engine

    source = zarr.open_array(path, mode="r")
    start = time.perf_counter()
    engine.denoise_to_zarr(
        source, out, tiny_module(), tile_size=tile, overlap=overlap, device="cpu"
    )
    took = time.perf_counter() - start
    print(json.dumps({"s": took, "peak_rss_bytes": peak_rss()}))


def peak_rss() -> int:
    """Peak resident memory of this process in bytes.

    VmHWM belongs to the process's own address space; ``ru_maxrss`` would also count the
    parent's resident pages at fork time (Linux keeps it across fork and exec).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def section_rss(args) -> list[dict]:
    import zarr

    size = args.rss_size
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "in.zarr"
        source = zarr.create_array(
            path, shape=(size, size, 3), dtype="uint8", chunks=(1024, 1024, 3)
        )
        block = histology(min(size, 2048))
        step = block.shape[0]
        for y in range(0, size, step):
            for x in range(0, size, step):
                source[y : y + step, x : x + step] = block[: size - y, : size - x]
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "rss-child",
                str(path),
                str(Path(tmp) / "out.zarr"),
                str(args.tile),
                str(args.overlap),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        check = zarr.open_array(Path(tmp) / "out.zarr", mode="r")
        assert check.shape == (size, size, 3)
    return [
        {
            "what": f"{size}^2 x 3 uint8 zarr -> zarr, tiny module, tile {args.tile}, "
            f"overlap {args.overlap}",
            "s": figures["s"],
            "Mpx/s": size * size / 1e6 / figures["s"],
            "peak RSS (GB)": figures["peak_rss_bytes"] / 1e9,
        }
    ]


def section_gpu(args) -> list[dict]:
    import torch
    from skimage.metrics import peak_signal_noise_ratio

    from napari_histo_denoise import engine
    from napari_histo_denoise.events import drain
    from napari_histo_denoise.models import build_model

    device = torch.device("cuda")
    size, tile = args.gpu_size, args.gpu_tile
    image = histology(size)
    crop = image[:512, :512]
    rows = []
    for name in ("basic", "deep"):
        torch.manual_seed(0)
        model = build_model(name).eval()
        reference = drain(
            engine.iter_denoise(
                crop, model, tile_size=256, overlap=32, device="cpu", precision="fp32"
            )
        )
        gpu_model = model.to(device).to(memory_format=torch.channels_last)
        if args.compile:
            gpu_model = torch.compile(gpu_model)
        options = {
            "tile_size": tile,
            "overlap": args.overlap,
            "device": "cuda",
            "precision": "bf16",
        }
        # warm-up on one band's worth of rows: the same batch shapes as the timed run
        timed_engine(image[: 4 * tile], gpu_model, **options)
        took = timed_engine(image, gpu_model, **options)
        result = drain(
            engine.iter_denoise(
                crop, gpu_model, tile_size=256, overlap=32, device="cuda", precision="bf16"
            )
        )
        psnr = peak_signal_noise_ratio(reference, result, data_range=255)
        bare = bare_forward(gpu_model, image[:8192, :8192], tile, device, torch.bfloat16)
        mpx = size * size / 1e6
        label = f"{name}, bf16 + channels_last{' + compile' if args.compile else ''}"
        rows.append(
            {
                "what": f"engine {label}, tile {tile}, overlap {args.overlap}",
                "s": took,
                "Mpx/s": mpx / took,
                "PSNR vs fp32 CPU (dB)": psnr,
            }
        )
        rows.append(
            {
                "what": f"bare forward {label}, {tile}^2 tiles, batch 1, 8192^2",
                "s": bare,
                "Mpx/s": 8192**2 / 1e6 / bare,
            }
        )
        if name == "basic":
            rows += monai_rows(gpu_model, image[:8192, :8192], device)
        engine.clear_model_cache()
    return rows


def monai_rows(model, image: np.ndarray, device) -> list[dict]:
    import torch

    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        return [{"what": "MONAI sliding_window_inference: monai not installed", "s": float("nan")}]
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div(255)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        sliding_window_inference(x[..., :1024, :1024], (256, 256), 64, model, overlap=0.25)
        torch.cuda.synchronize()
        start = time.perf_counter()
        sliding_window_inference(x, (256, 256), 64, model, overlap=0.25, mode="gaussian")
        torch.cuda.synchronize()
    took = time.perf_counter() - start
    return [
        {
            "what": "MONAI sliding_window_inference, basic, 8192^2 already on GPU, "
            "overlap 0.25, bf16, batch 64",
            "s": took,
            "Mpx/s": image.shape[0] ** 2 / 1e6 / took,
        }
    ]


def table(title: str, rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"### {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [
            f"{v:.3g}" if isinstance(v, float) else str(v) for v in (row.get(k, "") for k in keys)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``p`` (shared with ``histo-denoise bench``)."""
    p.add_argument(
        "--sections",
        default="cpu,train,rss,gpu",
        help="comma-separated: cpu, train, rss, gpu (gpu is skipped without CUDA)",
    )
    p.add_argument("--cpu-size", type=int, default=2048, help="side of the cpu section's image")
    p.add_argument(
        "--cpu-tile",
        type=int,
        default=1040,
        help="2 x 2 tiles of 1040 with 32 overlap cover 2048 exactly",
    )
    p.add_argument(
        "--weights",
        type=Path,
        help="trained basic weights for the PSNR (default: bundled, else the candidate)",
    )
    p.add_argument(
        "--cpu-compile", action="store_true", help="also time torch.compile on the CPU (slow)"
    )
    p.add_argument("--train-steps", type=int, default=8, help="timed steps of the train section")
    p.add_argument(
        "--train-batch", type=int, default=4, help="patches per step of the train section"
    )
    p.add_argument("--rss-size", type=int, default=16384, help="side of the rss section's image")
    p.add_argument("--tile", type=int, default=256, help="tile of the rss section")
    p.add_argument("--overlap", type=int, default=32, help="overlap of the rss section")
    p.add_argument("--gpu-size", type=int, default=16384, help="side of the gpu section's image")
    p.add_argument("--gpu-tile", type=int, default=1024, help="tile of the gpu section")
    p.add_argument("--compile", action="store_true", help="torch.compile the GPU models")
    p.add_argument("--tmp", default=None, help="folder for the rss section's zarr files")
    p.add_argument("--json", type=Path, help="also write the figures here")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rss-child"]:
        rss_child(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the chosen sections and print their tables."""
    import torch

    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    sections = {
        "cpu": section_cpu,
        "train": section_train,
        "rss": section_rss,
        "gpu": section_gpu,
    }
    unknown = set(wanted) - set(sections)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    from napari_histo_denoise.devices import cpu_has_native_bf16, device_name

    print(
        f"torch {torch.__version__}; CPU: {device_name(torch.device('cpu'))}, native bf16: "
        f"{'yes' if cpu_has_native_bf16() else 'no'}; "
        f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
    figures = {}
    for name in wanted:
        if name == "gpu" and not torch.cuda.is_available():
            print("\n(gpu section skipped: CUDA is not available here)")
            continue
        figures[name] = sections[name](args)
        print("\n" + table(name, figures[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
