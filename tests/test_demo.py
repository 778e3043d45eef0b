import json
import re

from skimage import io

from napari_histo_denoise import pretrained
from napari_histo_denoise.cli import main
from napari_histo_denoise.files import file_sha256


def _figures(text: str) -> dict[str, float]:
    pairs = re.findall(r"^(noisy|tv_baseline|denoised)\s+([\d.]+)\s", text, re.M)
    return {name: float(value) for name, value in pairs}


def test_demo_trains_writes_the_images_and_prints_psnr(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--train", "--steps", "2", "--crop", "64", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "\r" not in text and "step 2 (100%)" in text  # a log, not a redrawn line
    figures = _figures(text)
    assert set(figures) == {"noisy", "tv_baseline", "denoised"}
    # sigma 25 on [0, 1] images: the noisy copy is about 20 dB, TV clearly above it.
    assert 19 < figures["noisy"] < 22
    assert figures["tv_baseline"] > figures["noisy"]
    for name in ("clean", "noisy", "denoised", "tv_baseline"):
        assert io.imread(out / f"{name}.png").shape == (64, 64, 3)
    assert io.imread(out / "before_after.png").shape == (64, 192, 3)
    weights = (out / "demo_basic.safetensors").stat()
    assert weights.st_size > 100_000_000
    assert weights.st_mode & 0o777 == 0o666 & ~_umask()  # as any new file, not owner-only
    assert (out / "demo_basic.json").exists() and (out / "demo_basic.curves.png").exists()


def test_demo_refuses_a_crop_larger_than_the_held_out_half(capsys):
    assert main(["demo", "--crop", "5000"]) == 2
    assert "--crop must be between" in capsys.readouterr().err


def test_demo_uses_bundled_weights_without_training(trained_basic, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / trained_basic.name).symlink_to(trained_basic)
    entry = {"file": trained_basic.name, "sha256": file_sha256(trained_basic), "summary": "s"}
    (weights / pretrained.INDEX_NAME).write_text(json.dumps({"basic": entry}))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
    out = tmp_path / "demo"
    assert main(["demo", "--crop", "128", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    figures = _figures(text)
    assert "denoising with" in text and "training the basic model" not in text
    # Trained weights on a held-out crop of the slide: well above the noisy input and TV.
    assert figures["denoised"] > figures["noisy"] + 4
    assert figures["denoised"] > figures["tv_baseline"] + 0.5
    assert not (out / "demo_basic.safetensors").exists()
    assert io.imread(out / "before_after.png").shape == (128, 384, 3)


def test_demo_weights_and_train_exclude_each_other(tmp_path, capsys):
    assert main(["demo", "--weights", str(tmp_path / "any.safetensors"), "--train"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
