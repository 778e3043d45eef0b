import subprocess
import sys

import pytest
import torch

from napari_histo_denoise.models import (
    MODELS,
    DeepHistoAutoencoder,
    HistoAutoencoder,
    build_model,
)

from seed_report import layer_rows, seed_text

TOTALS = {"basic": 34_544_963, "deep": 133_288_259}
TITLES = {"basic": "BASIC AUTOENCODER", "deep": "DEEP AUTOENCODER"}


@pytest.mark.parametrize("name", ["basic", "deep"])
def test_parameter_totals_match_the_seed(name):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == TOTALS[name]
    assert all(p.requires_grad for p in model.parameters())


def test_registry_builds_the_named_classes():
    assert isinstance(build_model("basic"), HistoAutoencoder)
    assert isinstance(build_model("deep"), DeepHistoAutoencoder)
    assert set(MODELS) == {"basic", "deep"}


@pytest.mark.parametrize("bad", ["Basic", "unet", "", None])
def test_unknown_model_name_lists_the_valid_names(bad):
    with pytest.raises(ValueError, match=r"valid names are 'basic', 'deep'"):
        build_model(bad)


@pytest.mark.parametrize("name", ["basic", "deep"])
def test_state_dict_keys_are_the_seed_layer_names(name):
    seed_layers = {row[0] for row in layer_rows(seed_text(), TITLES[name]) if row[4] > 0}
    model_layers = {key.rsplit(".", 1)[0] for key in build_model(name).state_dict()}
    assert model_layers == seed_layers


@pytest.mark.parametrize("name", ["basic", "deep"])
@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (3, 3, 48, 80), (2, 3, 16, 64)])
def test_forward_keeps_size_and_range(name, shape):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # A different input gives a different output: the network really computes something.
    with torch.no_grad():
        assert not torch.equal(model(torch.rand(shape)), y)


def test_forward_in_training_mode_backpropagates():
    model = build_model("basic").train()
    x = torch.rand(2, 3, 32, 32)
    loss = torch.nn.functional.l1_loss(model(x), x)
    loss.backward()
    assert model.encoder1[0].weight.grad is not None
    assert float(model.encoder1[0].weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["basic", "deep"])
@pytest.mark.parametrize("shape", [(1, 3, 30, 32), (1, 3, 32, 100), (1, 3, 8, 8)])
def test_sizes_that_are_not_multiples_of_16_are_refused(name, shape):
    with pytest.raises(ValueError, match="multiples of 16"):
        build_model(name)(torch.rand(shape))


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 32, 32), (1, 4, 32, 32)])
def test_wrong_layout_is_refused(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        build_model("basic")(torch.rand(shape))


def test_core_imports_without_gui_packages():
    # Every module of the package except the napari face (``_napari``).
    code = (
        "import importlib, pkgutil, sys\n"
        "import napari_histo_denoise as h\n"
        "names = [m.name for m in pkgutil.walk_packages(h.__path__, 'napari_histo_denoise.')"
        " if '._napari' not in m.name and not m.name.endswith('__main__')]\n"
        "assert 'napari_histo_denoise.engine' in names and len(names) > 15, names\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "from napari_histo_denoise.cli import build_parser\n"
        "build_parser()\n"
        "bad = [m for m in ('napari', 'qtpy', 'magicgui', 'vispy', 'PyQt5', 'PyQt6', 'PySide2',"
        " 'PySide6') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_the_package_does_not_import_torch():
    code = (
        "import sys\nimport napari_histo_denoise\n"
        "assert 'torch' not in sys.modules\n"
        "assert napari_histo_denoise.__version__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
