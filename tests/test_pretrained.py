"""Compact int8 weights and the bundled default, with a stand-in file where the package looks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from skimage.data import immunohistochemistry
from torch import nn

import napari_histo_denoise as hd
from napari_histo_denoise import pretrained
from napari_histo_denoise.checkpoint import (
    SCALE_SUFFIX,
    WeightsError,
    file_sha256,
    load_model,
    read_weights,
    save_weights,
)
from napari_histo_denoise.cli import main
from napari_histo_denoise.models import build_model

TILE, OVERLAP = 64, 16
SUMMARY = "basic U-Net, stand-in weights of the test suite"


@pytest.fixture(scope="module")
def basic():
    torch.manual_seed(3)
    return build_model("basic").eval()


@pytest.fixture(scope="module")
def int8_file(basic, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "basic.int8.safetensors"
    return save_weights(path, basic, {"steps": 5}, dtype="int8")


@pytest.fixture
def bundle(int8_file, tmp_path, monkeypatch):
    """Place the stand-in int8 file and its index where the package looks for bundled weights."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / int8_file.name).write_bytes(int8_file.read_bytes())
    index = {
        "basic": {"file": int8_file.name, "sha256": file_sha256(int8_file), "summary": SUMMARY}
    }
    (folder / pretrained.INDEX_NAME).write_text(json.dumps(index))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    return folder / int8_file.name


@pytest.fixture
def ihc():
    return np.ascontiguousarray(immunohistochemistry()[200:264, 220:284])


# ----------------------------------------------------------------------------- int8 format


def test_int8_file_is_small_and_every_weight_within_half_a_step(basic, int8_file):
    assert int8_file.stat().st_size <= 36_000_000
    with safe_open(str(int8_file), "pt") as fh:
        stored = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = json.loads(fh.metadata()["napari_histo_denoise"])
    assert meta["storage_dtype"] == "int8" and meta["steps"] == 5
    state, convs = basic.state_dict(), 0
    for name, module in basic.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        convs += 1
        key = f"{name}.weight"
        codes, scales = stored[key], stored[key + SCALE_SUFFIX]
        assert codes.dtype == torch.int8 and scales.dtype == torch.float32
        axis = 1 if isinstance(module, nn.ConvTranspose2d) else 0  # output channels
        expected = [1] * codes.ndim
        expected[axis] = codes.shape[axis]
        assert list(scales.shape) == expected
        dims = [d for d in range(codes.ndim) if d != axis]
        assert bool((codes.abs().amax(dims) == 127).all())  # each channel uses the whole range
        error = (codes.float() * scales - state[key]).abs()
        assert bool((error <= scales / 2 + 1e-7).all()), key
    assert convs == 20  # 8 encoder, 2 bottleneck, 4 + 4 decoder, 2 final
    for key in ("encoder1.0.bias", "encoder1.1.weight", "encoder1.1.running_var"):
        assert stored[key].dtype == torch.float32 and torch.equal(stored[key], state[key])


def test_int8_file_loads_as_a_float32_model_close_to_the_original(basic, int8_file):
    model, meta = load_model(int8_file)
    assert meta["architecture"] == "basic" and meta["storage_dtype"] == "int8"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = torch.from_numpy(immunohistochemistry()[:64, :64].astype(np.float32) / 255)
    x = x.permute(2, 0, 1)[None]
    with torch.no_grad():
        mse = float(((model(x) - basic(x)) ** 2).mean())
    assert 10 * np.log10(1 / mse) > 45


def test_float16_storage_halves_every_float_tensor(basic, tmp_path):
    path = save_weights(tmp_path / "half.safetensors", basic, dtype="float16")
    with safe_open(str(path), "pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}
    assert dtypes == {torch.float16, torch.int64}  # int64: batch norm's step counters
    model, meta = load_model(path)
    assert meta["storage_dtype"] == "float16"
    assert next(model.parameters()).dtype == torch.float32


def test_unknown_storage_dtype_is_refused(basic, tmp_path):
    with pytest.raises(ValueError, match="unknown storage dtype 'int4'"):
        save_weights(tmp_path / "x.safetensors", basic, dtype="int4")


def test_int8_without_scales_and_integer_weights_are_refused(int8_file, tmp_path):
    state, _ = read_weights(int8_file)
    no_scale = dict(state, **{"final.3.weight": state["final.3.weight"].to(torch.int8)})
    save_file(no_scale, tmp_path / "noscale.safetensors")
    with pytest.raises(WeightsError, match=r"'final.3.weight' holds int8 values"):
        load_model(tmp_path / "noscale.safetensors")
    as_int = dict(state, **{"encoder1.0.bias": state["encoder1.0.bias"].to(torch.int32)})
    torch.save(as_int, tmp_path / "int.pt")
    with pytest.raises(WeightsError, match=r"int.pt: 'encoder1.0.bias' holds int32 values"):
        load_model(tmp_path / "int.pt")
    with safe_open(str(int8_file), "pt") as fh:
        stored = {k: fh.get_tensor(k) for k in fh.keys()}
    bad_scale = dict(stored, **{"final.3.weight" + SCALE_SUFFIX: torch.ones(2, 1, 1, 1)})
    save_file(bad_scale, tmp_path / "badscale.safetensors")
    with pytest.raises(WeightsError, match="does not fit the tensor's"):
        load_model(tmp_path / "badscale.safetensors")


# ----------------------------------------------------------------------------- bundled default


def test_no_bundled_weights_says_how_to_train_them(tmp_path, monkeypatch, ihc):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "nothing")
    assert pretrained.bundled("basic") is None
    for model in ("basic", "deep"):
        with pytest.raises(
            ValueError,
            match=rf"needs weights.*histo-denoise train --preset "
            rf"release --model {model}",
        ):
            hd.denoise(ihc, model)


def test_deep_has_no_bundled_weights_even_when_basic_has(bundle, ihc):
    with pytest.raises(ValueError, match="bundles none for it"):
        hd.denoise(ihc, "deep")


def test_denoise_uses_the_bundled_weights(bundle, ihc):
    options = dict(tile_size=TILE, overlap=OVERLAP, device="cpu")
    bundled = hd.denoise(ihc, "basic", **options).compute()
    explicit = hd.denoise(ihc, "basic", bundle, **options).compute()
    np.testing.assert_array_equal(bundled, explicit)
    assert hd.DenoiseSettings(model="basic").weights == bundle


def test_a_damaged_bundled_file_is_refused(bundle, ihc):
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 0xFF
    bundle.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"bundled basic weights .* are damaged"):
        hd.denoise(ihc, "basic")


def test_cli_denoise_without_weights_uses_the_bundled_ones(bundle, ihc, tmp_path, capsys):
    from skimage import io

    source, out = tmp_path / "ihc.png", tmp_path / "out.png"
    io.imsave(source, ihc, check_contrast=False)
    argv = ["denoise", str(source), "-o", str(out), "--tile-size", "64", "--overlap", "16"]
    assert main([*argv, "--device", "cpu", "--quiet"]) == 0
    expected = hd.denoise(ihc, "basic", bundle, tile_size=64, overlap=16, device="cpu")
    np.testing.assert_array_equal(io.imread(out), np.asarray(expected))
    assert main([*argv, "--model", "deep", "--overwrite"]) == 2
    assert "--preset release --model deep" in capsys.readouterr().err


def test_widget_offers_the_bundled_weights_first(bundle, make_napari_viewer, ihc, qtbot):
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer = hd.denoise_layer(viewer, "ihc", tile_size=TILE, overlap=OVERLAP, device="cpu")
    expected = hd.denoise(ihc, "basic", bundle, tile_size=TILE, overlap=OVERLAP, device="cpu")
    np.testing.assert_array_equal(layer.data, np.asarray(expected))
    assert layer.metadata["histo_denoise"]["weights_sha256"] == file_sha256(bundle)

    widget = next(w for w in viewer.window.dock_widgets.values() if hasattr(w, "weights"))
    combo = widget.weights.combo
    assert combo.currentIndex() == 0 and combo.itemText(0) == pretrained.BUNDLED_LABEL
    assert combo.itemData(0, Qt.ToolTipRole) == SUMMARY
    widget.model_combo.setCurrentText("deep")
    assert combo.itemText(0) == "(choose a weights file)"
    assert "No weights are bundled for the deep model" in combo.itemData(0, Qt.ToolTipRole)
    widget.model_combo.setCurrentText("basic")
    assert combo.itemText(0) == pretrained.BUNDLED_LABEL
    for panel in viewer.window.dock_widgets.values():  # the widget and its summary panel
        if hasattr(panel, "idle"):
            qtbot.waitUntil(lambda p=panel: p.idle, timeout=60_000)
