"""The trained basic weights the repository holds (bundled, else the release candidate).

Real checks on real pixels: the file is what its record says, it denoises a crop of the
bundled CMU-1 slide, and the CPU's bf16 fast path stays at least 45 dB PSNR from fp32 with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_histo_denoise import devices, engine, pretrained
from napari_histo_denoise.checkpoint import load_model
from napari_histo_denoise.evaluation import tissue_crops
from napari_histo_denoise.files import file_sha256
from napari_histo_denoise.metrics import psnr
from napari_histo_denoise.noise import add_gaussian_noise

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT / "src/napari_histo_denoise/data/cmu1_small_region.svs"


@pytest.fixture(scope="module")
def model(trained_basic):
    return load_model(trained_basic)


@pytest.fixture(scope="module")
def crops():
    """Two 128 px tissue crops of the bundled slide, clean and with Gaussian noise (sigma 25)."""
    clean = [c for *_, c in tissue_crops([str(SLIDE)], 128, 2, seed=0)]
    noisy = [add_gaussian_noise(c, 25, seed=i).astype(np.float32) for i, c in enumerate(clean)]
    return clean, noisy


def _denoise(model, image, precision, backend="torch"):
    options = dict(tile_size=128, overlap=32, device="cpu", precision=precision, backend=backend)
    out = engine.denoise(image, model, **options)
    return np.asarray(out.compute(), dtype=np.float64)


def test_the_file_is_the_one_its_record_names(trained_basic, model):
    if trained_basic.parent == pretrained.WEIGHTS_DIR:
        expected = pretrained.bundled("basic").sha256
    else:
        lineage = json.loads((trained_basic.parent / "lineage.json").read_text())
        expected = lineage["runs"][-1]["sha256"]
        total = lineage["total"]
        assert total["steps"] == sum(run["steps"] for run in lineage["runs"])
    assert file_sha256(trained_basic) == expected
    assert trained_basic.stat().st_size <= 36_000_000
    net, meta = model
    assert meta["storage_dtype"] == "int8" and meta["architecture"] == "basic"
    assert sum(p.numel() for p in net.parameters()) == 34_544_963


def test_the_weights_denoise_the_bundled_slide(model, crops):
    net, _ = model
    for clean, noisy in zip(*crops, strict=True):
        out = _denoise(net, noisy, "fp32")
        assert psnr(clean, out) > psnr(clean, noisy) + 4  # measured: about +6 dB
        assert psnr(clean, _denoise(net, clean.astype(np.float32), "fp32")) > 25


@pytest.mark.parametrize("backend", ["torch", "openvino"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_cpu_path_stays_within_45_db_psnr_of_torch_fp32(model, crops, backend, precision):
    """The accuracy gate of the fast paths that ``auto`` may choose (measured: 58-67 dB)."""
    net, _ = model
    clean, noisy = crops
    for image in [*noisy, clean[0].astype(np.float32)]:
        reference = _denoise(net, image, "fp32")
        assert psnr(reference, _denoise(net, image, precision, backend)) >= 45


def test_auto_precision_on_the_cpu_is_bf16_exactly_where_it_is_native(monkeypatch, model, crops):
    native = devices.cpu_has_native_bf16()
    assert devices.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    net, _ = model
    auto = _denoise(net, crops[1][0], "auto")
    assert np.array_equal(auto, _denoise(net, crops[1][0], "bf16" if native else "fp32"))

    for flag, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda flag=flag: flag)
        assert devices.resolve_precision("auto", "cpu") == expected
        assert devices.resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
        assert devices.resolve_precision("fp32", "cpu") == "fp32"
    cpu = torch.device("cpu")
    assert devices.uses_channels_last(cpu, "bf16") and not devices.uses_channels_last(cpu, "fp32")
    assert devices.uses_channels_last(torch.device("cuda", 0), "fp32")
    assert not devices.uses_channels_last(cpu, "bf16", "openvino")
