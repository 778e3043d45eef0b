from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from skimage import data

from napari_histo_denoise import __version__
from napari_histo_denoise.checkpoint import (
    METADATA_KEY,
    WeightsError,
    detect_architecture,
    file_sha256,
    load_model,
    model_from_state_dict,
    save_weights,
)
from napari_histo_denoise.models import build_model


@pytest.fixture(scope="module")
def basic():
    torch.manual_seed(0)
    return build_model("basic").eval()


@pytest.fixture(scope="module")
def saved(basic, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "basic.safetensors"
    save_weights(path, basic, {"noise": "gaussian:25", "mode": "synthetic", "steps": 7})
    return path


@pytest.fixture(scope="module")
def patch():
    # A real 32 x 32 IHC patch as the model input.
    img = data.immunohistochemistry()[100:132, 200:232].astype(np.float32) / 255
    return torch.from_numpy(img).permute(2, 0, 1)[None]


def _deep_keys_state_dict():
    # Keys of the deep model with tiny tensors: enough to be recognised as deep weights.
    with torch.device("meta"):
        keys = build_model("deep").state_dict()
    return {k: torch.zeros(1) for k in keys}


def test_round_trip_gives_identical_outputs_and_metadata(basic, saved, patch):
    model, meta = load_model(saved)
    assert not model.training
    assert type(model) is type(basic)
    with torch.no_grad():
        assert torch.equal(model(patch), basic(patch))
    assert meta["architecture"] == "basic"
    assert meta["parameters"] == sum(p.numel() for p in basic.parameters())
    assert meta["package_version"] == __version__
    assert meta["noise"] == "gaussian:25" and meta["steps"] == 7
    assert meta["created_utc"].endswith("+00:00")
    # The metadata is one JSON string in the safetensors header.
    with safe_open(str(saved), framework="pt") as fh:
        assert json.loads(fh.metadata()[METADATA_KEY])["mode"] == "synthetic"


def test_device_is_validated(saved):
    model, _ = load_model(saved, device="auto")
    assert next(model.parameters()).device.type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device 'gpu7'"):
        load_model(saved, device="gpu7")


def test_caller_cannot_override_the_architecture(basic, tmp_path):
    path = save_weights(tmp_path / "w.safetensors", basic, {"architecture": "deep"})
    assert load_model(path)[1]["architecture"] == "basic"


def test_save_leaves_no_partial_file_on_failure(basic, tmp_path, monkeypatch):
    import safetensors.torch

    def explode(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        save_weights(tmp_path / "w.safetensors", basic)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_unknown_models_and_bad_metadata(basic, tmp_path):
    with pytest.raises(ValueError, match="basic or deep"):
        save_weights(tmp_path / "w.safetensors", torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_weights(tmp_path / "w.safetensors", basic, {"x": object()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model_state_dict"])
def test_plain_torch_state_dicts_load(basic, patch, tmp_path, wrapper):
    sd = {f"module.{k}": v for k, v in basic.state_dict().items()}  # DataParallel prefix
    obj = sd if wrapper is None else {wrapper: sd, "epoch": 12}
    path = tmp_path / "seed.pth"
    torch.save(obj, path)
    model, meta = load_model(path)
    assert meta["architecture"] == "basic"
    assert meta.get("epoch") == (None if wrapper is None else 12)
    with torch.no_grad():
        assert torch.equal(model(patch), basic(patch))


def test_architecture_detected_from_keys(basic):
    assert detect_architecture(basic.state_dict()) == "basic"
    assert detect_architecture(_deep_keys_state_dict()) == "deep"
    assert detect_architecture({"foo.weight": torch.zeros(1)}) is None


class _Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_code_carrying_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if how == "pickle":
        path.write_bytes(pickle.dumps({"encoder1.0.weight": _Payload(marker)}, protocol=2))
    else:
        torch.save({"state_dict": {"encoder1.0.weight": _Payload(marker)}}, path)
    # The payload is live: plain pickle would create the marker.
    if how == "pickle":
        pickle.loads(path.read_bytes())["encoder1.0.weight"].close()  # the file it opened
        assert marker.exists()
        marker.unlink()

    with pytest.raises(WeightsError, match="not a safe weights file"):
        load_model(path)
    assert not marker.exists()


def test_truncated_files_are_refused(saved, basic, tmp_path):
    blob = saved.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(WeightsError, match="truncated or corrupt safetensors"):
        load_model(cut)
    pt = tmp_path / "full.pt"
    torch.save(basic.state_dict(), pt)
    cut_pt = tmp_path / "cut.pt"
    cut_pt.write_bytes(pt.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated or corrupt PyTorch"):
        load_model(cut_pt)


def test_non_checkpoint_files_are_refused(tmp_path):
    from skimage import io

    png = tmp_path / "image.png"
    io.imsave(png, data.immunohistochemistry()[:16, :16])
    with pytest.raises(WeightsError, match=r"not a weights file.*PNG image"):
        load_model(png)
    txt = tmp_path / "notes.txt"
    txt.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match=r"not a weights file.*text"):
        load_model(txt)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        load_model(tensor_only)


def test_weights_of_the_other_architecture_are_refused(tmp_path):
    path = tmp_path / "deep.pt"
    torch.save(_deep_keys_state_dict(), path)
    with pytest.raises(WeightsError, match="weights of the deep model, not the basic model"):
        load_model(path, architecture="basic")


def test_missing_and_unexpected_keys_are_named(basic):
    sd = dict(basic.state_dict())
    del sd["final.3.weight"]
    sd["extra.layer.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as info:
        model_from_state_dict(sd)
    msg = str(info.value)
    assert "1 missing keys ('final.3.weight')" in msg
    assert "1 unexpected keys ('extra.layer.weight')" in msg


def test_mismatched_shapes_are_named(basic):
    sd = dict(basic.state_dict())
    sd["final.3.weight"] = torch.zeros(3, 32, 1, 1)
    with pytest.raises(WeightsError) as info:
        model_from_state_dict(sd, "basic")
    msg = str(info.value)
    assert "'final.3.weight'" in msg and "(3, 32, 1, 1)" in msg
    assert str(tuple(basic.state_dict()["final.3.weight"].shape)) in msg


def test_half_precision_weights_load_as_float32(basic, patch):
    sd = {k: v.half() if v.is_floating_point() else v for k, v in basic.state_dict().items()}
    model = model_from_state_dict(sd)
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(model(patch), basic(patch), atol=2e-2)


def test_file_sha256(tmp_path):
    import hashlib

    path = tmp_path / "blob"
    blob = bytes(range(256)) * 9000  # spans several read chunks
    path.write_bytes(blob)
    assert file_sha256(path) == hashlib.sha256(blob).hexdigest()
