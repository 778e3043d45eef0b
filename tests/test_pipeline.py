"""One path from source to destination: every layout on every route, run-level work once."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import zarr
from skimage import data, io
from torch import nn

from napari_histo_denoise import checkpoint, files
from napari_histo_denoise.cli import main
from napari_histo_denoise.devices import resolve_backend, resolve_precision
from napari_histo_denoise.engine import Cancelled, denoise, iter_denoise, make_run, model_cache
from napari_histo_denoise.events import drain
from napari_histo_denoise.io import read_image
from napari_histo_denoise.models import build_model
from napari_histo_denoise.pipeline import denoise_into, denoise_slide, destination_kind
from napari_histo_denoise.slides import write_ome_tiff

TILE, OVERLAP = 64, 16
KW = {"tile_size": TILE, "overlap": OVERLAP, "device": "cpu", "precision": "fp32"}


class Blur(nn.Module):
    def forward(self, x):
        return nn.functional.conv2d(x, torch.full((3, 1, 3, 3), 1 / 9), padding=1, groups=3)


def _image(shape, dtype):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    return rng.random(shape).astype(dtype)


PLANES = [((150, 170), np.uint16), ((150, 170, 3), np.uint8), ((150, 170, 4), np.float32)]


@pytest.mark.parametrize(("shape", "dtype"), PLANES)
@pytest.mark.parametrize("suffix", [".zarr", ".ome.zarr", ".ome.tif"])
def test_every_2d_layout_gives_the_in_memory_result_on_every_file_route(
    tmp_path, shape, dtype, suffix
):
    image = _image(shape, dtype)
    expected = drain(iter_denoise(image, Blur(), **KW))
    written = denoise_into(image, tmp_path / f"out{suffix}", model=Blur(), **KW)
    levels, _ = read_image(written)
    level0 = np.asarray(levels[0] if isinstance(levels, list) else levels)
    np.testing.assert_array_equal(level0, expected)
    if shape[-1] == 4:  # alpha passes through
        np.testing.assert_array_equal(level0[..., 3], image[..., 3])


def test_stacks_go_to_a_zarr_array_and_are_refused_by_pyramids_before_any_work(tmp_path):
    stack = _image((2, 70, 90, 3), np.uint8)
    written = denoise_into(stack, tmp_path / "stack.zarr", model=Blur(), **KW)
    np.testing.assert_array_equal(
        zarr.open_array(written, mode="r")[:], drain(iter_denoise(stack, Blur(), **KW))
    )
    for name in ("stack.ome.zarr", "stack.ome.tif"):
        with pytest.raises(ValueError, match="holds one 2-D image"):
            denoise_into(stack, tmp_path / name, model=Blur(), **KW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.zarr"]


def test_destinations_by_suffix_and_refusals():
    assert destination_kind(None) == "memory" and destination_kind(np.zeros(1)) == "array"
    assert destination_kind("a.OME.ZARR") == "ome-zarr" and destination_kind("a.zarr") == "zarr"
    assert destination_kind("a.tif") == "ome-tiff" and destination_kind("a.jpeg") == "picture"
    with pytest.raises(ValueError, match=r"unsupported output 'a.bmp'; use one of \.ome\.zarr"):
        destination_kind("a.bmp")


def test_a_slide_run_hashes_the_weights_and_builds_the_model_once(tmp_path, monkeypatch):
    torch.manual_seed(0)
    weights = checkpoint.save_weights(tmp_path / "w.safetensors", build_model("basic"))
    model_cache.clear_model_cache()
    files._sha256.cache_clear()
    loads = []
    real_load = checkpoint.load_model
    monkeypatch.setattr(
        checkpoint, "load_model", lambda *a, **k: loads.append(1) or real_load(*a, **k)
    )
    image = np.concatenate([data.immunohistochemistry()[:, :96]] * 2)[:, :, :3]  # 1024 x 96
    out = denoise_slide(image, tmp_path / "s.ome.zarr", weights=weights, resume=True, **KW)
    assert len(loads) == 1  # one model for all bands (it was one per 1024-px block)
    assert files._sha256.cache_info().misses == 1  # one read of the weights file
    levels, _ = read_image(out)
    np.testing.assert_array_equal(
        np.asarray(levels), denoise(image, "basic", weights, **KW).compute()
    )


def test_lazy_result_computed_twice_never_counts_past_the_total():
    seen = []
    lazy = denoise(
        _image((300, 200, 3), np.uint8), Blur(), progress=lambda d, t: seen.append((d, t)), **KW
    )
    lazy.compute(scheduler="sync")
    lazy.compute(scheduler="sync")
    total = seen[0][1]
    assert all(done <= total for done, _ in seen) and seen[-1] == (total, total)


def test_tissue_tiles_are_skipped_on_every_route(tmp_path):
    image = _image((128, 256, 3), np.uint8)
    mask = np.zeros((8, 16), bool)
    mask[:, :4] = True  # the left quarter
    memory = denoise_into(image, model=Blur(), mask=mask, **KW)
    written = denoise_into(image, tmp_path / "m.ome.tif", model=Blur(), mask=mask, **KW)
    np.testing.assert_array_equal(tifffile.imread(written), memory)
    np.testing.assert_array_equal(memory[:, 128:], image[:, 128:])  # beyond the tissue tiles
    assert not np.array_equal(memory[:, :48], image[:, :48])


def test_cli_writes_a_streamed_pyramidal_ome_tiff_with_the_pixel_size(tmp_path, capsys):
    from napari_histo_denoise.checkpoint import save_weights

    torch.manual_seed(0)
    weights = save_weights(tmp_path / "w.safetensors", build_model("basic"))
    ihc = data.immunohistochemistry()
    source = write_ome_tiff(ihc, tmp_path / "in.ome.tif", mpp=0.25, n_levels=1, tile=64)
    out = tmp_path / "out.tif"
    argv = ["denoise", str(source), "-o", str(out), "--weights", str(weights)]
    assert main([*argv, "--tile-size", "128", "--overlap", "16", "--device", "cpu"]) == 0
    levels, meta = read_image(out)
    assert meta["mpp"] == pytest.approx(0.25) and meta["format"] == "ome-tiff"
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].is_tiled
    expected = denoise(ihc, "basic", weights, tile_size=128, overlap=16, device="cpu")
    np.testing.assert_array_equal(
        np.asarray(levels[0] if isinstance(levels, list) else levels), expected.compute()
    )
    err = capsys.readouterr().err
    assert "tiles" in err
    precision = resolve_precision("auto", "cpu")  # the CLI says what auto chose here
    backend = resolve_backend("auto", "cpu")
    layout = ", channels_last" if precision == "bf16" and backend == "torch" else ""
    assert err.startswith(f"denoising on cpu in {precision}, {backend}{layout}\n")


def test_cli_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["denoise", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 256)" in text and "(default: auto)" in text


def test_cli_errors_name_the_flags_not_the_python_names(tmp_path, capsys):
    source = tmp_path / "in.png"
    io.imsave(source, data.immunohistochemistry()[:64, :64], check_contrast=False)
    argv = ["denoise", str(source), "-o", str(source), "--weights", str(source)]
    assert main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    argv[3] = str(tmp_path / "out.png")
    assert main([*argv, "--tile-size", "100"]) == 2
    err = capsys.readouterr().err
    assert "--tile-size must be a multiple of 16" in err and "tile_size" not in err


def test_picture_output_of_a_grey_image(tmp_path):
    grey = data.camera()[:100, :120]
    written = denoise_into(grey, tmp_path / "g.png", model=Blur(), **KW)
    np.testing.assert_array_equal(io.imread(written), denoise_into(grey, model=Blur(), **KW))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of about 64 x 64 tiles' worth of accumulator: every route cuts segments."""
    from napari_histo_denoise.engine import geometry

    monkeypatch.setattr(geometry, "BLOCK_BYTES", 150 * 150 * 12)


@pytest.mark.parametrize("shape", [(300, 420, 3), (260, 390, 4)])
def test_segments_and_square_blocks_blend_exactly_like_the_whole_image(small_blocks, shape):
    image = _image(shape, np.uint8)
    eager = make_run(image, Blur(), None, **KW)
    lazy = make_run(image, Blur(), None, square_blocks=False, **KW)
    for run in (eager, lazy):
        assert len(run.plan.segments) > 1 and len(run.plan.bands) > 1
    assert len(eager.plan.bands) < len(lazy.plan.bands)  # square: fewer, taller bands
    # A 3 x 3 blur reaches 1 px, inside the overlap: tiled must equal the whole image.
    rgb = torch.from_numpy(image[..., :3]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        whole = (Blur()(rgb)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().numpy()
    for result in (
        drain(iter_denoise(image, Blur(), **KW)),
        denoise(image, Blur(), **KW).compute(),
    ):
        np.testing.assert_array_equal(result[..., :3], whole.astype(np.uint8))
        np.testing.assert_array_equal(result[..., 3:], image[..., 3:])  # alpha, if any


def test_a_cut_short_run_resumes_across_bands_and_segments(tmp_path, small_blocks):
    image = _image((700, 520, 3), np.uint8)
    plan = make_run(image, Blur(), None, **KW).plan
    assert len(plan.bands) > 2 and len(plan.segments) > 1
    two_bands = plan.band_tiles(plan.bands[0]) + plan.band_tiles(plan.bands[1])
    calls = []

    class Counting(Blur):
        def forward(self, x):
            calls.append(len(x))
            return super().forward(x)

    out, model = tmp_path / "r.ome.zarr", Counting()
    with pytest.raises(Cancelled):  # inside the third band: two are in the store
        denoise_into(image, out, model=model, cancel=lambda: sum(calls) > two_bands, **KW)
    calls.clear()
    denoise_into(image, out, model=model, **KW)
    # the second band is computed again (its bottom seam), the first is not
    assert sum(calls) == plan.total - plan.band_tiles(plan.bands[0])
    levels, _ = read_image(out)
    level0 = np.asarray(levels[0] if isinstance(levels, list) else levels)
    np.testing.assert_array_equal(level0, drain(iter_denoise(image, Blur(), **KW)))


def test_bad_requests_are_refused_before_any_work(tmp_path):
    stack = _image((3, 80, 90), np.uint8)
    with pytest.raises(ValueError, match="a tissue mask applies to one 2-D image"):
        denoise_into(stack, model=Blur(), tissue_only=True, **KW)
    floats = _image((80, 90, 3), np.float32)
    with pytest.raises(ValueError, match="picture holds 8-bit pixels, the image is float32"):
        denoise_into(floats, tmp_path / "f.png", model=Blur(), **KW)
    with pytest.raises(ValueError, match="JPEG has no alpha channel"):
        denoise_into(_image((80, 90, 4), np.uint8), tmp_path / "a.jpg", model=Blur(), **KW)
    assert list(tmp_path.iterdir()) == []


def test_cancel_is_heard_where_every_tile_is_skipped():
    image = _image((200, 200, 3), np.uint8)
    with pytest.raises(Cancelled):
        denoise_into(image, model=Blur(), mask=np.zeros((4, 4)), cancel=lambda: True, **KW)


def test_a_partial_store_of_another_plan_is_not_resumed(tmp_path, monkeypatch):
    from napari_histo_denoise.engine import geometry

    image = _image((700, 520, 3), np.uint8)
    out = tmp_path / "p.ome.zarr"
    monkeypatch.setattr(geometry, "BLOCK_BYTES", 150 * 150 * 12)
    calls = []

    class Counting(Blur):
        def forward(self, x):
            calls.append(len(x))
            return super().forward(x)

    with pytest.raises(Cancelled):
        denoise_into(image, out, model=Counting(), cancel=lambda: sum(calls) > 150, **KW)
    monkeypatch.undo()  # another plan (e.g. after an upgrade): the old bands do not fit
    calls.clear()
    denoise_into(image, out, model=Counting(), **KW)
    assert sum(calls) == make_run(image, Blur(), None, **KW).plan.total  # started afresh
    levels, _ = read_image(out)
    level0 = np.asarray(levels[0] if isinstance(levels, list) else levels)
    np.testing.assert_array_equal(level0, drain(iter_denoise(image, Blur(), **KW)))


def test_a_stale_partial_zarr_is_replaced(tmp_path):
    image = _image((80, 90, 3), np.uint8)
    zarr.create_array(str(tmp_path / "o.zarr.partial"), shape=(2, 2), dtype="uint8")
    written = denoise_into(image, tmp_path / "o.zarr", model=Blur(), **KW)
    assert zarr.open_array(written, mode="r").shape == image.shape
