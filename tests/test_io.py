from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image
from skimage import data

import napari_histo_denoise
from napari_histo_denoise.io import ImageReadError, check_levels, read_image

CMU1 = Path(napari_histo_denoise.__file__).parent / "data" / "cmu1_small_region.svs"


@pytest.fixture(scope="module")
def ihc():
    return data.immunohistochemistry()


def test_svs_is_read_lazily_with_its_aperio_pixel_size():
    image, meta = read_image(CMU1)
    assert isinstance(image, da.Array)
    assert image.shape == (2967, 2220, 3) and image.dtype == np.uint8
    assert image.npartitions > 1  # tiled reads, never the whole slide at once
    assert meta["format"] == "svs" and meta["rgb"] and meta["axes"] == "YXC"
    assert meta["mpp"] == pytest.approx(0.499)  # "MPP = 0.499" in the ImageDescription
    assert meta["scale"] == (meta["mpp"], meta["mpp"]) and meta["units"] == "µm"
    assert not meta["multiscale"] and meta["name"] == "cmu1_small_region"
    # Same pixels as an independent decoder (Pillow) gives for level 0.
    with Image.open(CMU1) as pil:
        reference = np.asarray(pil.crop((1500, 2000, 1800, 2300)))
    np.testing.assert_array_equal(image[2000:2300, 1500:1800].compute(), reference)


def test_ome_tiff_pyramid_written_by_tifffile_reads_as_levels(tmp_path, ihc):
    path = tmp_path / "pyramid.ome.tif"
    levels = [ihc, ihc[::2, ::2], ihc[::4, ::4]]
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        meta = {"axes": "YXS", "PhysicalSizeX": 250.0, "PhysicalSizeXUnit": "nm"}
        tif.write(levels[0], subifds=2, tile=(128, 128), photometric="rgb", metadata=meta)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=(128, 128), photometric="rgb")
    image, meta = read_image(path)
    assert isinstance(image, list) and [lv.shape for lv in image] == [lv.shape for lv in levels]
    for got, expected in zip(image, levels, strict=True):
        np.testing.assert_array_equal(got.compute(), expected)
    assert meta["format"] == "ome-tiff" and meta["multiscale"] and meta["name"] == "pyramid"
    assert meta["mpp"] == pytest.approx(0.25)  # 250 nm


def test_planar_tiff_is_returned_channels_last(tmp_path, ihc):
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(ihc, -1, 0), photometric="rgb", planarconfig="separate")
    image, meta = read_image(path)
    assert meta["rgb"] and image.shape == ihc.shape
    np.testing.assert_array_equal(image.compute(), ihc)


@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [((20000, 20000), "CENTIMETER", 0.5), ((72, 72), "INCH", None), ((50800, 50800), "INCH", 0.5)],
)
def test_tiff_resolution_tags_give_the_pixel_size(tmp_path, ihc, resolution, unit, expected):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, ihc, photometric="rgb", resolution=resolution, resolutionunit=unit)
    _, meta = read_image(path)
    assert meta["mpp"] == (pytest.approx(expected) if expected else None)
    assert meta["units"] == ("µm" if expected else "pixel")


def test_png_reads_as_rgb_without_pixel_size(tmp_path, ihc):
    path = tmp_path / "ihc.png"
    Image.fromarray(ihc).save(path)
    image, meta = read_image(path)
    np.testing.assert_array_equal(image.compute(), ihc)
    assert meta["rgb"] and meta["mpp"] is None and meta["scale"] == (1.0, 1.0)


def test_plain_zarr_array_reads(tmp_path, ihc):
    path = tmp_path / "plain.zarr"
    zarr.create_array(str(path), data=ihc, chunks=(100, 100, 3))
    image, meta = read_image(path)
    np.testing.assert_array_equal(image.compute(), ihc)
    assert meta["format"] == "zarr" and meta["mpp"] is None


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image"):
        read_image(tmp_path / "absent.svs")


def test_text_file_named_svs_is_refused_naming_the_format(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("this is not a slide\n" * 10)
    with pytest.raises(ImageReadError, match=r"as a SVS file"):
        read_image(path)


def test_truncated_tiff_is_refused(tmp_path, ihc):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, ihc, tile=(128, 128), photometric="rgb")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(ImageReadError, match=r"TIF"):
        read_image(path)


def test_unsupported_suffix_lists_the_allowed_formats(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ImageReadError, match=r"unsupported image format '\.xyz'.*\.svs"):
        read_image(path)


def test_zarr_group_without_multiscales_is_refused(tmp_path):
    group = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    group.create_array("a", shape=(4, 4), dtype="uint8")
    with pytest.raises(ImageReadError, match="without OME-NGFF 'multiscales'"):
        read_image(tmp_path / "bare.zarr")


def _ngff(path, levels):
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    for i, level in enumerate(levels):
        group.create_array(str(i), data=np.moveaxis(level, -1, 0))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": str(i),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1, 0.5 * 2**i, 0.5 * 2**i]}
                    ],
                }
                for i in range(len(levels))
            ],
        }
    ]


def test_ome_zarr_pyramid_reads_with_its_scale(tmp_path, ihc):
    _ngff(tmp_path / "p.ome.zarr", [ihc, ihc[::2, ::2]])
    image, meta = read_image(tmp_path / "p.ome.zarr")
    assert [lv.shape for lv in image] == [ihc.shape, ihc[::2, ::2].shape]
    np.testing.assert_array_equal(image[1].compute(), ihc[::2, ::2])
    assert meta["format"] == "ome-zarr" and meta["mpp"] == 0.5 and meta["name"] == "p"


def test_levels_that_disagree_in_dtype_are_refused(tmp_path, ihc):
    _ngff(tmp_path / "bad.ome.zarr", [ihc, ihc[::2, ::2].astype(np.uint16)])
    with pytest.raises(ImageReadError, match="level 1 is uint16 but level 0 is uint8"):
        read_image(tmp_path / "bad.ome.zarr")


def test_levels_that_disagree_in_channels_are_refused(ihc):
    with pytest.raises(ImageReadError, match="same channels"):
        check_levels([ihc, ihc[::2, ::2, :2]])
    with pytest.raises(ImageReadError, match="larger than level 0"):
        check_levels([ihc[::2, ::2], ihc])


def test_channels_first_ome_zarr_reads_in_bounded_blocks(tmp_path):
    from napari_histo_denoise.slides import write_ome_zarr

    wide = da.zeros((2048, 9000, 3), dtype=np.uint8, chunks=(1024, 1024, 3))
    store = write_ome_zarr(wide, tmp_path / "wide.ome.zarr", n_levels=1, chunk=1024)
    level, _ = read_image(store)
    assert level.shape == (2048, 9000, 3)
    assert max(level.chunks[0]) <= 2048 and max(level.chunks[1]) <= 2048
    assert level.chunks[2] == (3,)  # a block holds every channel of its pixels


def test_a_slide_opened_and_dropped_many_times_leaves_no_file_open():
    """The lazy levels keep their file open while used; dropping them closes it."""

    def open_files() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    image, _ = read_image(CMU1)
    crop = image[:64, :64].compute()  # the first compute also starts dask's thread pool
    held = open_files()
    del image
    before = open_files()
    assert before == held - 1  # the slide's file, open while its image was held, is closed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(20):
            image, _ = read_image(CMU1)
            assert np.array_equal(image[:64, :64].compute(), crop)
            del image
        assert open_files() == before
    # Closed by the reader, not left for the garbage collector to find open.
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
