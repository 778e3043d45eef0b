"""The OpenVINO backend: when auto picks it, that it gives torch's output, cancel, reuse."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from skimage import data
from torch import nn

from napari_histo_denoise import devices, engine
from napari_histo_denoise.engine.model_cache import ModelSource, prepared_model
from napari_histo_denoise.engine.openvino_model import OpenVinoModel
from napari_histo_denoise.events import Cancelled
from napari_histo_denoise.models import build_model, is_package_model
from napari_histo_denoise.settings import DenoiseSettings

IHC = data.immunohistochemistry()[:200, :232]  # real tissue, a size no tile divides


class SmallNet(nn.Module):
    """Two convolutions with a skip: a small module OpenVINO converts like the real ones."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.1 * self.conv2(torch.relu(self.conv1(x)))).clamp(0, 1)


def test_auto_picks_openvino_on_the_cpu_for_the_packages_own_models(monkeypatch):
    assert devices.resolve_backend("auto", "cpu") == "openvino"
    assert devices.resolve_backend("auto", "cpu", own_model=False) == "torch"
    assert is_package_model("basic") and is_package_model(build_model("deep"))
    assert not is_package_model(SmallNet()) and not is_package_model("unet")
    assert devices.resolve_backend("auto", "cuda:0") == "torch"
    assert devices.resolve_backend("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="runs on the CPU, not on cuda"):
        devices.resolve_backend("openvino", "cuda")
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        devices.resolve_backend("onnx", "cpu")
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        DenoiseSettings(model=SmallNet(), backend="onnx")
    monkeypatch.setattr(devices, "openvino_installed", lambda: False)
    assert devices.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match=r"pip install 'napari-histo-denoise\[openvino\]'"):
        devices.resolve_backend("openvino", "cpu")


def test_openvino_fp32_gives_torchs_output_through_the_engine(monkeypatch):
    calls = []
    run = OpenVinoModel.__call__
    monkeypatch.setattr(
        OpenVinoModel, "__call__", lambda self, *a: calls.append(1) or run(self, *a)
    )
    options = dict(tile_size=64, overlap=16, device="cpu", precision="fp32")
    torch_out = engine.denoise(IHC, SmallNet(), backend="torch", **options).compute()
    assert not calls
    openvino_out = engine.denoise(IHC, SmallNet(), backend="openvino", **options).compute()
    assert calls  # OpenVINO ran every batch
    assert openvino_out.dtype == np.uint8 and openvino_out.shape == IHC.shape
    # uint8 results: at most a rounding step apart, and nearly all equal.
    difference = np.abs(openvino_out.astype(int) - torch_out.astype(int))
    assert difference.max() <= 1 and np.mean(difference) < 1e-3


def test_a_shape_compiles_once_and_a_cancel_stops_a_running_pass():
    model = build_model("basic").eval()
    source = ModelSource.from_settings(DenoiseSettings(model=model))
    prepared = prepared_model(source, "cpu", "fp32", "openvino")
    assert prepared.backend == "openvino" and not prepared.channels_last
    batch = torch.rand(2, 3, 256, 256)
    first = prepared.forward(batch)
    kept = first.clone()
    prepared.forward(torch.rand(2, 3, 256, 256))  # the same shape, other pixels
    torch.testing.assert_close(first, kept)  # a result is the caller's, never overwritten
    torch.testing.assert_close(prepared.forward(batch[:1]), first[:1])  # a short last batch
    assert prepared.openvino.shapes() == [(256, 256)]  # one tile shape, compiled once
    prepared.forward(torch.rand(2, 3, 64, 64))
    assert prepared.openvino.shapes() == [(256, 256), (64, 64)]

    stop = threading.Event()

    def check_cancel() -> None:  # called while the pass runs: set from the first poll
        stop.set()
        raise Cancelled("denoising was cancelled")

    big = torch.rand(4, 3, 512, 512)  # several polls long on any CPU
    with pytest.raises(Cancelled):
        prepared.forward(big, check_cancel)
    assert stop.is_set()
    torch.testing.assert_close(prepared.forward(batch), first)  # still usable afterwards
    assert prepared.forward(big[:1]).shape == (1, 3, 512, 512)  # the cancelled shape too


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_records_say_the_precision_openvino_really_runs(precision):
    asked = devices.resolve_run("cpu", precision, "openvino")
    runner = OpenVinoModel(SmallNet().eval(), precision)
    runner(np.zeros((1, 3, 32, 32), np.float32))
    (request,) = runner._requests.values()
    ran = request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT").get_type_name()
    names = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
    assert asked == {"device": "cpu", "precision": names[ran], "backend": "openvino"}
