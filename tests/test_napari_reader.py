from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from skimage import data

import napari_histo_denoise
from napari_histo_denoise._napari.reader import get_reader, read_slide
from napari_histo_denoise._napari.writer import layer_mpp, write_ome_zarr_layer
from napari_histo_denoise.slides import write_ome_tiff, write_ome_zarr

CMU1 = Path(napari_histo_denoise.__file__).parent / "data" / "cmu1_small_region.svs"
PLUGIN = "napari-histo-denoise"


@pytest.fixture
def pyramid(tmp_path):
    image = data.immunohistochemistry()
    return write_ome_tiff(image, tmp_path / "ihc.ome.tif", mpp=0.25, n_levels=3, tile=128), image


def _candidates(path):
    """Plugins napari would offer for ``path`` (before calling any of them)."""
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    return {reader.plugin_name for reader in manager.iter_compatible_readers([str(path)])}


def test_reader_claims_slide_formats_only():
    for name in ("s.svs", "s.ndpi", "s.scn", "s.bif", "s.qptiff", "s.ome.tif", "s.OME.TIFF"):
        assert PLUGIN in _candidates(name), name
    for name in ("plain.tif", "plain.tiff", "plain.zarr", "x.png"):
        assert PLUGIN not in _candidates(name), name


def test_an_ordinary_tiff_opens_without_a_reader_question(make_napari_viewer, tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    viewer = make_napari_viewer()
    # plugin=None: napari's GUI way, a MultipleReaderError (the dialog) if two plugins claim it
    [layer] = viewer.open(str(path), plugin=None)
    assert layer.data.shape == (64, 64)


def test_reader_returns_none_for_what_it_cannot_read(tmp_path, pyramid):
    damaged = tmp_path / "damaged.svs"
    damaged.write_bytes(b"II*\x00" + b"\x00" * 100)
    plain_array = tmp_path / "array.ome.zarr"
    zarr.create_array(store=str(plain_array), shape=(8, 8), dtype="uint8")
    pyramidal_tif = write_ome_tiff(pyramid[1], tmp_path / "pyramid.tif", n_levels=2)
    for path in (damaged, plain_array, tmp_path, tmp_path / "missing.svs", pyramidal_tif):
        assert get_reader(str(path)) is None, path
    assert get_reader([str(CMU1), str(CMU1)]) is None


def test_reader_reads_a_slide_and_an_ome_zarr_folder(tmp_path, pyramid):
    [(data, kwargs, kind)] = get_reader(str(CMU1))(str(CMU1))
    assert kind == "image" and data.shape == (2967, 2220, 3)
    store = write_ome_zarr(pyramid[1], tmp_path / "x.zarr", n_levels=2)  # any folder name
    [(levels, kwargs, _)] = get_reader(str(store) + "/")(str(store))
    assert kwargs["multiscale"] and len(levels) == 2


def test_a_pyramidal_plain_tif_opens_from_the_file_menu(make_napari_viewer, tmp_path, pyramid):
    from app_model.types import MenuItem
    from napari._app_model import get_app_model
    from qtpy.QtWidgets import QFileDialog

    from napari_histo_denoise._napari.reader import open_slide

    viewer = make_napari_viewer()
    items = get_app_model().menus.get_menu("napari/file/io_utilities")
    assert any(isinstance(i, MenuItem) and i.command.id == f"{PLUGIN}.open_slide" for i in items)
    path = write_ome_tiff(pyramid[1], tmp_path / "pyramid.tif", mpp=0.25, n_levels=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
        open_slide(viewer)
    [layer] = viewer.layers
    assert layer.multiscale and layer.rgb and len(layer.data) == 3
    np.testing.assert_allclose(layer.scale, (0.25, 0.25))


def test_reader_gives_a_lazy_multiscale_rgb_layer_at_the_slide_scale(pyramid):
    path, image = pyramid
    [(levels, kwargs, kind)] = read_slide(str(path))
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert [lv.shape for lv in levels] == [(512, 512, 3), (256, 256, 3), (128, 128, 3)]
    assert all(isinstance(lv, da.Array) for lv in levels)
    assert kwargs["scale"] == (0.25, 0.25) and kwargs["units"] == ("µm", "µm")
    assert kwargs["name"] == "ihc"
    np.testing.assert_array_equal(levels[0].compute(), image)


def test_cmu1_opens_in_napari_at_its_aperio_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(CMU1), plugin=PLUGIN)
    assert layer.rgb and layer.data.shape == (2967, 2220, 3)
    assert isinstance(layer.data, da.Array)  # lazy, never densified
    np.testing.assert_allclose(layer.scale, (0.499, 0.499))
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]


def test_pyramid_round_trips_through_napari_as_ome_zarr(make_napari_viewer, pyramid, tmp_path):
    path, image = pyramid
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    assert layer.multiscale and len(layer.data) == 3
    out = tmp_path / "saved.ome.zarr"
    data_, attributes, _ = layer.as_layer_data_tuple()
    assert layer_mpp(attributes) == pytest.approx(0.25)
    assert write_ome_zarr_layer(str(out), data_, attributes) == [str(out)]
    [again] = viewer.open(str(out), plugin=PLUGIN)
    assert again.multiscale and again.rgb
    np.testing.assert_allclose(again.scale, (0.25, 0.25))
    for a, b in zip(again.data, layer.data, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(again.data[0]), image)
