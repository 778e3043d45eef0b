import re

from skimage import io

from napari_histo_denoise.cli import main


def test_demo_writes_the_images_and_prints_psnr(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "2", "--crop", "64", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    figures = dict(re.findall(r"^(noisy|tv_baseline|denoised)\s+([\d.]+)\s", text, re.M))
    assert set(figures) == {"noisy", "tv_baseline", "denoised"}
    # sigma 25 on [0, 1] images: the noisy copy is about 20 dB, TV clearly above it.
    assert 19 < float(figures["noisy"]) < 22
    assert float(figures["tv_baseline"]) > float(figures["noisy"])
    for name in ("clean", "noisy", "denoised", "tv_baseline"):
        assert io.imread(out / f"{name}.png").shape == (64, 64, 3)
    assert io.imread(out / "before_after.png").shape == (64, 192, 3)
    assert (out / "demo_basic.safetensors").stat().st_size > 100_000_000
    assert (out / "demo_basic.json").exists() and (out / "demo_basic.curves.png").exists()


def test_demo_refuses_a_crop_larger_than_the_held_out_half(capsys):
    assert main(["demo", "--crop", "5000"]) == 2
    assert "--crop must be between" in capsys.readouterr().err
