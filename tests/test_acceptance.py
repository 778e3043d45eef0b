"""The shipping rule and its check, on real tissue crops of the bundled CMU-1 slide."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage import data
from torch import nn

from napari_histo_denoise.acceptance import NO_HARM_DB, RULE_SIGMAS, no_harm_psnr, ship_check
from napari_histo_denoise.checkpoint import save_weights
from napari_histo_denoise.cli import main
from napari_histo_denoise.evaluation import tissue_crops
from napari_histo_denoise.files import file_sha256
from napari_histo_denoise.models import build_model

SLIDE = Path(__file__).resolve().parents[1] / "src/napari_histo_denoise/data/cmu1_small_region.svs"
RULE = ["tv", "wavelet", "nlm"]
FAST = dict(crops=1, crop=64, tile_size=64, overlap=16, device="cpu", precision="fp32")


class Identity(nn.Module):
    """A 1 x 1 convolution that returns its input: no denoising, and no harm at all."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Darken(Identity):
    """Scales the image by 0.9: harm that a no-harm check must see."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.9 * self.conv(x)


def test_a_model_that_does_nothing_fails_the_denoising_lines_and_harms_nothing():
    ihc = data.immunohistochemistry()
    result = ship_check(Identity(), SLIDE, [ihc], baselines=RULE, **FAST)
    denoising, harm = result.checks[:3], result.checks[3:]
    assert [c.name.split(",")[1].strip().split(":")[0] for c in denoising] == [
        f"sigma {s}" for s in RULE_SIGMAS
    ]
    assert not any(c.passed for c in denoising)  # the model's output is the noisy input
    assert len(harm) == 2 and all(c.passed and c.measured == np.inf for c in harm)
    assert not result.passed
    means = {
        (m["sigma"], m["method"]): m["psnr"]
        for m in result.gaussian.per_source()
        if m["source"] == SLIDE.name
    }
    for check, sigma in zip(denoising, RULE_SIGMAS, strict=True):
        assert check.measured == means[(sigma, "model")]
        assert check.measured == pytest.approx(means[(sigma, "noisy")], abs=1e-4)  # float32
        assert check.target == max(means[(sigma, b)] for b in RULE)
    assert result.poisson_gaussian.settings["noise"].startswith("Poisson-Gaussian")
    text = result.to_markdown()
    assert "FAIL" in text and "do not pass the rule" in text and "## Poisson-Gaussian" in text


def test_no_harm_is_the_psnr_of_the_output_on_clean_crops():
    crops = [c for *_, c in tissue_crops([str(SLIDE)], 64, 2, seed=0)]
    options = dict(tile_size=64, overlap=16, device="cpu", precision="fp32")
    values = no_harm_psnr(Darken(), crops, **options)
    for clean, value in zip(crops, values, strict=True):
        assert value == pytest.approx(10 * np.log10(1 / np.mean((0.1 * clean) ** 2)), abs=1e-3)
    result = ship_check(Darken(), SLIDE, baselines=RULE, **FAST)
    harm = result.checks[-1]
    assert harm.target == NO_HARM_DB and harm.measured < NO_HARM_DB and not harm.passed


def test_the_rule_needs_its_baselines():
    with pytest.raises(ValueError, match="add \\['nlm'\\]"):
        ship_check(Identity(), SLIDE, baselines=["tv", "wavelet"], **FAST)
    with pytest.raises(ValueError, match="needs weights or a model"):
        ship_check(None, SLIDE, **FAST)


def test_trained_weights_pass_the_denoising_lines_by_margins(trained_basic):
    result = ship_check(trained_basic, SLIDE, baselines=RULE, **(FAST | dict(crop=128)))
    for check in result.checks[:3]:
        assert check.passed == (check.measured > check.target)
    sigma25, sigma50 = result.checks[1:3]  # measured: 1.7 and 2.6 dB above the best baseline
    assert sigma25.measured > sigma25.target + 1 and sigma50.measured > sigma50.target + 1
    assert result.settings["backend"] in ("torch", "openvino")
    assert result.settings["weights"]["sha256"] == file_sha256(trained_basic)


def test_weights_trained_on_the_held_out_image_are_refused(tmp_path):
    meta = {"train_images": ["a.png", SLIDE.name], "steps": 1}
    weights = save_weights(tmp_path / "w.safetensors", build_model("basic"), meta)
    with pytest.raises(ValueError, match=f"was trained on {SLIDE.name}: it is not held out"):
        ship_check(weights, SLIDE, baselines=RULE, **FAST)


def test_cli_ship_check_scores_trained_weights(tmp_path, trained_basic, capsys):
    folder = tmp_path / "data"
    (folder / "val").mkdir(parents=True)
    (folder / "train").mkdir()
    shutil.copy(SLIDE, folder / "val" / SLIDE.name)
    # A stand-in at the held-out source's path: scikit-image's IHC sample, real tissue.
    iio.imwrite(folder / "train/stardist_histo_he.jpg", data.immunohistochemistry(), quality=95)
    assert main(["ship-check", str(trained_basic), "--data", str(tmp_path / "none")]) == 2
    assert "histo-denoise fetch-data" in capsys.readouterr().err

    report = tmp_path / "check.json"
    command = ["ship-check", str(trained_basic), "--data", str(folder), "--crops", "1"]
    command += ["--baselines", *RULE, "--device", "cpu", "--json", str(report)]
    status = main(command)
    record = json.loads(report.read_text())
    assert status == (0 if record["passed"] else 1)
    assert record["settings"]["images"] == ["stardist_histo_he.jpg", SLIDE.name]
    harm = {c["name"]: c["measured"] for c in record["checks"] if c["name"].startswith("no harm")}
    assert len(harm) == 2 and all(v > 20 for v in harm.values())  # a denoiser, not a blur
    out = capsys.readouterr().out
    assert out.startswith(f"Weights `{trained_basic}`") and "| rule | measured |" in out
