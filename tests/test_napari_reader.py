from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from skimage import data

import napari_histo_denoise
from napari_histo_denoise._napari.reader import get_reader, read_slide
from napari_histo_denoise._napari.writer import layer_mpp, write_ome_zarr_layer
from napari_histo_denoise.slides import write_ome_tiff

CMU1 = Path(napari_histo_denoise.__file__).parent / "data" / "cmu1_small_region.svs"
PLUGIN = "napari-histo-denoise"


@pytest.fixture
def pyramid(tmp_path):
    image = data.immunohistochemistry()
    return write_ome_tiff(image, tmp_path / "ihc.ome.tif", mpp=0.25, n_levels=3, tile=128), image


def test_reader_claims_slides_and_zarr_only(tmp_path):
    assert get_reader(str(CMU1)) is read_slide
    assert get_reader(str(tmp_path / "x.ome.zarr") + "/") is read_slide
    assert get_reader(str(tmp_path / "x.png")) is None
    assert get_reader([str(CMU1), str(CMU1)]) is None


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
