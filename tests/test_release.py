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
    no_harm = report["no_harm_psnr"]["int8"]
    assert set(no_harm["min_by_source"]) == sources
    assert min(no_harm["min_by_source"].values()) == no_harm["min"]
    assert "| stardist_histo_he.jpg |" in (out / "report.md").read_text()


def test_shipping_joins_checks_and_indexes_the_parts(dry_run, tmp_path, monkeypatch):
    out, _ = dry_run
    dest = tmp_path / "weights"
    command = [sys.executable, str(ROOT / "benchmarks/ship_weights.py"), str(out)]
    command += ["--summary", "dry run", "--dest", str(dest)]
    command += ["--candidate-dir", str(tmp_path / "candidate")]  # never the repository's
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


def _variant(out: Path, folder: Path, init_sha256: str | None, gain_db: float) -> Path:
    """A copy of the dry run's output as if it were a real run that started from
    ``init_sha256`` and scored ``gain_db`` more on the held-out images (the same weights: this
    tests the bookkeeping, not a model)."""
    folder.mkdir()
    for p in out.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    report = json.loads((folder / "report.json").read_text())
    report["dry_run"] = False
    report["weights"]["init_sha256"] = init_sha256
    for row in report["evaluation"]["rows"]:
        row["psnr"] += gain_db if row["method"] == "basic int8" else 0
    report["no_harm_psnr"]["int8"]["min"] += gain_db
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_the_candidate_is_replaced_in_place_by_better_runs_and_shipped_once(dry_run, tmp_path):
    out, _ = dry_run
    candidate, package = tmp_path / "candidate", tmp_path / "weights"
    script = [sys.executable, str(ROOT / "benchmarks/ship_weights.py")]
    where = ["--candidate-dir", str(candidate), "--dest", str(package)]

    def ship(source, *options):
        command = [*script, str(source), *options, *where]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    refused = ship(out, "--candidate")
    assert refused.returncode != 0 and "a dry run is no candidate" in refused.stderr
    first = _variant(out, tmp_path / "first", None, 0.0)
    assert ship(first, "--candidate").returncode == 0
    report = json.loads((first / "report.json").read_text())
    weights = candidate / "basic.int8.safetensors"
    lineage = json.loads((candidate / "lineage.json").read_text())
    assert file_sha256(weights) == report["weights"]["sha256"] == lineage["runs"][0]["sha256"]
    steps, batch = report["training"]["steps"], report["training"]["batch_size"]
    assert lineage["total"] | {"hours": 0} == {
        "runs": 1,
        "steps": steps,
        "patches": steps * batch,
        "hours": 0,
    }
    run = lineage["runs"][0]
    assert set(run["held_out_psnr_int8"]) == {"stardist_histo_he.jpg", SLIDE.name}
    assert run["command"].startswith("python ") and "--dry-run" in run["command"]
    assert run["evaluation"]["sigmas"] == [15, 25, 50]

    again = ship(first, "--candidate")
    assert again.returncode != 0 and "not better than the candidate" in again.stderr

    warm = _variant(out, tmp_path / "warm", report["weights"]["sha256"], 1.0)
    assert ship(warm, "--candidate").returncode == 0
    lineage = json.loads((candidate / "lineage.json").read_text())
    assert lineage["total"]["runs"] == 2 and lineage["total"]["steps"] == 2 * steps
    assert sorted(p.name for p in candidate.iterdir()) == [weights.name, "lineage.json"]

    fresh = _variant(out, tmp_path / "fresh", None, -1.0)  # worse, and not a warm restart
    assert "not better" in ship(fresh, "--candidate").stderr
    assert ship(fresh, "--candidate", "--force").returncode == 0
    assert json.loads((candidate / "lineage.json").read_text())["total"]["runs"] == 1

    assert ship(candidate, "--summary", "from the candidate").returncode == 0
    assert not weights.exists() and (candidate / "lineage.json").exists()
    index = json.loads((package / pretrained.INDEX_NAME).read_text())
    assert index["basic"]["sha256"] == report["weights"]["sha256"]
    assert file_sha256(package / "basic.int8.safetensors") == index["basic"]["sha256"]
    assert "no release candidate" in ship(candidate, "--summary", "again").stderr


def test_a_warm_restart_is_compared_with_its_start_on_the_same_crops(
    dry_run, release_data, tmp_path
):
    out, _ = dry_run
    start = tmp_path / "start.int8.safetensors"
    record = json.loads((out / "report.json").read_text())["weights"]
    start.write_bytes(b"".join((out / p["file"]).read_bytes() for p in record["parts"]))
    warm, scratch = tmp_path / "warm", tmp_path / "scratch"
    release = [sys.executable, str(ROOT / "benchmarks/release.py"), "--data", str(release_data)]
    release += ["--out", str(warm), "--scratch", str(scratch), "--dry-run", "--baselines", "none"]
    done = subprocess.run(
        [*release, "--init-weights", str(start)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((warm / "report.json").read_text())
    assert report["weights"]["init_sha256"] == file_sha256(start)
    assert report["evaluation"]["methods"] == ["noisy", "basic fp32", "basic int8", "init"]
    assert set(report["no_harm_psnr"]) == {"fp32", "int8", "init"}
    assert "no harm (init)" in (warm / "report.md").read_text()

    # Measured again from its fp32 weights, the run gives the same figures.
    subprocess.run([*release, "--measure"], check=True, capture_output=True, timeout=600)
    again = json.loads((warm / "report.json").read_text())

    def figures(record):  # every row but its timing
        return [{k: v for k, v in row.items() if k != "seconds"} for row in record]

    assert figures(again["evaluation"]["rows"]) == figures(report["evaluation"]["rows"])
    assert again["no_harm_psnr"] == report["no_harm_psnr"]
    assert again["command"] == report["command"] and "--measure" in again["measured_by"]
    (scratch / "basic.safetensors").write_bytes(b"not these weights")
    refused = subprocess.run([*release, "--measure"], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "not the fp32 weights" in refused.stderr

    # The candidate's own figures were taken on other sources (a device run reads the slide
    # as a PNG): only the figures measured beside the run compare.
    candidate = tmp_path / "candidate"
    ship = [sys.executable, str(ROOT / "benchmarks/ship_weights.py")]
    where = ["--candidate", "--candidate-dir", str(candidate), "--dest", str(tmp_path / "pkg")]
    first = _variant(out, tmp_path / "first", None, 0.0)
    subprocess.run([*ship, str(first), *where], check=True, capture_output=True, timeout=300)
    lineage = json.loads((candidate / "lineage.json").read_text())
    figures = lineage["runs"][0]["held_out_psnr_int8"]
    figures["cmu1_small_region.png"] = figures.pop(SLIDE.name)
    (candidate / "lineage.json").write_text(json.dumps(lineage))
    elsewhere = _variant(out, tmp_path / "elsewhere", record["sha256"], 1.0)
    refused = subprocess.run([*ship, str(elsewhere), *where], capture_output=True, text=True)
    assert refused.returncode != 0 and "evaluated differently" in refused.stderr
    beside = _variant(warm, tmp_path / "beside", record["sha256"], 1.0)
    subprocess.run([*ship, str(beside), *where], check=True, capture_output=True, timeout=300)
    run = json.loads((candidate / "lineage.json").read_text())["runs"][-1]
    no_harm = run["init_measured"]["no_harm_psnr"]["min"]
    assert no_harm == round(report["no_harm_psnr"]["init"]["min"], 3)
