"""The Histo Denoise dock widget, opened through the plugin machinery, on a real viewer."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import dask.array as da
import numpy as np
import pytest
import torch
from napari.utils.notifications import notification_manager
from skimage.data import immunohistochemistry
from skimage.io import imread

from napari_histo_denoise.checkpoint import file_sha256, load_model, save_weights
from napari_histo_denoise.devices import resolve_precision
from napari_histo_denoise.engine import denoise
from napari_histo_denoise.models import build_model

PLUGIN = "napari-histo-denoise"
TILE, OVERLAP = 64, 16


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights of a freshly built basic model (the mechanics are tested, not the quality)."""
    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("w") / "basic.safetensors", build_model("basic"))


@pytest.fixture
def ihc():
    """A real 64 x 64 IHC crop (uint8 RGB)."""
    return np.ascontiguousarray(immunohistochemistry()[200:264, 220:284])


def wait_idle(viewer, qtbot):
    """Let the plugin's background work end before the viewer closes."""
    from napari_histo_denoise._napari.summary_panel import ModelSummaryPanel
    from napari_histo_denoise._napari.widget import HistoDenoiseWidget

    for widget in viewer.window.dock_widgets.values():
        if isinstance(widget, HistoDenoiseWidget):
            widget.cancel()
            widget.train.cancel()
        if isinstance(widget, (HistoDenoiseWidget, ModelSummaryPanel)):
            qtbot.waitUntil(lambda w=widget: w.idle, timeout=60_000)


@pytest.fixture
def setup(make_napari_viewer, ihc, weights, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(
        ihc, name="ihc", rgb=True, scale=(0.5, 0.5), translate=(10, 20), contrast_limits=(5, 250)
    )
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    widget.set_settings(weights=weights, tile_size=TILE, overlap=OVERLAP, device="cpu")
    yield viewer, widget
    wait_idle(viewer, qtbot)


def _errors_since(start: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[start:] if n.severity == "error"]


def _long_run(viewer, widget):
    """Start a run of many small batches on a 256 x 256 crop (long enough to interrupt)."""
    viewer.add_image(immunohistochemistry()[:256, :256], name="big", rgb=True)
    widget.set_layer("big")
    widget.set_settings(tile_size=32, overlap=8, batch_size=1)
    return widget.run()


def test_denoise_adds_a_layer_equal_to_the_core_result(setup, ihc, weights, qtbot):
    viewer, widget = setup
    widget.set_layer("ihc")
    before = ihc.copy()
    run = widget.run()
    assert not widget.model_combo.isEnabled() and not widget.denoise_button.isEnabled()
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    assert run.status == "finished", run.message
    layer = viewer.layers["ihc [denoised: basic, basic.safetensors]"]
    assert run.result.name == layer.name  # the widget holds napari's public proxy
    expected = denoise(ihc, "basic", weights, tile_size=TILE, overlap=OVERLAP, device="cpu")
    np.testing.assert_array_equal(layer.data, np.asarray(expected))
    assert layer.rgb and layer.data.dtype == np.uint8
    np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    np.testing.assert_allclose(layer.translate, (10, 20))
    assert tuple(layer.contrast_limits) == (5, 250)
    record = layer.metadata["histo_denoise"]
    assert record["model"] == "basic" and record["source"] == "ihc"
    assert record["weights"] == str(weights)
    assert record["weights_sha256"] == file_sha256(weights)
    assert (record["tile_size"], record["overlap"], record["device"]) == (TILE, OVERLAP, "cpu")
    assert record["precision"] == resolve_precision("auto", "cpu")
    assert record["seconds"] > 0 and record["mpx_per_s"] > 0
    np.testing.assert_array_equal(viewer.layers["ihc"].data, before)  # source untouched
    assert widget.model_combo.isEnabled() and widget.denoise_button.isEnabled()


def test_a_run_opens_the_summary_panel_which_follows_the_model(setup, qtbot):
    viewer, widget = setup
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    from napari_histo_denoise._napari.summary_panel import ModelSummaryPanel

    panels = [w for w in viewer.window.dock_widgets.values() if isinstance(w, ModelSummaryPanel)]
    assert len(panels) == 1
    panel = panels[0]
    assert (panel.model_combo.currentText(), panel.tile_spin.value()) == ("basic", TILE)
    widget.set_settings(model="deep")
    assert panel.model_combo.currentText() == "deep"


def test_settings_object_round_trips(setup, weights):
    _, widget = setup
    from napari_histo_denoise.settings import DenoiseSettings

    settings = DenoiseSettings(
        model="deep", weights=str(weights), tile_size=128, overlap=24, batch_size=3,
        device="cpu", precision="fp32",
    )  # fmt: skip
    widget.set_settings(settings)
    got = widget.settings()
    assert (got.model, got.weights, got.tile_size, got.overlap, got.batch_size) == (
        "deep", str(weights), 128, 24, 3,
    )  # fmt: skip
    widget.set_settings(batch_size=None)
    assert widget.settings().batch_size is None
    with pytest.raises(ValueError, match="unknown denoise setting"):
        widget.set_settings(tile=3)
    with pytest.raises(ValueError, match="unknown model"):
        widget.set_settings(model="huge")


def test_layer_choosers_are_magicgui_widgets_that_follow_the_viewer(setup):
    from magicgui.widgets import ComboBox, Select

    viewer, widget = setup
    combo, sources, validation = widget.layer_combo, widget.train.sources, widget.train.val_combo
    assert isinstance(combo, ComboBox) and isinstance(validation, ComboBox)
    assert isinstance(sources, Select)
    assert [combo.native.itemText(i) for i in range(combo.native.count())] == ["ihc"]
    viewer.add_labels(np.zeros((8, 8), dtype=np.uint8), name="mask")  # not an Image layer
    viewer.add_image(np.zeros((3, 32, 32), dtype=np.uint16), name="stack")
    viewer.add_image([np.zeros((64, 64)), np.zeros((32, 32))], name="pyramid", multiscale=True)
    assert [c.name for c in combo.choices] == ["ihc", "stack", "pyramid"]
    assert combo.value is viewer.layers["ihc"]  # the choice stays while layers come
    viewer.layers["stack"].name = "z-stack"
    viewer.layers.remove("ihc")
    for chooser in (combo, sources):
        assert sorted(c.name for c in chooser.choices) == ["pyramid", "z-stack"]
    assert validation.choices[0] is None and len(validation.choices) == 3  # "-----": none
    widget.train.set_settings(sources=["pyramid", viewer.layers["z-stack"]], validation=None)
    assert sources.value == [viewer.layers["pyramid"], viewer.layers["z-stack"]]
    assert validation.value is None


def test_widget_remembers_its_settings_between_sessions(make_napari_viewer, weights, qtbot):
    import os
    from pathlib import Path

    def open_widget():
        viewer = make_napari_viewer()
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
        qtbot.waitUntil(lambda: widget.idle, timeout=60_000)  # the device list is in
        return viewer, widget

    viewer, first = open_widget()
    first.set_settings(model="deep", weights=weights, tile_size=128, overlap=24, device="cpu")
    first.set_settings(model="basic")  # the last value counts
    viewer.close()
    assert Path(os.environ["HISTO_DENOISE_SETTINGS"]).is_file()  # not the user's own file
    _, second = open_widget()
    got = second.settings()
    assert (got.model, got.weights, got.tile_size, got.overlap) == ("basic", str(weights), 128, 24)
    assert got.device == "cpu"
    second.set_settings(weights=None, device="auto")  # the bundled entry is remembered too
    _, third = open_widget()
    assert third.weights.path() is None and third.device_combo.currentText() == "auto"


def test_tile_and_overlap_are_checked_as_they_are_typed(setup, qtbot):
    from napari_histo_denoise._napari import preferences

    _, widget = setup
    assert widget.tiling_problem.isHidden()

    def type_into(spin, text):
        spin.lineEdit().selectAll()
        qtbot.keyClicks(spin.lineEdit(), text)

    type_into(widget.tile_spin, "100")
    assert "multiple of 16" in widget.tiling_problem.text()
    assert not widget.tiling_problem.isHidden() and widget.tile_spin.toolTip()
    assert not widget.overlap_spin.toolTip()
    type_into(widget.tile_spin, "128")
    widget.overlap_spin.setValue(64)
    assert "larger than twice the overlap" in widget.overlap_spin.toolTip()
    assert not widget.tile_spin.toolTip()
    assert preferences.remembered()["overlap"] == OVERLAP  # a refused value is not remembered
    type_into(widget.overlap_spin, "40")
    assert widget.tiling_problem.isHidden() and not widget.overlap_spin.toolTip()
    assert preferences.remembered()["overlap"] == 40


def test_cancel_stops_within_a_second_and_adds_no_layer(setup, qtbot):
    viewer, widget = setup
    run = _long_run(viewer, widget)
    qtbot.waitUntil(lambda: widget.progress_row.bar.value() > 0, timeout=60_000)
    layers = len(viewer.layers)
    start = time.monotonic()
    widget.progress_row.cancel_button.click()
    qtbot.waitUntil(lambda: run.done, timeout=1_000)
    assert time.monotonic() - start < 1.0
    assert run.status == "cancelled"
    assert len(viewer.layers) == layers
    assert widget.denoise_button.isEnabled()


def test_runs_show_their_progress_in_napari_activity_dock(setup, qtbot):
    from napari.utils import progress

    viewer, widget = setup

    def activity(words):
        return [p for p in progress._all_instances if words in p.desc]

    run = _long_run(viewer, widget)
    qtbot.waitUntil(lambda: widget.progress_row.bar.value() > 0, timeout=60_000)
    [bar] = activity("Denoising 'big'")
    assert bar.total == 121 and 0 < bar.n <= bar.total  # 11 x 11 tiles of 32 px, stride 24
    widget.cancel()
    qtbot.waitUntil(lambda: run.done, timeout=5_000)
    assert not activity("Denoising")
    train = widget.train
    train.set_settings(sources=["ihc"], steps=10_000, patch_size=32, batch_size=2, device="cpu")
    run = train.run()
    qtbot.waitUntil(lambda: train.progress_row.bar.value() > 0, timeout=60_000)
    [bar] = activity("Training the basic model")
    assert bar.total == 10_000 and bar.n > 0 and "loss" in str(bar)
    train.cancel()
    qtbot.waitUntil(lambda: run.done, timeout=5_000)
    assert not activity("Training")


def test_removing_the_source_mid_run_is_reported_and_adds_nothing(setup, qtbot):
    viewer, widget = setup
    start = len(notification_manager.records)
    run = _long_run(viewer, widget)
    qtbot.waitUntil(lambda: widget.progress_row.bar.value() > 0, timeout=60_000)
    viewer.layers.remove("big")
    qtbot.waitUntil(lambda: run.done, timeout=5_000)
    assert run.status == "cancelled"
    assert [layer.name for layer in viewer.layers] == ["ihc"]
    assert any("'big' was removed" in m for m in _errors_since(start))
    assert widget.denoise_button.isEnabled()


def test_missing_weights_are_refused_with_a_notification(setup):
    viewer, widget = setup
    start = len(notification_manager.records)
    widget.set_settings(weights=None)
    assert widget.run() is None
    assert any("needs weights" in m for m in _errors_since(start))
    assert len(viewer.layers) == 1 and widget.denoise_button.isEnabled()


def test_bad_weights_file_fails_cleanly(setup, tmp_path, qtbot):
    viewer, widget = setup
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a weights file" * 10)
    start = len(notification_manager.records)
    widget.set_settings(weights=bad)
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=30_000)
    assert run.status == "failed"
    errors = _errors_since(start)
    assert errors and errors[-1].startswith("Denoise failed: Bad weights file")
    assert len(viewer.layers) == 1 and widget.denoise_button.isEnabled()


def test_out_of_memory_after_the_engines_retries_is_reported(setup, monkeypatch, qtbot):
    viewer, widget = setup
    import napari_histo_denoise.engine as engine

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield

    monkeypatch.setattr(engine, "run_bands", out_of_memory)
    start = len(notification_manager.records)
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=30_000)
    assert run.status == "failed"
    assert _errors_since(start)[-1].startswith("Denoise failed: Out of memory")
    assert len(viewer.layers) == 1 and widget.denoise_button.isEnabled()


def test_lazy_rgb_input_streams_to_a_multiscale_zarr_result(setup, ihc, weights, qtbot):
    viewer, widget = setup
    viewer.add_image(da.from_array(ihc, chunks=(32, 32, 3)), name="lazy", rgb=True)
    widget.set_layer("lazy")
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    assert run.status == "finished", run.message
    layer = run.result
    assert layer.multiscale and layer.rgb
    assert all(isinstance(level, da.Array) for level in layer.data)  # read lazily from disk
    expected = denoise(ihc, "basic", weights, tile_size=TILE, overlap=OVERLAP, device="cpu")
    np.testing.assert_array_equal(np.asarray(layer.data[0]), np.asarray(expected))


def test_lazy_grayscale_stack_streams_to_zarr(setup, ihc, weights, qtbot):
    viewer, widget = setup
    stack = np.stack([ihc[..., 0], ihc[..., 2]])
    viewer.add_image(da.from_array(stack, chunks=(1, 64, 64)), name="stack")
    widget.set_layer("stack")
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    assert run.status == "finished", run.message
    layer = run.result
    assert not layer.rgb and layer.data.shape == stack.shape
    assert type(layer.data).__module__.startswith("zarr")
    expected = denoise(stack, "basic", weights, tile_size=TILE, overlap=OVERLAP, device="cpu")
    np.testing.assert_array_equal(np.asarray(layer.data), np.asarray(expected))


def test_lazy_rgba_and_grayscale_layers_stream_with_their_progress_in_tiles(
    setup, ihc, weights, qtbot
):
    viewer, widget = setup
    rgba = np.dstack([ihc, np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)])
    viewer.add_image(da.from_array(rgba, chunks=(32, 32, 4)), name="rgba", rgb=True)
    viewer.add_image(da.from_array(ihc[..., 1], chunks=(32, 32)), name="grey")
    options = dict(tile_size=TILE, overlap=OVERLAP, device="cpu")
    formats: list[str] = []
    widget.progress_row.bar.valueChanged.connect(
        lambda *_: formats.append(widget.progress_row.bar.format())
    )
    for name, image in (("rgba", rgba), ("grey", ihc[..., 1])):
        widget.set_layer(name)
        formats.clear()
        run = widget.run()
        qtbot.waitUntil(lambda run=run: run.done, timeout=60_000)
        assert run.status == "finished", run.message
        assert any(f.endswith(" tiles") and not f.startswith("0 / 0") for f in formats), formats
        layer = run.result
        assert layer.multiscale and all(isinstance(level, da.Array) for level in layer.data)
        expected = denoise(image, "basic", weights, **options)
        np.testing.assert_array_equal(np.asarray(layer.data[0]), np.asarray(expected))
        if image.ndim == 3:  # alpha passes through untouched
            np.testing.assert_array_equal(np.asarray(layer.data[0])[..., 3], rgba[..., 3])


def test_viewer_stays_responsive_during_a_cpu_run(setup, qtbot):
    """A 10 ms QTimer probe: the event loop's extra delay stays under 100 ms (99th pct)."""
    from qtpy.QtCore import QTimer

    viewer, widget = setup
    # 25 tiles in torch: a run of about a second on any CPU, long enough for many ticks.
    viewer.add_image(immunohistochemistry()[:256, :256], name="probe", rgb=True)
    widget.set_layer("probe")
    widget.set_settings(tile_size=64, overlap=16, batch_size=1, backend="torch")
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    timer.stop()
    assert run.status == "finished", run.message
    delays = np.diff(ticks) - 0.010
    assert len(delays) > 20
    assert np.percentile(delays, 99) < 0.100


def test_residual_of_a_streamed_pyramid_is_lazy_and_exact(setup, ihc, qtbot):
    viewer, widget = setup
    viewer.add_image(da.from_array(ihc, chunks=(32, 32, 3)), name="lazy", rgb=True)
    widget.set_layer("lazy")
    widget.residual_check.setChecked(True)
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    assert run.status == "finished", run.message
    residual = viewer.layers["lazy [residual: basic, basic.safetensors]"]
    assert residual.multiscale and len(residual.data) == len(run.result.data)
    assert all(isinstance(level, da.Array) for level in residual.data)
    assert [lv.shape for lv in residual.data] == [lv.shape for lv in run.result.data]
    expected = ihc.astype(np.int16) - np.asarray(run.result.data[0])
    np.testing.assert_array_equal(np.asarray(residual.data[0]), expected)
    np.testing.assert_allclose(residual.scale, viewer.layers["lazy"].scale)


def test_residual_levels_are_subsampled_residual_pixels():
    from napari_histo_denoise._napari.residual import residual, residual_levels, signed_dtype

    source = np.arange(8 * 8 * 3, dtype=np.uint16).reshape(8, 8, 3) * 500
    result = source[::-1].copy()
    pyramid = [da.from_array(result), da.from_array(result[::2, ::2]), result[::4, ::4]]
    levels = residual_levels(source, pyramid)
    full = source.astype(np.int32) - result
    assert [lv.shape for lv in levels] == [(8, 8, 3), (4, 4, 3), (2, 2, 3)]
    for level, step in zip(levels, (1, 2, 4), strict=True):
        np.testing.assert_array_equal(np.asarray(level), full[::step, ::step])
    assert isinstance(residual(source, result), np.ndarray)  # in memory stays in memory
    assert signed_dtype(np.float64) == np.float32 and signed_dtype(np.uint8) == np.int16


def test_train_section_trains_selects_and_saves_weights(setup, tmp_path, qtbot):
    viewer, widget = setup
    viewer.add_image(immunohistochemistry()[:128, :128], name="clean", rgb=True)
    train = widget.train
    train.set_settings(
        sources=["clean"], validation="ihc", steps=3, patch_size=32, batch_size=2,
        noise="gaussian:25", device="cpu", val_crop=64, val_crops=1,
    )  # fmt: skip
    run = train.run()
    qtbot.waitUntil(lambda: run.done, timeout=120_000)
    assert run.status == "finished", run.message
    result = run.result
    assert len(result.history["loss"]) == 3
    assert (
        "loss" in train.progress_row.status.text() or "Trained" in train.progress_row.status.text()
    )
    plot = train.plot.history  # the live plot got every step and every validation
    assert plot["loss"] == result.history["loss"] and plot["val"] == result.history["val"][1:]
    assert widget.weights.path() == train.last_trained.path  # selected for Denoise at once
    saved = train.save_weights(tmp_path / "mine")
    model, meta = load_model(saved)
    assert saved.suffix == ".safetensors" and meta["architecture"] == "basic"
    report = json.loads((tmp_path / "mine.json").read_text())  # report and curves go along
    assert report["history"]["loss"] == result.history["loss"]
    assert imread(tmp_path / "mine.curves.png").shape[1] == 900
    for name, tensor in result.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor.cpu())
    run = widget.run()  # denoise with the weights just trained
    qtbot.waitUntil(lambda: run.done, timeout=60_000)
    assert run.status == "finished", run.message
    assert run.result.metadata["histo_denoise"]["weights"] == str(train.last_trained.path)


def test_training_plot_has_axes_values_and_legend_in_the_viewer_theme(setup, qtbot):
    """A short run's live plot; with ``HISTO_DENOISE_DOCS_IMAGES`` it goes to docs/images."""
    import os
    from pathlib import Path

    from skimage.io import imsave

    from napari_histo_denoise._napari.curve_plot import napari_theme

    viewer, widget = setup
    widget.train_box.expand(animate=False)
    train = widget.train
    train.set_settings(
        sources=["ihc"], validation="ihc", steps=12, patch_size=32, batch_size=2,
        val_every=3, val_crop=32, val_crops=1, lr=3e-3, device="cpu",
    )  # fmt: skip
    run = train.run()
    qtbot.waitUntil(lambda: run.done, timeout=120_000)
    assert run.status == "finished", run.message
    train.plot.resize(420, 260)
    assert [v["step"] for v in train.plot.history["val"]] == [0, 3, 6, 9, 12]
    assert train.plot.metadata["val_noisy_psnr"] == run.result.metadata["val_noisy_psnr"]

    dark = train.plot.image()
    assert dark.shape == (260, 420, 3)
    assert tuple(dark[0, 0]) == napari_theme(viewer).background
    viewer.theme = "light"  # the plot follows the viewer's theme
    assert train.plot.theme == napari_theme(viewer)
    light = train.plot.image()
    assert tuple(light[0, 0]) == napari_theme(viewer).background != tuple(dark[0, 0])
    # Drawn: axes, tick values and legend text in the theme's text colour.
    text = np.array(napari_theme(viewer).text)
    assert (np.abs(light.astype(int) - text).sum(-1) < 60).sum() > 500

    folder = Path(__file__).parents[1] / "docs" / "images"
    if os.environ.get("HISTO_DENOISE_DOCS_IMAGES"):
        viewer.theme = "dark"
        imsave(folder / "train_plot.png", train.plot.image(), check_contrast=False)


def test_train_cancel_keeps_no_weights(setup, qtbot):
    _, widget = setup
    train = widget.train
    train.set_settings(sources=["ihc"], steps=10_000, patch_size=32, batch_size=2, device="cpu")
    known = widget.weights.combo.count()
    run = train.run()
    qtbot.waitUntil(lambda: train.progress_row.bar.value() > 0, timeout=60_000)
    train.cancel()
    qtbot.waitUntil(lambda: run.done, timeout=5_000)
    assert run.status == "cancelled" and train.last_trained is None
    assert widget.weights.combo.count() == known
    assert train.train_button.isEnabled()


def test_train_without_sources_is_refused(setup):
    _, widget = setup
    start = len(notification_manager.records)
    assert widget.train.run() is None
    assert any("source layer" in m for m in _errors_since(start))


def test_napari_face_modules_import_no_torch():
    code = (
        "import sys\n"
        "import napari_histo_denoise._napari.widget, napari_histo_denoise._napari.summary_panel\n"
        "import napari_histo_denoise._napari.scripting, napari_histo_denoise._napari.sample_data\n"
        "import napari_histo_denoise\n"
        "napari_histo_denoise.denoise_layer\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_screenshot_of_the_plugin_at_work(make_napari_viewer, weights, tmp_path, qtbot):
    """The whole window: noisy sample and its denoised layer side by side, widget, summary.

    With ``HISTO_DENOISE_DEMO_WEIGHTS`` (trained weights) the picture goes to
    ``docs/images/plugin.png``; otherwise (fresh, untrained weights) to a temporary folder.
    """
    import os
    from pathlib import Path

    from skimage.io import imsave

    demo = os.environ.get("HISTO_DENOISE_DEMO_WEIGHTS")
    out = Path(__file__).parents[1] / "docs" / "images" if demo else tmp_path
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    (noisy,) = viewer.open_sample(PLUGIN, "noisy_ihc")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    widget.set_layer(noisy.name)
    widget.set_settings(weights=demo or weights, tile_size=256, overlap=32, device="cpu")
    run = widget.run()
    qtbot.waitUntil(lambda: run.done, timeout=300_000)
    assert run.status == "finished", run.message
    wait_idle(viewer, qtbot)
    viewer.canvas.grid.enabled = True  # the noisy and the denoised layer side by side
    qtbot.wait(300)  # let the canvas take its final size before fitting the view
    viewer.reset_view()
    qtbot.wait(300)
    image = viewer.screenshot(canvas_only=False, flash=False)
    assert image.shape[0] > 600 and image.shape[1] > 1000
    out.mkdir(parents=True, exist_ok=True)
    imsave(out / "plugin.png", image[..., :3], check_contrast=False)
    assert [layer.name for layer in viewer.layers] == [noisy.name, run.result.name]
    wait_idle(viewer, qtbot)


def test_the_noise_of_the_chosen_layer_is_shown_once_estimated(setup, qtbot, monkeypatch):
    from napari_histo_denoise import noise_level
    from napari_histo_denoise.noise import add_gaussian_noise

    viewer, widget = setup
    clean = np.repeat(np.repeat(immunohistochemistry()[:128:4, :128:4], 4, 0), 4, 1)
    noisy = (add_gaussian_noise(clean / 255, 20, seed=0) * 255).round().astype(np.uint8)
    viewer.add_image(noisy, name="noisy", rgb=True)
    viewer.add_image(clean, name="smooth", rgb=True)
    calls = []
    estimate = noise_level.estimate_noise
    monkeypatch.setattr(noise_level, "estimate_noise", lambda d: calls.append(1) or estimate(d))

    widget.set_layer("noisy")
    qtbot.waitUntil(lambda: widget.noise_label.text().startswith("sigma"), timeout=30_000)
    expected = estimate(noisy).sigma
    assert widget.noise_label.text() == f"sigma {expected:.1f} on the 0-255 scale"
    widget.set_layer("smooth")
    qtbot.waitUntil(lambda: "looks clean" in widget.noise_label.text(), timeout=30_000)
    assert "denoising may soften detail" in widget.noise_label.text()
    widget.set_layer("noisy")  # known: shown at once, not measured again
    assert widget.noise_label.text().startswith(f"sigma {expected:.1f}")
    qtbot.waitUntil(lambda: widget.idle, timeout=30_000)
    assert len(calls) == 2


def test_a_layer_whose_noise_cannot_be_estimated_says_why_once(setup, qtbot):
    viewer, widget = setup
    viewer.add_image(immunohistochemistry()[:8, :8], name="tiny", rgb=True)
    widget.set_layer("tiny")
    qtbot.waitUntil(lambda: widget.noise_label.text().startswith("not estimated"), timeout=30_000)
    assert "8 x 8 px is too small to estimate its noise" in widget.noise_label.text()
    widget.set_layer("ihc")
    qtbot.waitUntil(lambda: widget.noise_label.text().startswith("sigma"), timeout=30_000)
    widget.set_layer("tiny")  # the failure is remembered, not measured again
    assert widget.noise_label.text().startswith("not estimated") and widget.idle
