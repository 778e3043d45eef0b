"""Train the release basic model and measure everything its model card reports, in one run.

    python benchmarks/release.py --data DATA --out OUT --minutes 6 [--device cuda]
    python benchmarks/release.py --data DATA --out OUT --dry-run      # seconds, on a CPU
    python benchmarks/release.py ... --init-weights release_candidate/basic.int8.safetensors

DATA is what ``histo-denoise fetch-data DATA`` writes: ``train/`` (16 sources) and
``val/cmu1_small_region.svs`` (``--val`` names another, e.g. the slide as a PNG). The run

1. trains ``--preset release`` on every training image except ``stardist_histo_he.jpg``
   (held out by source), validating on the CMU-1 slide, for ``--minutes``; from the
   release candidate with ``--init-weights`` (a warm restart: fresh optimiser, warm-up
   and cosine schedule, so give it a lower ``--lr``), and resumable with ``--state``;
2. saves the fp32 weights in ``--scratch`` (too big to bring back from a device) and the
   int8 weights, split into parts of at most 16 MiB with their SHA-256, in OUT;
3. evaluates fp32 and int8 on the held-out images (stardist by source, CMU-1 val) at
   sigma 15 / 25 / 50 beside the noisy input and the classical baselines;
4. measures int8 against fp32 outputs, tiled (256 / 32) against whole-image output, and
   "no harm": the model on clean crops against those crops;
5. writes ``report.json`` (every figure), ``report.md`` (the tables), ``history.json``
   (the training record) and ``reference.npz`` (a small int8 output, so a CPU can check
   that the weights it loads give what the device gave) into OUT.

A warm restart also measures the weights it started from ("init") on the same crops, so that
``ship_weights.py`` compares the run with the candidate on equal terms. ``--measure`` measures
the run in OUT again (its fp32 weights in ``--scratch``) without training, e.g. after the
evaluation changed.

``benchmarks/ship_weights.py OUT --candidate`` then joins the parts and keeps them as the
release candidate (``release_candidate/``); ``ship_weights.py OUT --summary ...`` bundles
weights that passed the model card's rule in the package.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_histo_denoise.acceptance import no_harm_psnr
from napari_histo_denoise.checkpoint import file_sha256, load_model, save_weights
from napari_histo_denoise.engine import denoise
from napari_histo_denoise.evaluation import EvaluationReport, evaluate, tissue_crops
from napari_histo_denoise.events import drain
from napari_histo_denoise.metrics import psnr
from napari_histo_denoise.noise import add_gaussian_noise
from napari_histo_denoise.settings import TRAIN_PRESETS
from napari_histo_denoise.training import iter_train, load_images

HELD_OUT = "stardist_histo_he.jpg"
VAL = "val/cmu1_small_region.svs"
SIGMAS = (15, 25, 50)
WEIGHTS = "basic.int8.safetensors"
PART_BYTES = 16 * 2**20
TILE, OVERLAP = 256, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="from histo-denoise fetch-data")
    parser.add_argument("--out", type=Path, required=True, help="small files to keep")
    parser.add_argument("--scratch", type=Path, help="fp32 weights (default: OUT/../scratch)")
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget")
    parser.add_argument("--batch-size", type=int, help="default: the preset's (auto)")
    parser.add_argument("--lr", type=float, help="default: the preset's")
    parser.add_argument("--clean-fraction", type=float, help="default: the preset's")
    parser.add_argument(
        "--init-weights", type=Path, help="warm restart: start from these weights (any dtype)"
    )
    parser.add_argument(
        "--state", type=Path, help="training state written at each validation (for --resume)"
    )
    parser.add_argument("--resume", type=Path, help="go on from a --state file")
    parser.add_argument(
        "--freeze-batch-norm", action="store_true", help="fine-tuning with small batches"
    )
    parser.add_argument("--val", default=VAL, help=f"validation image in DATA (default {VAL})")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crops", type=int, default=4, help="256 px crops per held-out image")
    parser.add_argument(
        "--baselines",
        default="nlm,tv,wavelet",
        help="comma-separated baselines (cbm3d too, where bm3d is installed), or none",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="seconds: tiny budget, crops and images"
    )
    parser.add_argument(
        "--measure", action="store_true", help="measure the run in OUT again, no training"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.scratch or args.out.parent / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    size = dict(crop=64, whole=384) if args.dry_run else dict(crop=256, whole=1024)

    train_files = sorted(p for p in (args.data / "train").iterdir() if p.name != HELD_OUT)
    held_out = [args.data / "train" / HELD_OUT, args.data / args.val]
    options = dict(TRAIN_PRESETS["release"], device=args.device, seed=args.seed)
    options.update(minutes=args.minutes, val_crop=size["crop"], init_weights=args.init_weights)
    chosen = {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "clean_fraction": args.clean_fraction,
        "freeze_batch_norm": args.freeze_batch_norm or None,
    }
    options.update({k: v for k, v in chosen.items() if v is not None})
    if args.dry_run:
        options.update(minutes=0.05, steps=2, patch_size=32, batch_size=2, val_crops=1)
    if args.measure:
        fp32_path, model, metadata, trained = _earlier_run(args.out, scratch)
    else:
        print(f"training on {len(train_files)} images for {options['minutes']} min", flush=True)
        result = drain(
            iter_train(
                [str(p) for p in train_files],
                "basic",
                val_images=[str(held_out[1])],
                state=args.state,
                resume=args.resume,
                **options,
            ),
            _print_progress,
        )
        model, metadata = result.model, result.metadata
        trained = {"command": shlex.join(["python", *sys.argv])}
        fp32_path = save_weights(scratch / "basic.safetensors", model, metadata)
        _save_json(args.out / "history.json", {"metadata": metadata, **result.history})
    int8_path = save_weights(args.out / WEIGHTS, model, metadata, dtype="int8")
    parts = _split(int8_path)  # first: the weights come back even if an evaluation fails
    int8_model, _ = load_model(int8_path)
    fp32_model = model.cpu().eval()
    device = "cpu" if args.dry_run else args.device
    init = _init_model(args.init_weights or metadata.get("init_weights"), metadata)

    print("evaluating fp32 and int8 on the held-out images", flush=True)
    crops = 1 if args.dry_run else args.crops
    common = dict(crop=size["crop"], crops_per_image=crops, seed=args.seed, device=device)
    names = [] if args.baselines == "none" else args.baselines.split(",")
    fp32_report = evaluate(fp32_model, held_out, SIGMAS, names, label="basic fp32", **common)
    models = {"fp32": fp32_model, "int8": int8_model}
    if init is not None:  # the columns read fp32, int8, init
        models["init"] = init
        init_report = evaluate(init, held_out, SIGMAS, False, label="init", **common)
        fp32_report = _merge(fp32_report, init_report)
    int8_report = evaluate(int8_model, held_out, SIGMAS, False, label="basic int8", **common)
    report = _merge(fp32_report, int8_report)

    sources, clean = _crops(held_out, size["crop"], crops, args.seed)
    figures = {
        "int8_vs_fp32_psnr": _int8_vs_fp32(fp32_model, int8_model, clean, device, args.seed),
        "tiled_vs_whole_psnr": _tiled_vs_whole(fp32_model, held_out[1], size["whole"], device),
        "no_harm_psnr": {
            name: _no_harm(model, sources, clean, device) for name, model in models.items()
        },
    }
    np.savez_compressed(args.out / "reference.npz", **_reference(int8_model, clean[0], device))
    record = {
        "weights": {
            "file": WEIGHTS,
            "bytes": int8_path.stat().st_size,
            "sha256": file_sha256(int8_path),
            "parts": parts,
            "fp32_sha256": file_sha256(fp32_path),
            "init_sha256": metadata.get("init_sha256"),  # kept across --resume
        },
        "training": metadata,
        "evaluation": report.to_dict(),
        **figures,
        "machine": _machine(device),
        **trained,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "seconds": round(time.perf_counter() - started, 1),
    }
    _save_json(args.out / "report.json", record)
    (args.out / "report.md").write_text(_markdown(record, report), encoding="utf-8")
    int8_path.unlink()  # the parts carry it back
    written = ", ".join(sorted(p.name for p in args.out.iterdir()))
    print(f"done in {record['seconds']:.0f} s; wrote {written}")


def _earlier_run(out: Path, scratch: Path) -> tuple[Path, torch.nn.Module, dict, dict]:
    """The fp32 weights of the run in ``out``, checked against its report, and how it ran."""
    earlier = json.loads((out / "report.json").read_text(encoding="utf-8"))
    fp32_path = scratch / "basic.safetensors"
    if file_sha256(fp32_path) != earlier["weights"]["fp32_sha256"]:
        raise SystemExit(f"{fp32_path} is not the fp32 weights of the run in {out}")
    trained = {"command": earlier["command"], "measured_by": shlex.join(["python", *sys.argv])}
    return fp32_path, load_model(fp32_path)[0], earlier["training"], trained


def _init_model(path: str | Path | None, metadata: dict) -> torch.nn.Module | None:
    """The weights a warm restart started from, if they are still there unchanged."""
    if path is None or not Path(path).is_file():
        return None
    if file_sha256(path) != metadata.get("init_sha256"):
        return None
    return load_model(path)[0]


def _print_progress(event) -> None:
    if event.val_psnr is not None and (event.step % 50 == 0 or event.fraction >= 1):
        print(
            f"step {event.step} ({event.fraction:.0%}, {event.elapsed_s:.0f} s) loss "
            f"{event.loss:.5f} val {event.val_psnr:.2f} dB",
            flush=True,
        )


def _merge(first: EvaluationReport, second: EvaluationReport) -> EvaluationReport:
    """One report with both models' columns (the noisy input and baselines once)."""
    extra = [m for m in second.methods if m not in first.methods]
    rows = first.rows + [r for r in second.rows if r.method in extra]
    methods = [first.methods[0], first.methods[1], *extra, *first.methods[2:]]
    return EvaluationReport(rows, methods, first.settings)


def _crops(
    images: list[Path], crop: int, per_image: int, seed: int
) -> tuple[list[str], list[np.ndarray]]:
    """The evaluation's clean crops and the name of each one's source."""
    found = tissue_crops([str(p) for p in images], crop, per_image, seed)
    return [source for _, source, *_ in found], [c for *_, c in found]


def _run(model, image: np.ndarray, device: str, precision: str = "auto") -> np.ndarray:
    """The model through the engine, as users run it (``precision="auto"`` unless given)."""
    out = denoise(
        image.astype(np.float32),
        model,
        tile_size=TILE,
        overlap=OVERLAP,
        device=device,
        precision=precision,
    )
    return np.asarray(out.compute(), dtype=np.float64)


def _int8_vs_fp32(fp32, int8, crops, device, seed) -> dict[str, float]:
    """Quantisation alone: both in fp32 arithmetic, on noisy held-out crops."""
    values = []
    for index, clean in enumerate(crops):
        for sigma in SIGMAS:
            noisy = add_gaussian_noise(clean, sigma, seed=[seed, index, sigma])
            values.append(
                psnr(_run(fp32, noisy, device, "fp32"), _run(int8, noisy, device, "fp32"))
            )
    return {"min": min(values), "mean": float(np.mean(values)), "pairs": len(values)}


def _tiled_vs_whole(model, slide: Path, size: int, device: str) -> dict[str, float]:
    """The engine (tile 256, overlap 32) against one forward pass over a whole crop."""
    image = load_images([str(slide)])[0][0]
    top, left = (np.array(image.shape[:2]) - size) // 2
    clean = np.asarray(image[top : top + size, left : left + size, :3], dtype=np.float32) / 255
    noisy = add_gaussian_noise(clean, 25, seed=0).astype(np.float32)
    dev = torch.device(
        "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    )
    with torch.inference_mode():
        batch = torch.from_numpy(noisy).permute(2, 0, 1)[None].to(dev)
        whole = model.to(dev)(batch)[0].permute(1, 2, 0).float().cpu().numpy()
    model.cpu()
    tiled = _run(model, noisy, device, "fp32")
    return {"size": size, "psnr": psnr(whole, tiled), "whole_vs_clean": psnr(clean, whole)}


def _no_harm(model, sources: list[str], crops: list[np.ndarray], device: str) -> dict:
    """PSNR of the model's output on clean crops against those crops (higher: less harm)."""
    # fp32, as the ship check measures it (histo-denoise ship-check).
    options = dict(tile_size=TILE, overlap=OVERLAP, device=device, precision="fp32")
    values = no_harm_psnr(model, crops, **options)
    by_source: dict[str, float] = {}
    for source, value in zip(sources, values, strict=True):
        by_source[source] = min(value, by_source.get(source, value))
    return {
        "min": min(values),
        "mean": float(np.mean(values)),
        "crops": len(values),
        "min_by_source": by_source,
    }


def _reference(model, clean: np.ndarray, device: str) -> dict[str, np.ndarray]:
    noisy = (add_gaussian_noise(clean, 25, seed=0) * 255).round().astype(np.uint8)
    denoised = _run(model, noisy / 255, device, "fp32")
    return {"noisy": noisy, "denoised": (denoised * 255).round().astype(np.uint8)}


def _split(path: Path) -> list[dict[str, object]]:
    """Write ``path`` as ``path.partNN`` files of at most PART_BYTES; return name and SHA-256."""
    data, parts = path.read_bytes(), []
    for index, start in enumerate(range(0, len(data), PART_BYTES)):
        part = path.with_name(f"{path.name}.part{index:02d}")
        chunk = data[start : start + PART_BYTES]
        part.write_bytes(chunk)
        parts.append({"file": part.name, "sha256": hashlib.sha256(chunk).hexdigest()})
    return parts


def _machine(device: str) -> dict[str, str]:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"device": device, "gpu": gpu, "torch": torch.__version__, "cpu": platform.machine()}


def _save_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=1, default=float) + "\n", encoding="utf-8")


def _markdown(record: dict, report: EvaluationReport) -> str:
    weights, meta = record["weights"], record["training"]
    lines = [
        f"Weights `{weights['file']}`: {weights['bytes']:,} bytes, SHA-256 `{weights['sha256']}`.",
        f"Trained {meta['steps']} steps in {meta['elapsed_s']:.0f} s on {meta['device']} "
        f"(batch {meta['batch_size']}, patch {meta['patch_size']}, noise `{meta['noise']}`, "
        f"clean fraction {meta['clean_fraction']}); best validation PSNR "
        f"{meta.get('best_val_psnr', float('nan')):.2f} dB at step {meta.get('best_step')}.",
        "",
        f"- int8 vs fp32 outputs: min {record['int8_vs_fp32_psnr']['min']:.2f} dB, mean "
        f"{record['int8_vs_fp32_psnr']['mean']:.2f} dB",
        f"- tiled ({TILE}/{OVERLAP}) vs whole image: "
        f"{record['tiled_vs_whole_psnr']['psnr']:.2f} dB",
        *(
            f"- no harm ({name}): PSNR(model(clean), clean) min {v['min']:.2f} dB, mean "
            f"{v['mean']:.2f} dB over {v['crops']} crops; min by source: "
            + ", ".join(f"{k} {m:.2f} dB" for k, m in v["min_by_source"].items())
            for name, v in record["no_harm_psnr"].items()
        ),
        "",
        report.to_markdown(),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
