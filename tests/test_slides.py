from __future__ import annotations

import json
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
from skimage import data
from skimage.transform import downscale_local_mean

import napari_histo_denoise
from napari_histo_denoise.engine import Cancelled, ImageLayout, TilePlan, iter_denoise
from napari_histo_denoise.events import drain
from napari_histo_denoise.io import ImageReadError, read_image
from napari_histo_denoise.pipeline import denoise_slide
from napari_histo_denoise.slides import (
    downsample2,
    tissue_mask,
    write_ome_tiff,
    write_ome_zarr,
)

CMU1 = Path(napari_histo_denoise.__file__).parent / "data" / "cmu1_small_region.svs"
TILE, OVERLAP = 64, 16
BLOCK = 80  # the chunk edge of the stores written here


class CountingBlur(torch.nn.Module):
    """A 3x3 box blur that counts the tiles it is given (class-wide, survives copies)."""

    tiles = 0

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((3, 1, 3, 3), 1 / 9))

    def forward(self, x):
        type(self).tiles += x.shape[0]
        return torch.nn.functional.conv2d(x, self.weight, padding=1, groups=3)


@pytest.fixture
def blur():
    CountingBlur.tiles = 0
    return CountingBlur().eval()


@pytest.fixture(scope="module")
def ihc():
    return data.immunohistochemistry()


@pytest.fixture(scope="module")
def slide70(ihc):
    """A 480 x 640 slide: real IHC tissue on the left 30%, noisy white glass elsewhere."""
    rng = np.random.default_rng(1)
    image = rng.normal(242, 4, size=(480, 640, 3)).clip(0, 255).astype(np.uint8)
    image[:, :192] = ihc[:480, :192]
    return image


def _kw(model):
    return {"model": model, "tile_size": TILE, "overlap": OVERLAP, "device": "cpu"}


# --------------------------------------------------------------------------- writers


def test_ome_zarr_pyramid_is_built_from_level_0_with_the_pixel_size(tmp_path, ihc):
    path = write_ome_zarr(ihc, tmp_path / "ihc.ome.zarr", mpp=0.5, n_levels=3, chunk=128)
    levels, meta = read_image(path)
    assert [lv.shape for lv in levels] == [(512, 512, 3), (256, 256, 3), (128, 128, 3)]
    np.testing.assert_array_equal(levels[0].compute(), ihc)
    expected = np.round(downscale_local_mean(ihc.astype(np.float64), (2, 2, 1))).astype(np.uint8)
    assert np.abs(levels[1].compute().astype(int) - expected).max() <= 1
    assert meta["mpp"] == 0.5 and meta["name"] == "ihc"
    attrs = json.loads((path / ".zattrs").read_text())
    spec = attrs["multiscales"][0]
    assert spec["version"] == "0.4" and [a["name"] for a in spec["axes"]] == ["c", "y", "x"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in spec["datasets"]]
    assert scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0]]
    assert not (tmp_path / "ihc.ome.zarr.partial").exists()


def test_odd_sizes_halve_upwards(ihc):
    small = downsample2(da.from_array(ihc[:101, :77], chunks=(32, 32, 3)))
    assert small.shape == (51, 39, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(small[-1, -1].compute(), ihc[100, 76])  # edge replicated


def test_ome_tiff_is_tiled_pyramidal_with_pixel_size(tmp_path, ihc):
    path = write_ome_tiff(ihc, tmp_path / "ihc.ome.tif", mpp=0.25, n_levels=3, tile=128)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and tif.pages[0].is_tiled and tif.pages[0].tilewidth == 128
        assert len(tif.series[0].levels) == 3 and len(tif.pages[0].subifds) == 2
        assert 'PhysicalSizeX="0.25"' in tif.ome_metadata
    levels, meta = read_image(path)
    assert meta["mpp"] == pytest.approx(0.25) and meta["format"] == "ome-tiff"
    np.testing.assert_array_equal(levels[0].compute(), ihc)
    zarr_levels, _ = read_image(write_ome_zarr(ihc, tmp_path / "z.ome.zarr", n_levels=3))
    for a, b in zip(levels, zarr_levels, strict=True):  # same pyramid rule in both writers
        np.testing.assert_array_equal(a.compute(), b.compute())


def test_a_given_pyramid_is_written_as_it_is(tmp_path, ihc):
    pyramid = [ihc, ihc[::2, ::2], ihc[::4, ::4]]
    for path in (
        write_ome_zarr(pyramid, tmp_path / "p.ome.zarr"),
        write_ome_tiff(pyramid, tmp_path / "p.ome.tif", tile=64),
    ):
        levels, _ = read_image(path)
        for got, expected in zip(levels, pyramid, strict=True):
            np.testing.assert_array_equal(got.compute(), expected)


def test_failed_writes_leave_nothing_behind(tmp_path, ihc):
    def explode(block):
        raise RuntimeError("disk on fire")

    failing = da.from_array(ihc, chunks=(128, 128, 3)).map_blocks(explode, dtype=np.uint8)
    for writer, name in ((write_ome_zarr, "f.ome.zarr"), (write_ome_tiff, "f.ome.tif")):
        with pytest.raises(RuntimeError, match="disk on fire"):
            writer(failing, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_writers_refuse_to_overwrite_unless_asked(tmp_path, ihc):
    path = write_ome_zarr(ihc, tmp_path / "a.ome.zarr")
    with pytest.raises(FileExistsError, match="exists; choose another name"):
        write_ome_zarr(ihc, path)
    assert write_ome_zarr(ihc[::2, ::2], path, overwrite=True) == path
    assert read_image(path)[0].shape == (256, 256, 3)


def test_writers_refuse_levels_that_disagree(tmp_path, ihc):
    with pytest.raises(ImageReadError, match="same channels"):
        write_ome_zarr([ihc, ihc[::2, ::2, :1]], tmp_path / "bad.ome.zarr")


# --------------------------------------------------------------------------- tissue mask


def test_tissue_mask_finds_the_tissue_of_a_70_percent_background_slide(slide70):
    mask = tissue_mask(slide70)
    assert mask.shape == slide70.shape[:2]
    # The IHC crop has pale lumens of its own; the glass holds no tissue at all.
    assert mask[:, :192].mean() > 0.75 and not mask[:, 200:].any()


def test_tissue_mask_keeps_everything_when_there_is_no_glass(ihc):
    assert tissue_mask(ihc).all()


def test_tissue_mask_uses_a_low_resolution_level(ihc, slide70):
    pyramid = [da.from_array(slide70), da.from_array(slide70[::4, ::4])]
    assert tissue_mask(pyramid, max_side=200).shape == (120, 160)


# --------------------------------------------------------------------------- denoising


def test_slide_denoising_matches_the_engine_on_the_whole_image(tmp_path, ihc, blur):
    out = denoise_slide(
        ihc, tmp_path / "d.ome.zarr", mpp=0.5, n_levels=2, chunk=BLOCK, **_kw(blur)
    )
    levels, meta = read_image(out)
    assert meta["mpp"] == 0.5 and len(levels) == 2
    np.testing.assert_array_equal(levels[0].compute(), drain(iter_denoise(ihc, **_kw(blur))))
    np.testing.assert_array_equal(levels[1].compute(), downsample2(levels[0]).compute())


def _coverage(image, mask):
    """Per pixel: whether any tile over it is denoised, and whether all of them are."""
    plan = TilePlan(ImageLayout.of(image), TILE, OVERLAP, tissue=mask)
    some = np.zeros(image.shape[:2], bool)
    every = np.ones(image.shape[:2], bool)
    for i, y in enumerate(plan.grid_y.starts):
        for j, x in enumerate(plan.grid_x.starts):
            region = np.s_[y : y + TILE, x : x + TILE]
            if plan.skip[i, j]:
                every[region] = False
            else:
                some[region] = True
    return some, every


def test_tissue_only_skips_background_tiles_and_keeps_tissue_identical(tmp_path, slide70, blur):
    full = denoise_slide(slide70, tmp_path / "full.ome.zarr", chunk=BLOCK, **_kw(blur))
    tiles_full, CountingBlur.tiles = CountingBlur.tiles, 0
    skip = denoise_slide(
        slide70, tmp_path / "skip.ome.zarr", tissue_only=True, chunk=BLOCK, **_kw(blur)
    )
    tiles_skip = CountingBlur.tiles
    full, skip = (np.asarray(read_image(p)[0]) for p in (full, skip))
    some, every = _coverage(slide70, tissue_mask(slide70))
    assert tiles_skip < 0.5 * tiles_full
    assert every.sum() > 0.2 * every.size and (~some).sum() > 0.5 * some.size
    np.testing.assert_array_equal(skip[every], full[every])  # tissue: as a full run
    np.testing.assert_array_equal(skip[~some], slide70[~some])  # background: untouched
    assert not np.array_equal(full[~some], slide70[~some])  # a full run would change it


def test_a_user_mask_chooses_the_tiles(tmp_path, slide70, blur):
    mask = np.zeros((48, 64), dtype=bool)  # any resolution: scaled to level 0
    mask[:4, :4] = True  # the top-left 40 x 40 pixels: only the first tile touches them
    out = denoise_slide(slide70, tmp_path / "m.ome.zarr", mask=mask, chunk=BLOCK, **_kw(blur))
    result = np.asarray(read_image(out)[0])
    assert CountingBlur.tiles == 1
    assert not np.array_equal(result[:TILE, :TILE], slide70[:TILE, :TILE])
    np.testing.assert_array_equal(result[TILE:], slide70[TILE:])
    np.testing.assert_array_equal(result[:, TILE:], slide70[:, TILE:])


def test_interrupted_run_leaves_nothing_complete_and_resumes(tmp_path, ihc, blur):
    ihc = np.concatenate([ihc, ihc[::-1]])  # 1024 x 512: four bands of 64-px tiles
    out = tmp_path / "r.ome.zarr"
    reference = denoise_slide(ihc, tmp_path / "ref.ome.zarr", chunk=BLOCK, **_kw(blur))
    tiles_all, CountingBlur.tiles = CountingBlur.tiles, 0
    events = []
    stop = threading.Event()

    def progress(done, total):
        events.append((done, total))
        if done >= 0.6 * total:  # in the third band: the first two are finished
            stop.set()

    with pytest.raises(Cancelled):
        denoise_slide(ihc, out, chunk=BLOCK, progress=progress, cancel=stop, **_kw(blur))
    assert not out.exists()
    partial = tmp_path / "r.ome.zarr.partial"
    assert "multiscales" not in json.loads((partial / ".zattrs").read_text())
    with pytest.raises(ImageReadError):
        read_image(partial)  # a partial store is not mistaken for an image
    tiles_first, CountingBlur.tiles = CountingBlur.tiles, 0

    events.clear()
    denoise_slide(ihc, out, chunk=BLOCK, progress=lambda d, t: events.append((d, t)), **_kw(blur))
    assert out.exists() and not partial.exists()
    assert CountingBlur.tiles < tiles_all and CountingBlur.tiles + tiles_first >= tiles_all
    total = events[-1][1]
    assert events[-1] == (total, total)
    assert [d for d, _ in events] == sorted(d for d, _ in events)
    np.testing.assert_array_equal(
        np.asarray(read_image(out)[0]), np.asarray(read_image(reference)[0])
    )


def test_resume_false_or_other_settings_start_afresh(tmp_path, ihc, blur):
    out = tmp_path / "r.ome.zarr"
    with pytest.raises(Cancelled):
        denoise_slide(ihc, out, chunk=BLOCK, cancel=lambda: CountingBlur.tiles > 8, **_kw(blur))
    CountingBlur.tiles = 0
    kwargs = {**_kw(blur), "overlap": 8}  # another setting: the old blocks do not fit
    denoise_slide(ihc, out, chunk=BLOCK, **kwargs)
    fresh = denoise_slide(ihc, tmp_path / "fresh.ome.zarr", chunk=BLOCK, **kwargs)
    np.testing.assert_array_equal(np.asarray(read_image(out)[0]), np.asarray(read_image(fresh)[0]))


def test_cmu1_slide_denoises_from_its_file_with_its_pixel_size(tmp_path, blur):
    image, _ = read_image(CMU1)
    region = tmp_path / "region.ome.tif"
    write_ome_tiff(image[:700, :600], region, mpp=0.499)
    out = denoise_slide(region, tmp_path / "cmu1.ome.zarr", tissue_only=True, **_kw(blur))
    levels, meta = read_image(out)
    assert meta["mpp"] == pytest.approx(0.499) and meta["name"] == "cmu1"
    assert levels.shape == (700, 600, 3)


def test_bad_requests_fail_before_anything_is_written(tmp_path, ihc, blur):
    out = tmp_path / "x.ome.zarr"
    with pytest.raises(ValueError, match="needs weights"):
        denoise_slide(ihc, out, model="basic")
    with pytest.raises(ValueError, match="multiple of 16"):
        denoise_slide(ihc, out, model=blur, tile_size=100)
    with pytest.raises(ValueError, match=r"holds one 2-D image \(Y, X\[, C\]\)"):
        denoise_slide(np.stack([ihc, ihc]), out, model=blur)
    with pytest.raises(ValueError, match="mask must be 2D"):
        denoise_slide(ihc, out, model=blur, mask=np.ones((4, 4, 3)))
    assert list(tmp_path.iterdir()) == []


def test_cli_denoises_a_slide_into_an_ome_zarr_pyramid(tmp_path, capsys):
    from napari_histo_denoise.checkpoint import save_weights
    from napari_histo_denoise.cli import main
    from napari_histo_denoise.models import build_model

    torch.manual_seed(0)
    weights = save_weights(tmp_path / "w.safetensors", build_model("basic"))
    image, _ = read_image(CMU1)
    slide = write_ome_tiff(image[:96, :160], tmp_path / "slide.ome.tif", mpp=0.499, tile=32)
    out = tmp_path / "out.ome.zarr"
    args = ["denoise", str(slide), "-o", str(out), "--weights", str(weights), "--tissue-only"]
    args += ["--tile-size", "64", "--overlap", "16", "--device", "cpu"]
    assert main(args) == 0
    assert "tiles" in capsys.readouterr().err  # the progress bar
    result, meta = read_image(out)
    assert result.shape == (96, 160, 3) and meta["mpp"] == pytest.approx(0.499)
    assert main([*args[:3], str(tmp_path / "out.bmp"), *args[4:]]) == 2
    assert "unsupported output 'out.bmp'" in capsys.readouterr().err


def test_resume_never_mixes_two_images_of_the_same_shape(tmp_path, ihc, blur):
    tall = np.concatenate([ihc, ihc[::-1]])  # 1024 x 512: two bands of 64-px tiles
    first, second = tall[:, :240], tall[:, -240:]
    out = tmp_path / "r.ome.zarr"
    kwargs = {**_kw(blur), "batch_size": 4}
    with pytest.raises(Cancelled):  # after the first band
        denoise_slide(first, out, chunk=BLOCK, cancel=lambda: CountingBlur.tiles > 70, **kwargs)
    denoise_slide(second, out, chunk=BLOCK, **kwargs)
    fresh = denoise_slide(second, tmp_path / "fresh.ome.zarr", chunk=BLOCK, **kwargs)
    np.testing.assert_array_equal(np.asarray(read_image(out)[0]), np.asarray(read_image(fresh)[0]))
