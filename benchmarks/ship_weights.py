"""Keep a release run's int8 weights as the release candidate, or bundle them in the package.

    python benchmarks/ship_weights.py OUT --candidate
    python benchmarks/ship_weights.py release_candidate --summary "the widget's tooltip"
    python benchmarks/ship_weights.py OUT --summary "..."

OUT is the folder ``benchmarks/release.py`` (or ``gpu_release.sh``) wrote. The parts listed in
its ``report.json`` are checked (each part's SHA-256, then the joined file's), and every file is
loaded as a model before it replaces anything. Then:

- ``--candidate`` replaces ``release_candidate/basic.int8.safetensors`` in place and adds the
  run to ``release_candidate/lineage.json`` (what each run trained, from which weights, and what
  it measured, with the totals; a run that did not start from the candidate begins a new
  lineage), but only if the run is better than the candidate: higher PSNR on the held-out
  source and no more harm to clean crops, measured the same way: on the same crops in the
  same run where the run started from the candidate (``release.py`` measures its "init"),
  else with the same settings on the same sources (``--force`` overrides, and is needed for
  a dry run). The next run goes on from it (``release.py --init-weights``).
- ``--summary`` bundles the weights as ``src/napari_histo_denoise/weights/basic.int8.safetensors``
  with their SHA-256 and the summary in the folder's ``index.json``, which the package checks
  at every load. Bundling into the package ends the candidate (one file of these weights in
  the repository at any time): its weights file goes, its lineage stays as the record.
  Update ``docs/pretrained.md`` with the same digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from release import HELD_OUT, WEIGHTS  # benchmarks/ is the script's folder

from napari_histo_denoise import pretrained
from napari_histo_denoise.checkpoint import load_model
from napari_histo_denoise.files import atomic_output

LINEAGE = "lineage.json"
MAX_BYTES = 36_000_000
#: How much worse than the candidate a run may be and still count as no worse (dB).
TOLERANCE_DB = 0.05
#: The evaluation settings that must match for two runs' figures to be compared.
COMPARED = ("sigmas", "crop", "crops_per_image", "seed", "tile_size", "overlap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a release run's output, or release_candidate")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--candidate", action="store_true", help="keep as the release candidate")
    action.add_argument("--summary", help="bundle in the package, with this one-line summary")
    parser.add_argument("--force", action="store_true", help="keep a candidate that is worse")
    parser.add_argument(
        "--dest", type=Path, default=pretrained.WEIGHTS_DIR, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--candidate-dir", type=Path, default=pretrained.CANDIDATE.parent, help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    lineage_path = args.candidate_dir / LINEAGE
    lineage = _read_json(lineage_path) if lineage_path.is_file() else {"runs": []}
    from_candidate = args.source.resolve() == args.candidate_dir.resolve()
    if from_candidate:
        if args.candidate:
            raise SystemExit("the candidate is already the candidate; give a run's output")
        data = _checked_candidate(args.candidate_dir, lineage)
    else:
        report = _read_json(args.source / "report.json")
        data = _joined(args.source, report["weights"])
    if len(data) > MAX_BYTES:
        raise SystemExit(f"{len(data):,} bytes: more than the {MAX_BYTES:,} the package allows")
    digest = hashlib.sha256(data).hexdigest()

    if args.candidate:
        if report["dry_run"] and not args.force:
            raise SystemExit("a dry run is no candidate (--force keeps it anyway)")
        entry = _lineage_entry(report)
        runs = lineage["runs"]
        if runs and not args.force:
            _refuse_if_worse(entry, runs[-1])
        _write_weights(args.candidate_dir / WEIGHTS, data)
        if runs and entry["init_sha256"] != runs[-1]["sha256"]:
            runs.clear()  # not a warm restart of the candidate: a new lineage begins
        runs.append(entry)
        lineage["total"] = total = _totals(runs)
        _write(lineage_path, (json.dumps(lineage, indent=1) + "\n").encode())
        print(
            f"kept {args.candidate_dir / WEIGHTS} as the release candidate ({len(data):,} bytes, "
            f"SHA-256 {digest}); lineage: {total['runs']} runs, {total['steps']:,} steps, "
            f"{total['patches']:,} patches, {total['hours']:.2f} h"
        )
        return

    target = args.dest / WEIGHTS
    model, meta = _write_weights(target, data)
    for old in args.dest.glob("*.safetensors"):  # one bundled file at any time
        if old != target:
            old.unlink()
    index = {model.architecture: {"file": target.name, "sha256": digest, "summary": args.summary}}
    _write(args.dest / pretrained.INDEX_NAME, (json.dumps(index, indent=1) + "\n").encode())
    if from_candidate or args.dest.resolve() == pretrained.WEIGHTS_DIR:
        (args.candidate_dir / WEIGHTS).unlink(missing_ok=True)
    print(f"bundled {target} ({len(data):,} bytes, SHA-256 {digest}, {meta['steps']} steps)")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        partial.write_bytes(data)


def _write_weights(path: Path, data: bytes):
    """Write weights atomically, published only once they load as a model; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        partial.write_bytes(data)
        loaded = load_model(partial)
    return loaded


def _joined(out: Path, record: dict) -> bytes:
    """The run's weights from their parts, each part and the whole checked."""
    data = b""
    for part in record["parts"]:
        chunk = (out / part["file"]).read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise SystemExit(f"{part['file']}: SHA-256 differs from report.json")
        data += chunk
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"] or len(data) != record["bytes"]:
        raise SystemExit(f"joined file: SHA-256 {digest}, report.json says {record['sha256']}")
    return data


def _checked_candidate(folder: Path, lineage: dict) -> bytes:
    path = folder / WEIGHTS
    if not path.is_file() or not lineage["runs"]:
        raise SystemExit(f"no release candidate in {folder} (weights and {LINEAGE} needed)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != lineage["runs"][-1]["sha256"]:
        raise SystemExit(f"{path}: SHA-256 differs from the last run in {LINEAGE}")
    return data


def _lineage_entry(report: dict) -> dict:
    """What one run trained and measured, as the model card reports it."""
    meta, weights = report["training"], report["weights"]
    settings = report["evaluation"]["settings"]
    entry = {
        "finished": report["finished"],
        "command": report["command"],
        "machine": report["machine"]["gpu"] or f"CPU ({report['machine']['cpu']})",
        "torch": report["machine"]["torch"],
        "init_sha256": weights["init_sha256"],
        "sha256": weights["sha256"],
        "bytes": weights["bytes"],
        "steps": meta["steps"],
        "batch_size": meta["batch_size"],
        "patches": meta["steps"] * meta["batch_size"],
        "seconds": meta["elapsed_s"],
        "recipe": {k: meta[k] for k in ("noise", "clean_fraction", "lr", "patch_size")}
        | {"precision": meta["precision"]},
        "best_val_psnr": meta.get("best_val_psnr"),
        "evaluation": {k: settings[k] for k in COMPARED},
        "held_out_psnr_int8": _held_out(report, "basic int8"),
        "no_harm_psnr_int8": _rounded(report["no_harm_psnr"]["int8"]),
        "int8_vs_fp32_min_psnr": round(report["int8_vs_fp32_psnr"]["min"], 3),
        "tiled_vs_whole_psnr": round(report["tiled_vs_whole_psnr"]["psnr"], 3),
    }
    if "init" in report["no_harm_psnr"]:  # the starting weights, on the same crops
        entry["init_measured"] = {
            "held_out_psnr": _held_out(report, "init"),
            "no_harm_psnr": _rounded(report["no_harm_psnr"]["init"]),
        }
    return entry


def _held_out(report: dict, method: str) -> dict[str, dict[str, float]]:
    """Mean PSNR of ``method`` by source and sigma."""
    found: dict[str, dict[str, list[float]]] = {}
    for row in report["evaluation"]["rows"]:
        if row["method"] == method:
            sigmas = found.setdefault(row["source"], {})
            sigmas.setdefault(f"{row['sigma']:g}", []).append(row["psnr"])
    return {
        source: {sigma: round(sum(v) / len(v), 3) for sigma, v in sigmas.items()}
        for source, sigmas in found.items()
    }


def _rounded(value):
    """``value`` with every float rounded to 3 decimals (the figures' precision)."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 3) if isinstance(value, float) else value


def _refuse_if_worse(new: dict, old: dict) -> None:
    """Stop unless ``new`` denoises the held-out source better and harms clean crops no more."""
    if "init_measured" in new and new["init_sha256"] == old["sha256"]:
        # The candidate measured beside the run: the same crops, machine and code.
        old = {"held_out_psnr_int8": new["init_measured"]["held_out_psnr"]} | {
            "no_harm_psnr_int8": new["init_measured"]["no_harm_psnr"]
        }
    elif new["evaluation"] != old["evaluation"] or set(new["held_out_psnr_int8"]) != set(
        old["held_out_psnr_int8"]
    ):
        raise SystemExit(
            f"the runs were evaluated differently ({new['evaluation']} on "
            f"{sorted(new['held_out_psnr_int8'])} against the candidate's {old['evaluation']} "
            f"on {sorted(old['held_out_psnr_int8'])}); --force keeps this one anyway"
        )

    def held_out(entry: dict) -> float:
        values = entry["held_out_psnr_int8"][HELD_OUT].values()
        return sum(values) / len(values)

    harm_new, harm_old = (e["no_harm_psnr_int8"]["min"] for e in (new, old))
    if not (held_out(new) > held_out(old) and harm_new >= harm_old - TOLERANCE_DB):
        raise SystemExit(
            f"not better than the candidate: held-out PSNR {held_out(new):.2f} dB (candidate "
            f"{held_out(old):.2f}), no-harm min {harm_new:.2f} dB (candidate {harm_old:.2f}); "
            "--force keeps it anyway"
        )


def _totals(runs: list[dict]) -> dict:
    return {
        "runs": len(runs),
        "steps": sum(r["steps"] for r in runs),
        "patches": sum(r["patches"] for r in runs),
        "hours": round(sum(r["seconds"] for r in runs) / 3600, 3),
    }


if __name__ == "__main__":
    main()
