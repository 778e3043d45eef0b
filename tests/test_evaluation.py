from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from skimage import data, io
from torch.nn import functional as F

from napari_histo_denoise.checkpoint import file_sha256, save_weights
from napari_histo_denoise.cli import main
from napari_histo_denoise.evaluation import available_baselines, evaluate
from napari_histo_denoise.models import build_model

CHEAP = ("nlm", "tv", "wavelet")


class Smooth(torch.nn.Module):
    """A fixed 3 x 3 box blur: a weak but real denoiser."""

    def forward(self, x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


@pytest.fixture(scope="module")
def ihc():
    return data.immunohistochemistry()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, ihc):
    # A second source: a real IHC region saved as PNG, read back through the file path.
    path = tmp_path_factory.mktemp("images")
    io.imsave(path / "ihc_region.png", ihc[256:384, 256:384])
    return path


def _row(report, method, image=None):
    return [r for r in report.rows if r.method == method and image in (None, r.image)]


def test_model_and_baselines_beat_the_noisy_input(ihc):
    report = evaluate(Smooth(), ihc, sigmas=(25,), baselines=CHEAP, crop=64, device="cpu")
    assert report.methods == ["noisy", "model", "nlm", "tv", "wavelet"]
    assert len(report.rows) == 5
    noisy = _row(report, "noisy")[0]
    # 20 log10(255 / 25) = 20.17 dB; clipping at 0 and 1 trims the noise a little.
    assert 19.7 < noisy.psnr < 21.0
    for method in report.methods[1:]:
        (row,) = _row(report, method)
        assert math.isfinite(row.psnr) and math.isfinite(row.ssim)
        assert 0 <= row.ssim <= 1 and row.psnr < 45
        assert row.psnr > noisy.psnr + 3 and row.ssim > noisy.ssim, method
        assert row.seconds >= 0


def test_identity_model_scores_as_the_noisy_input(ihc):
    report = evaluate(Identity(), ihc, sigmas=(50,), baselines=False, crop=32, device="cpu")
    noisy, model = report.rows
    assert model.psnr == pytest.approx(noisy.psnr, abs=1e-3)  # float32 round trip only
    assert model.ssim == pytest.approx(noisy.ssim, abs=1e-4)


def test_per_source_grouping_and_markdown(ihc, folder):
    report = evaluate(
        Smooth(), [ihc, folder], sigmas=(15, 50), baselines=["tv"], crop=32, crops_per_image=2
    )
    sources = {r.source for r in report.rows}
    assert sources == {"images[0]", "ihc_region.png"}
    assert {r.image for r in report.rows} == {
        "images[0]#0",
        "images[0]#1",
        "ihc_region.png#0",
        "ihc_region.png#1",
    }
    means = {(m["source"], m["sigma"], m["method"]): m for m in report.per_source()}
    for source in [*sources, "all"]:
        for sigma in (15.0, 50.0):
            rows = [
                r
                for r in report.rows
                if r.method == "model" and r.sigma == sigma and source in ("all", r.source)
            ]
            mean = means[(source, sigma, "model")]
            assert mean["crops"] == len(rows) == (4 if source == "all" else 2)
            assert mean["psnr"] == pytest.approx(np.mean([r.psnr for r in rows]))
    # More noise, lower scores, for every method and source.
    for source in sources:
        for method in report.methods:
            assert means[(source, 50.0, method)]["psnr"] < means[(source, 15.0, method)]["psnr"]

    text = report.to_markdown()
    assert "### sigma 15" in text and "### sigma 50" in text
    assert "| source | crops | noisy | model | tv |" in text
    assert "| ihc_region.png | 2 |" in text and "| **mean** | 4 |" in text
    assert json.loads(json.dumps(report.to_dict()))["per_source"]


def test_noise_is_fixed_per_crop_and_sigma(ihc):
    first = evaluate(None, ihc, sigmas=(25,), baselines=False, crop=32, crops_per_image=2)
    again = evaluate(None, ihc, sigmas=(25,), baselines=False, crop=32, crops_per_image=2)
    assert [r.psnr for r in first.rows] == [r.psnr for r in again.rows]
    other = evaluate(None, ihc, sigmas=(25,), baselines=False, crop=32, seed=1)
    assert other.rows[0].psnr != first.rows[0].psnr
    assert first.methods == ["noisy"]


def test_weights_file_runs_through_the_engine(ihc, tmp_path):
    torch.manual_seed(0)
    path = save_weights(tmp_path / "basic.safetensors", build_model("basic"))
    report = evaluate(path, ihc, sigmas=(25,), baselines=False, crop=32, device="cpu")
    assert report.methods == ["noisy", "basic"]
    (row,) = _row(report, "basic")
    assert math.isfinite(row.psnr) and 0 <= row.ssim <= 1
    assert report.settings["weights"]["sha256"] == file_sha256(path)
    assert file_sha256(path) in report.to_markdown()


def test_cbm3d_is_left_out_cleanly_without_bm3d(ihc, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` raise ImportError
    assert available_baselines() == ["nlm", "tv", "wavelet"]
    report = evaluate(None, ihc, sigmas=(25,), crop=32)
    assert report.methods == ["noisy", "nlm", "tv", "wavelet"]
    with pytest.raises(ValueError, match=r"optional 'bm3d' package.*\[benchmark\]"):
        evaluate(None, ihc, sigmas=(25,), baselines=["cbm3d"], crop=32)


def test_cbm3d_runs_when_bm3d_is_installed(ihc):
    pytest.importorskip("bm3d")  # optional benchmark extra (non-commercial licence)
    assert "cbm3d" in available_baselines()
    report = evaluate(None, ihc, sigmas=(25,), baselines=["cbm3d"], crop=32)
    noisy, cbm3d = report.rows
    assert cbm3d.method == "cbm3d" and cbm3d.psnr > noisy.psnr + 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigmas": ()}, "sigmas must be numbers"),
        ({"sigmas": (0,)}, "sigmas must be numbers"),
        ({"crop": 50}, "multiple of 16"),
        ({"crops_per_image": 0}, "crops_per_image"),
        ({"baselines": ["bilateral"]}, "unknown baseline.*'bilateral'.*nlm"),
    ],
)
def test_bad_arguments_are_refused(ihc, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(None, ihc, **{"crop": 32, **kwargs})


def test_bad_weights_argument_is_refused(ihc):
    with pytest.raises(ValueError, match="weights_or_model must be"):
        evaluate(3, ihc, crop=32)


def test_cli_writes_the_report(folder, tmp_path, capsys):
    out, js = tmp_path / "report.md", tmp_path / "rows.json"
    argv = ["evaluate", "--images", str(folder), "--sigmas", "25", "--crop", "32"]
    assert main([*argv, "--baselines", "tv", "-o", str(out), "--json", str(js)]) == 0
    text = out.read_text()
    assert "### sigma 25" in text and "| ihc_region.png | 1 |" in text and "tv" in text
    assert len(json.loads(js.read_text())["rows"]) == 2
    assert main([*argv, "--crop", "33"]) == 2
    assert "multiple of 16" in capsys.readouterr().err


def test_kept_images_are_the_scored_outputs_and_make_a_mosaic(ihc, folder):
    from napari_histo_denoise.metrics import psnr
    from napari_histo_denoise.quality_figures import mosaic, psnr_chart

    report = evaluate(
        Smooth(), [ihc, folder], sigmas=(15, 50), baselines=["tv"], crop=64,
        crops_per_image=2, keep_images=True, label="smooth",
    )  # fmt: skip
    assert list(report.images) == ["images[0]#0", "ihc_region.png#0"]  # first crop per source
    kept = report.images["images[0]#0"]
    assert set(kept.outputs) == {(s, m) for s in (15.0, 50.0) for m in report.methods}
    for row in _row(report, "smooth", "images[0]#0"):  # uint8 copies of what was scored
        clean, out = kept.clean / 255, kept.outputs[(row.sigma, "smooth")] / 255
        assert psnr(clean, out) == pytest.approx(row.psnr, abs=0.05)

    picture = mosaic(report, "images[0]#0")
    corners = np.argwhere((picture == kept.clean[0, 0]).all(-1))
    assert any(np.array_equal(picture[y : y + 64, x : x + 64], kept.clean) for y, x in corners)
    assert picture.shape[1] > 4 * 64 and picture.shape[0] > 2 * 64  # clean + 3 methods, 2 sigmas
    assert psnr_chart(report).shape == (600, 1120, 3)  # two sources and their mean
    assert evaluate(Smooth(), ihc, sigmas=25, baselines=False, crop=32).images == {}


def test_cli_figures_beside_the_report(folder, tmp_path, capsys):
    out = tmp_path / "quality.md"
    argv = ["evaluate", "--images", str(folder), "--sigmas", "15", "25", "50", "--crop", "64"]
    assert main([*argv, "--baselines", "tv", "nlm", "-o", str(out), "--figures"]) == 0
    chart, mosaic = tmp_path / "quality_psnr.png", tmp_path / "quality_ihc_region.jpg"
    assert f"wrote {out}, {chart}, {mosaic}" in capsys.readouterr().out
    text = out.read_text()
    assert "](quality_psnr.png)" in text and "](quality_ihc_region.jpg)" in text
    assert io.imread(chart).shape == (300, 560, 3)
    assert 3 * 64 < io.imread(mosaic).shape[0] and mosaic.stat().st_size < 1_000_000
    assert main([*argv, "--figures"]) == 2
    assert "give -o/--output" in capsys.readouterr().err
