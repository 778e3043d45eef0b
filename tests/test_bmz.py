"""bioimage.io model packages: export, bioimage.io's own test, and reading packages back.

One small trained basic model (a few steps on a crop) is exported once for the module; the
tests that need a damaged or foreign package edit a copy of its description in a folder
whose weight files are links to the exported ones. Nothing here reaches the network: the
tests that read or test a package run with sockets refused.
"""

from __future__ import annotations

import gc
import socket
import warnings
import zipfile

import numpy as np
import pytest
import yaml
from skimage.data import immunohistochemistry

import napari_histo_denoise as hd
from napari_histo_denoise.bmz import HALO, MIN_TILE, model_card, package_model, read_package
from napari_histo_denoise.checkpoint import WeightsError, is_package, load_model
from napari_histo_denoise.cli import main

IHC = immunohistochemistry()


@pytest.fixture
def offline(monkeypatch):
    """Refuse every network connection for the test's duration, and fail if one was tried."""
    tried = []

    def refuse(*args, **kwargs):
        tried.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert not tried, f"the test tried to reach the network: {tried}"


@pytest.fixture(scope="module")
def small_trained(tmp_path_factory):
    """The basic model trained for a few steps on an IHC crop, saved with its record."""
    result = hd.train(
        IHC[:128, :128], "basic", steps=2, patch_size=32, batch_size=2, val_crop=32,
        val_crops=1, seed=0, device="cpu",
    )  # fmt: skip
    return result.save(tmp_path_factory.mktemp("trained") / "small.safetensors")[0]


@pytest.fixture(scope="module")
def package(small_trained, tmp_path_factory):
    """The small model as a package with every weight format and the smallest test input."""
    path = tmp_path_factory.mktemp("package") / "small.zip"
    events = []
    written = hd.export_bmz(small_trained, path, test_size=MIN_TILE, progress=events.append)
    assert written == path and [e.done for e in events] == [1, 2, 3, 4, 5]
    return path


@pytest.fixture(scope="module")
def unpacked(package, tmp_path_factory):
    """The package's files, extracted once."""
    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    return folder


def edited(unpacked, tmp_path, edit):
    """A copy of the package as a folder: ``edit(rdf)`` applied, the other files linked."""
    tmp_path.mkdir(exist_ok=True)
    for item in unpacked.iterdir():
        if item.name != "rdf.yaml":
            (tmp_path / item.name).symlink_to(item)
    rdf = yaml.safe_load((unpacked / "rdf.yaml").read_text())
    edit(rdf)
    (tmp_path / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return tmp_path / "rdf.yaml"


def test_the_package_passes_bioimageio_test(package, offline):
    passed, report = hd.run_bmz_test(package)  # what `bioimageio test PACKAGE` runs
    assert passed, report
    for weights in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"Reproduce test outputs from test inputs ({weights})" in report


def test_the_package_describes_the_model_the_engine_and_the_training(package, small_trained):
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        card = archive.read("README.md").decode()
    assert {"weights.pt", "weights.torchscript.pt", "weights.onnx", "cover.jpg"} <= names
    assert rdf["format_version"].startswith("0.5") and rdf["license"] == "BSD-3-Clause"
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert architecture == {
        "callable": "HistoAutoencoder",
        "import_from": "napari_histo_denoise.models.basic",
    }
    (image,) = rdf["inputs"]
    assert [a["type"] for a in image["axes"]] == ["batch", "channel", "space", "space"]
    assert image["axes"][2]["size"] == {"min": MIN_TILE, "step": 16}
    assert image["data"]["range"] == [0.0, 1.0] and image["data"]["type"] == "float32"
    assert [a.get("halo") for a in rdf["outputs"][0]["axes"]][2:] == [HALO, HALO]
    assert any(c.get("doi") == "10.1007/978-3-319-24574-4_28" for c in rdf["cite"])  # U-Net
    _, meta = load_model(small_trained)
    stored = rdf["config"]["napari_histo_denoise"]
    assert stored["lineage"]["total"] == meta["lineage"]["total"]
    assert f"{meta['lineage']['total']['steps']} optimiser steps" in card
    assert "## Validation" in card and "## Data and licences" in card


def test_a_package_round_trips_with_identical_output(package, small_trained, offline):
    image = IHC[:100, :90]
    direct = hd.denoise(image, "basic", small_trained, tile_size=64, overlap=16, device="cpu")
    for result in (
        hd.denoise(image, package, tile_size=64, overlap=16, device="cpu"),  # the model itself
        hd.denoise(image, "basic", package, tile_size=64, overlap=16, device="cpu"),
    ):
        np.testing.assert_array_equal(result.compute(), direct.compute())
    _, meta = load_model(package)
    assert meta["architecture"] == "basic" and meta["bioimageio_name"]
    assert meta["steps"] == load_model(small_trained)[1]["steps"]


def test_the_cli_exports_and_denoises_with_a_package(small_trained, package, tmp_path, capsys):
    out = tmp_path / "state_dict_only.zip"
    args = ["export-bmz", str(small_trained), "-o", str(out), "--formats", "pytorch_state_dict"]
    assert main([*args, "--test-size", str(MIN_TILE), "--test"]) == 0
    assert "wrote" in capsys.readouterr().out and is_package(out)
    with zipfile.ZipFile(out) as archive:
        assert "weights.onnx" not in archive.namelist()
    assert main(args) == 2  # the package exists: refused without --overwrite
    assert "exists" in capsys.readouterr().err
    source = tmp_path / "in.png"
    import imageio.v3 as iio

    iio.imwrite(source, IHC[:96, :96])
    assert main(["denoise", str(source), "-o", str(tmp_path / "out.png"), "--weights",
                 str(package), "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    assert iio.imread(tmp_path / "out.png").shape == (96, 96, 3)


def test_a_plain_state_dict_exports_with_its_parameter_count(small_trained, tmp_path):
    import torch

    model, _ = load_model(small_trained)
    torch.save(model.state_dict(), tmp_path / "plain.pt")  # no metadata
    path = hd.export_bmz(
        tmp_path / "plain.pt", tmp_path / "plain.zip", formats=["pytorch_state_dict"],
        test_size=MIN_TILE,
    )  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        card = archive.read("README.md").decode()
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
    count = sum(p.numel() for p in model.parameters())
    assert f"({count:,} parameters)" in card
    assert rdf["config"]["bioimageio"]["model_parameter_count"] == count


def test_the_card_does_not_give_the_source_files_storage_as_the_packages():
    card = model_card({"architecture": "basic", "parameters": 1, "storage_dtype": "int8"}, 80)
    assert "- exported from weights stored as: int8" in card  # the package's are float32
    assert "- weights stored as" not in card


def test_the_card_says_when_earlier_training_is_not_recorded():
    run = {"steps": 10, "batch_size": 2, "elapsed_s": 36, "device": "cpu", "architecture": "basic"}
    assert "own run only" not in model_card(run, 80)
    card = model_card({**run, "init_sha256": "ab" * 32}, 80)
    assert "- 10 optimiser steps in 1 run(s)" in card
    assert "own run only: it went on from earlier weights (abababababababab...)" in card


def test_a_cancelled_export_leaves_nothing(small_trained, tmp_path):
    target = tmp_path / "cancelled.zip"
    with pytest.raises(hd.Cancelled):
        hd.export_bmz(small_trained, target, formats=["pytorch_state_dict"], cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_bad_export_arguments_are_refused_before_any_work(small_trained, tmp_path):
    with pytest.raises(ValueError, match="weight formats"):
        hd.export_bmz(small_trained, tmp_path / "m.zip", formats=["torchscript"])
    with pytest.raises(ValueError, match="multiple of 16"):
        hd.export_bmz(small_trained, tmp_path / "m.zip", test_size=100)
    with pytest.raises(ValueError, match="test_size 480 is too large for the bundled slide"):
        hd.iter_export_bmz(small_trained, tmp_path / "m.zip", test_size=480)  # on the call
    with pytest.raises(WeightsError, match="not a weights file"):
        hd.export_bmz(__file__, tmp_path / "m.zip")


def _axes_of_one_channel(rdf):
    rdf["inputs"][0]["axes"][1]["channel_names"] = ["grey"]


def _another_architecture(rdf):
    rdf["weights"]["pytorch_state_dict"]["architecture"]["import_from"] = "their_lib.models"


def _torchscript_only(rdf):
    del rdf["weights"]["pytorch_state_dict"]
    for entry in rdf["weights"].values():
        entry.pop("parent", None)


def _not_a_model(rdf):
    del rdf["inputs"]


def _altered_weights(rdf):
    rdf["weights"]["pytorch_state_dict"]["sha256"] = "0" * 64


def _missing_weights(rdf):
    rdf["weights"]["pytorch_state_dict"]["source"] = "absent.pt"


def _remote_weights(rdf):
    rdf["weights"]["pytorch_state_dict"]["source"] = "https://example.org/weights.pt"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_axes_of_one_channel, r"take batch, channel \(3, RGB\), y, x"),
        (_another_architecture, r"another architecture \(their_lib\.models\.HistoAutoencoder\)"),
        (_torchscript_only, "holds no pytorch_state_dict weights"),
        (_not_a_model, "not a valid bioimage.io model package"),
        (_altered_weights, "do not match the SHA-256"),
        (_missing_weights, r"absent\.pt cannot be read"),
        (_remote_weights, r"not in the package but at https://example\.org/weights\.pt"),
    ],
)
def test_a_package_this_plugin_cannot_run_is_refused_clearly(
    unpacked, tmp_path, offline, edit, message
):
    rdf = edited(unpacked, tmp_path, edit)
    assert is_package(rdf)
    with pytest.raises(WeightsError, match=message):
        read_package(rdf)
    with pytest.raises(WeightsError, match=message):  # every face reads weights this way
        hd.denoise(IHC[:64, :64], "basic", rdf)


def zipped(rdf, target):
    """The package folder of ``rdf`` (from :func:`edited`) as a ``.zip``."""
    with zipfile.ZipFile(target, "w") as archive:
        for item in rdf.parent.iterdir():
            archive.write(item, item.name)
    return target


def test_a_refused_zip_package_is_closed_before_the_error_leaves(unpacked, tmp_path, offline):
    rdf = edited(unpacked, tmp_path / "folder", _another_architecture)
    package = zipped(rdf, tmp_path / "theirs.zip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for read in (read_package, package_model):
            with pytest.raises(WeightsError, match="another architecture"):
                read(package)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_zip_package_without_its_weights_is_refused_clearly(package, tmp_path, offline):
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(damaged, "w") as archive:
        for name in source.namelist():
            if name != "weights.pt":
                archive.writestr(name, source.read(name))
    with pytest.raises(WeightsError, match=r"weights\.pt cannot be read"):
        read_package(damaged)


def test_a_package_of_the_other_architecture_names_it(unpacked, tmp_path, offline):
    def deep(rdf):
        rdf["weights"]["pytorch_state_dict"]["architecture"] = {
            "callable": "DeepHistoAutoencoder",
            "import_from": "napari_histo_denoise.models.deep",
        }

    rdf = edited(unpacked, tmp_path, deep)
    assert package_model(rdf) == "deep"  # what the widget's Model follows
    with pytest.raises(WeightsError, match="declares the deep model, but its weights"):
        hd.load_model(rdf)


def test_a_zip_that_is_no_package_is_read_as_what_it_is(tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert not is_package(other)
    with pytest.raises(WeightsError, match="corrupt PyTorch file"):
        load_model(other)
    with pytest.raises(ValueError, match=r"a bioimage\.io package"):
        hd.denoise(IHC[:64, :64], other)


def test_the_widget_exports_trained_weights_and_follows_a_chosen_package(
    make_napari_viewer, small_trained, unpacked, tmp_path, qtbot
):
    from napari_histo_denoise._napari.session import TrainedWeights

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-histo-denoise", "Histo Denoise")
    train = widget.train
    assert not train.export_button.isEnabled()  # nothing trained yet
    train.last_trained = TrainedWeights(small_trained, "basic", "small")
    run = train.export_bmz(tmp_path / "cancelled")
    train.cancel()
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    assert run.status == "cancelled" and list(tmp_path.iterdir()) == []
    run = train.export_bmz(tmp_path / "mine")  # the suffix becomes .zip
    assert not train.export_button.isEnabled()  # while it runs
    qtbot.waitUntil(lambda: run.done, timeout=180_000)
    assert run.status == "finished", run.message
    assert run.result == tmp_path / "mine.zip" and is_package(run.result)
    assert train.export_button.isEnabled() and "mine.zip" in train.progress_row.status.text()

    def deep(rdf):
        rdf["weights"]["pytorch_state_dict"]["architecture"] = {
            "callable": "DeepHistoAutoencoder",
            "import_from": "napari_histo_denoise.models.deep",
        }

    widget.weights.set_path(edited(unpacked, tmp_path / "deep", deep))
    assert widget.model_combo.currentText() == "deep"  # the Model follows the package
    widget.weights.set_path(run.result)
    assert widget.model_combo.currentText() == "basic"
