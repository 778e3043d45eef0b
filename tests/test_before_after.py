"""``histo-denoise before-after``: the README picture's command, with untrained weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data, io

from napari_histo_denoise import pretrained
from napari_histo_denoise.checkpoint import save_weights
from napari_histo_denoise.cli import main
from napari_histo_denoise.cli.before_after import SAMPLE, SAMPLE_CROP_AT
from napari_histo_denoise.io import read_image
from napari_histo_denoise.models import build_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("w") / "basic.safetensors", build_model("basic"))


def _find(picture: np.ndarray, crop: np.ndarray) -> bool:
    corners = np.argwhere((picture == crop[0, 0]).all(-1))
    h, w = crop.shape[:2]
    return any(np.array_equal(picture[y : y + h, x : x + w], crop) for y, x in corners)


def test_default_crop_is_in_the_held_out_half_of_the_bundled_slide(weights, tmp_path, capsys):
    out = tmp_path / "picture.png"
    argv = ["before-after", "--weights", str(weights), "--crop", "64", "--tile-size", "128"]
    assert main([*argv, "-o", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "PSNR against the clean crop: noisy 2" in text and f"wrote {out}" in text
    levels, _ = read_image(SAMPLE)
    slide = levels[0] if isinstance(levels, list) else levels
    y, x = SAMPLE_CROP_AT
    assert y >= slide.shape[0] // 2  # the bottom half: the demo trains on the top half
    clean = np.asarray(slide[y : y + 64, x : x + 64])[..., :3]
    picture = io.imread(out)
    assert _find(picture, clean)  # the clean panel, pixel for pixel
    assert picture.shape[1] >= 3 * 64 and picture.shape[0] > 64


def test_any_image_position_and_noise(weights, tmp_path, capsys):
    image = tmp_path / "ihc.png"
    io.imsave(image, data.immunohistochemistry(), check_contrast=False)
    out = tmp_path / "ihc.jpg"
    argv = ["before-after", "--image", str(image), "--weights", str(weights), "--crop", "48"]
    argv += ["--tile-size", "128", "--device", "cpu", "--sigma", "50", "-o", str(out)]
    assert main([*argv, "--at", "10", "20"]) == 0
    assert "noisy 1" in capsys.readouterr().out  # sigma 50: about 14-15 dB
    assert io.imread(out).shape[1] >= 3 * 48
    assert main([*argv, "--at", "500", "0"]) == 2
    assert "does not fit the 512 x 512 image" in capsys.readouterr().err


def test_without_bundled_weights_it_says_how_to_get_some(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    assert main(["before-after", "-o", str(tmp_path / "x.jpg")]) == 2
    assert "histo-denoise train" in capsys.readouterr().err
