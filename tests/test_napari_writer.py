"""The writers: off the GUI thread with progress, and what a saved layer keeps."""

from __future__ import annotations

import time

import dask.array as da
import numpy as np
import pytest
import zarr
from napari.utils import progress
from skimage import data

from napari_histo_denoise._napari.reader import read_slide
from napari_histo_denoise._napari.writer import write_ome_tiff_layer, write_ome_zarr_layer
from napari_histo_denoise.slides import write_ome_zarr

PLUGIN = "napari-histo-denoise"


def _windows(store):
    return [c["window"] for c in zarr.open_group(str(store), mode="r").attrs["omero"]["channels"]]


@pytest.mark.parametrize(("dtype", "end"), [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1)])
def test_ome_zarr_window_is_the_dtypes_range(tmp_path, dtype, end):
    image = np.zeros((32, 32, 3), dtype=dtype)
    store = write_ome_zarr(image, tmp_path / "x.ome.zarr", n_levels=1)
    assert _windows(store) == [{"min": 0, "max": end, "start": 0, "end": end}] * 3


def test_a_saved_layer_keeps_its_place_and_contrast(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    gray = (np.arange(64 * 48, dtype=np.uint16) * 13).reshape(64, 48)
    viewer.add_image(
        gray, name="gray", scale=(0.5, 0.5), units="µm", translate=(100, -20),
        contrast_limits=(300, 30_000),
    )  # fmt: skip
    viewer.add_image(data.immunohistochemistry()[:64, :64], name="rgb", translate=(7, 9))
    for name in ("gray", "rgb"):
        source = viewer.layers[name]
        out = tmp_path / f"{name}.ome.zarr"
        viewer.layers.selection = {source}
        [saved] = viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
        [again] = viewer.open(saved, plugin=PLUGIN)
        np.testing.assert_allclose(again.translate, source.translate)
        np.testing.assert_allclose(again.scale, source.scale)
        np.testing.assert_allclose(again.contrast_limits, source.contrast_limits)
        np.testing.assert_array_equal(np.asarray(again.data), source.data)
    window = _windows(tmp_path / "gray.ome.zarr")
    assert window == [{"min": 0, "max": 65535, "start": 300, "end": 30_000}]


def _slow_layer(blocks: int = 48, delay: float = 0.03):
    """A lazy 2D layer whose every 32 x 32 block takes ``delay`` seconds to compute."""

    def slow(block):
        time.sleep(delay)
        return block

    image = da.from_array(np.arange(32 * 32 * blocks, dtype=np.uint16).reshape(32 * blocks, 32))
    lazy = image.rechunk(32).map_blocks(slow, dtype=np.uint16)
    attributes = {"name": "slow", "multiscale": False, "translate": (0, 0), "scale": (1, 1)}
    return lazy, attributes, blocks


@pytest.mark.parametrize(
    ("writer", "suffix", "what"),
    [
        (write_ome_zarr_layer, ".ome.zarr", "OME-Zarr"),
        (write_ome_tiff_layer, ".ome.tif", "OME-TIFF"),
    ],
)
def test_saving_runs_off_the_gui_thread_with_progress(qtbot, tmp_path, writer, suffix, what):
    from qtpy.QtCore import QTimer

    lazy, attributes, blocks = _slow_layer()
    seen: list[tuple[str, int, int]] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(
        lambda: seen.extend((p.desc, p.n, p.total) for p in progress._all_instances)
    )
    timer.start()
    [written] = writer(str(tmp_path / f"slow{suffix}"), lazy, attributes)
    timer.stop()
    assert len(seen) > 10  # the event loop ran during the save
    assert {desc for desc, _, _ in seen} == {f"Saving slow as {what}"}
    assert max(n for _, n, _ in seen) > 0 and {total for _, _, total in seen} == {blocks}
    [(levels, _, _)] = read_slide(written)  # 1536 rows: a pyramid of two levels
    np.testing.assert_array_equal(np.asarray(levels[0]), np.asarray(lazy))


def test_a_failed_save_raises_and_leaves_nothing(qtbot, tmp_path):
    def broken(block):
        raise OSError("disk full")

    lazy = da.zeros((64, 64), dtype=np.uint8, chunks=32).map_blocks(broken, dtype=np.uint8)
    out = tmp_path / "broken.ome.zarr"
    with pytest.raises(OSError, match="disk full"):
        write_ome_zarr_layer(str(out), lazy, {"name": "broken", "multiscale": False})
    assert list(tmp_path.iterdir()) == []
