"""The release pipeline's CPU dry run: the device script, the report, and shipping its weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data, io

from napari_histo_denoise import pretrained
from napari_histo_denoise.checkpoint import file_sha256, load_model

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT / "src/napari_histo_denoise/data/cmu1_small_region.svs"


@pytest.fixture(scope="module")
def release_data(tmp_path_factory):
    """A fetch-data layout from the repository's own images (no network, no ../shared)."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "train").mkdir()
    (folder / "val").mkdir()
    ihc = data.immunohistochemistry()
    io.imsave(folder / "train/skimage_ihc.png", ihc[:256], check_contrast=False)
    io.imsave(folder / "train/stardist_histo_he.jpg", ihc[256:], check_contrast=False)
    (folder / "val" / SLIDE.name).symlink_to(SLIDE)
    return folder


@pytest.fixture(scope="module")
def dry_run(release_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "out"
    # The script runs `python3`: the interpreter running the tests, first on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, DATA=str(release_data), OUT=str(out), PATH=path)
    script = ROOT / "benchmarks/gpu_release.sh"
    done = subprocess.run(
        ["bash", str(script), "--dry-run"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


def test_device_script_dry_run_writes_what_comes_back(dry_run):
    out, stdout = dry_run
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in out.iterdir())
    assert {"report.json", "report.md", "history.json", "reference.npz", "log.txt"} <= set(names)
    assert "basic.int8.safetensors.part00" in names and "done in" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["dry_run"] and report["training"]["train_images"] == ["skimage_ihc.png"]
    assert report["training"]["noise"] == "mix:gaussian:0-55+poisson-gaussian:0-55"
    methods = report["evaluation"]["methods"]
    assert methods[:3] == ["noisy", "basic fp32", "basic int8"] and "nlm" in methods
    sources = {row["source"] for row in report["evaluation"]["rows"]}
    assert sources == {"stardist_histo_he.jpg", SLIDE.name}
    assert {row["sigma"] for row in report["evaluation"]["rows"]} == {15.0, 25.0, 50.0}
    assert report["int8_vs_fp32_psnr"]["min"] > 45
    assert report["tiled_vs_whole_psnr"]["psnr"] > 45  # random weights: the tiling is exact
    assert set(report["no_harm_psnr"]) == {"fp32", "int8"}
    assert "| stardist_histo_he.jpg |" in (out / "report.md").read_text()


def test_shipping_joins_checks_and_indexes_the_parts(dry_run, tmp_path, monkeypatch):
    out, _ = dry_run
    dest = tmp_path / "weights"
    command = [sys.executable, str(ROOT / "benchmarks/ship_weights.py"), str(out)]
    command += ["--summary", "dry run", "--dest", str(dest)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    shipped = dest / "basic.int8.safetensors"
    record = json.loads((out / "report.json").read_text())["weights"]
    assert file_sha256(shipped) == record["sha256"]
    index = json.loads((dest / pretrained.INDEX_NAME).read_text())
    assert index == {
        "basic": {"file": shipped.name, "sha256": record["sha256"], "summary": "dry run"}
    }

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", dest)
    reference = np.load(out / "reference.npz")
    import napari_histo_denoise as hd

    again = hd.denoise(reference["noisy"], "basic", device="cpu", precision="fp32").compute()
    assert np.abs(again.astype(int) - reference["denoised"].astype(int)).max() <= 1
    _model, meta = load_model(shipped)
    assert meta["storage_dtype"] == "int8"

    part = out / record["parts"][0]["file"]
    data_ = bytearray(part.read_bytes())
    data_[0] ^= 1
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in out.iterdir():
        (broken / p.name).write_bytes(bytes(data_) if p == part else p.read_bytes())
    command[2] = str(broken)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "SHA-256 differs" in done.stderr
