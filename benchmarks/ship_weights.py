"""Bundle the int8 weights of a release run in the package, replacing the bundled file in place.

    python benchmarks/ship_weights.py OUT --summary "one line for the widget's tooltip"

OUT is the folder ``benchmarks/release.py`` (or ``gpu_release.sh``) wrote. The parts listed in
its ``report.json`` are checked (each part's SHA-256, then the joined file's), joined into
``src/napari_histo_denoise/weights/basic.int8.safetensors``, loaded as a model to prove they
are weights, and recorded with their SHA-256 and the summary in the folder's ``index.json``,
which the package checks at every load. Update ``docs/pretrained.md`` with the same digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from napari_histo_denoise import pretrained
from napari_histo_denoise.checkpoint import load_model

PACKAGE_WEIGHTS = Path(__file__).resolve().parents[1] / "src/napari_histo_denoise/weights"
MAX_BYTES = 36_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the release run's output folder")
    parser.add_argument("--summary", required=True, help="the model card's one-line summary")
    parser.add_argument("--dest", type=Path, default=PACKAGE_WEIGHTS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    record = json.loads((args.out / "report.json").read_text(encoding="utf-8"))["weights"]
    data = b""
    for part in record["parts"]:
        chunk = (args.out / part["file"]).read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise SystemExit(f"{part['file']}: SHA-256 differs from report.json")
        data += chunk
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"] or len(data) != record["bytes"]:
        raise SystemExit(f"joined file: SHA-256 {digest}, report.json says {record['sha256']}")
    if len(data) > MAX_BYTES:
        raise SystemExit(f"{len(data):,} bytes: more than the {MAX_BYTES:,} the package allows")

    args.dest.mkdir(exist_ok=True)
    target = args.dest / record["file"]
    for old in args.dest.glob("*.safetensors"):  # one bundled file at any time
        old.unlink()
    target.write_bytes(data)
    model, meta = load_model(target)
    index = {model.architecture: {"file": target.name, "sha256": digest, "summary": args.summary}}
    (args.dest / pretrained.INDEX_NAME).write_text(
        json.dumps(index, indent=1) + "\n", encoding="utf-8"
    )
    print(f"bundled {target} ({len(data):,} bytes, SHA-256 {digest}, {meta['steps']} steps)")


if __name__ == "__main__":
    main()
