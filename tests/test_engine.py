from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
import zarr
from skimage import data
from torch import nn

import napari_histo_denoise as nhd
from napari_histo_denoise.checkpoint import WeightsError
from napari_histo_denoise.engine import (
    Cancelled,
    Progress,
    denoise,
    denoise_to_zarr,
    iter_denoise,
    tiling,
)
from napari_histo_denoise.events import drain
from napari_histo_denoise.models import build_model

SVS = Path(nhd.__file__).parent / "data" / "cmu1_small_region.svs"


class Identity(nn.Module):
    def forward(self, x):
        return x.clone()


class Blur(nn.Module):
    """A 9 x 9 box blur with zero padding: receptive field (radius 4) below the overlap."""

    def forward(self, x):
        return F.conv2d(x, torch.full((3, 1, 9, 9), 1 / 81), padding=4, groups=3)


class FlakyMemory(nn.Module):
    """Raises CUDA-style out-of-memory for batches above ``limit`` tiles."""

    def __init__(self, limit):
        super().__init__()
        self.limit, self.sizes = limit, []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return x.clone()


def _image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    return rng.random(shape).astype(dtype)


def _whole(module, image, tile_size):
    """Reference: the module on the whole image (axes shorter than a tile reflect-padded to 16)."""
    pad = [(0, -n % 16 if n < tile_size else 0) for n in image.shape[:2]] + [(0, 0)]
    padded = np.pad(image, pad, mode="reflect")
    with torch.inference_mode():
        out = module(torch.from_numpy(padded).permute(2, 0, 1)[None])[0]
    return out.permute(1, 2, 0).numpy()[: image.shape[0], : image.shape[1]]


LAYOUTS = [
    (37, 53),  # grayscale, smaller than a tile, odd
    (301, 157, 3),  # RGB, several tiles and bands, odd
    (95, 130, 4),  # RGBA
    (2, 3, 41, 67),  # (Z, T, Y, X) grayscale stack
    (2, 90, 77, 3),  # (Z, Y, X, 3)
    (1, 1),  # a single pixel
]


@pytest.mark.parametrize("shape", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_identity_module_returns_the_input(shape, dtype):
    image = _image(shape, dtype)
    before = image.copy()
    result = denoise(image, Identity(), tile_size=64, overlap=16, batch_size=5)
    assert isinstance(result, da.Array)
    assert result.shape == image.shape and result.dtype == image.dtype
    computed = result.compute()
    np.testing.assert_array_equal(image, before)  # the input is never modified
    eager = iter_denoise(image, Identity(), tile_size=64, overlap=16, batch_size=5)
    events = []
    eager_result = drain(eager, events.append)
    if np.dtype(dtype).kind == "u":
        np.testing.assert_array_equal(computed, image)
    else:
        np.testing.assert_allclose(computed, image, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(eager_result, computed)
    assert events[-1].done == events[-1].total and all(isinstance(e, Progress) for e in events)


def test_rgba_alpha_passes_through_untouched():
    image = _image((70, 90, 4), np.uint8)
    image[..., 3] = np.arange(90, dtype=np.uint8)[None, :]
    result = denoise(image, Blur(), tile_size=32, overlap=8).compute()
    np.testing.assert_array_equal(result[..., 3], image[..., 3])
    assert not np.array_equal(result[..., :3], image[..., :3])


def test_floats_are_clipped_to_unit_range():
    image = np.linspace(-0.5, 1.5, 64 * 48, dtype=np.float32).reshape(64, 48)
    result = denoise(image, Identity(), tile_size=32, overlap=8).compute()
    np.testing.assert_allclose(result, np.clip(image, 0, 1), atol=1e-6)


def test_grayscale_goes_through_rgb_model_and_is_averaged():
    class Channels(nn.Module):  # scales each channel differently
        def forward(self, x):
            return x * torch.tensor([0.25, 0.5, 0.75]).view(1, 3, 1, 1)

    image = _image((40, 50), np.float32)
    result = denoise(image, Channels(), tile_size=32, overlap=8).compute()
    np.testing.assert_allclose(result, image * 0.5, atol=1e-6)


@pytest.mark.parametrize("shape", [(300, 301, 3), (1000, 77, 3), (129, 700, 3), (50, 200, 3)])
def test_blur_tiled_equals_whole_image(shape):
    image = _image(shape, np.float32)
    options = dict(tile_size=64, overlap=16, batch_size=7, precision="fp32")  # exact tiling
    tiled = denoise(image, Blur(), **options).compute()
    np.testing.assert_allclose(tiled, np.clip(_whole(Blur(), image, 64), 0, 1), rtol=0, atol=1e-5)


def test_basic_model_tiled_matches_whole_image_on_histology():
    """The basic model (eval mode), 256 tiles with 32 px overlap, on a real 1024^2 H&E crop."""
    crop = tifffile.imread(SVS, key=0)[600:1624, 600:1624].astype(np.float32) / 255
    torch.manual_seed(0)
    model = build_model("basic").eval()
    tiled = denoise(crop, model, tile_size=256, overlap=32, precision="fp32").compute()
    whole = _whole(model, crop, 256)
    error = np.linalg.norm(tiled - whole) / np.linalg.norm(whole - whole.mean())
    assert error < 0.01


def test_lazy_until_computed_and_chunked_by_band():
    calls = []

    class Counting(Identity):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    image = _image((500, 400, 3), np.uint8)
    result = denoise(image, Counting(), tile_size=64, overlap=16)
    assert calls == []
    assert len(result.chunks[0]) > 1 and result.chunks[1] == (400,)  # bands of whole rows
    n_tasks = len(result.__dask_graph__())
    n_tiles = len(tiling.axis_grid(500, 64, 16).starts) * len(tiling.axis_grid(400, 64, 16).starts)
    assert n_tasks < n_tiles  # batched across chunks, never one task per tile
    result.compute()
    assert sum(calls) == n_tiles


def test_dask_and_zarr_inputs(tmp_path):
    image = _image((130, 170, 3), np.uint16)
    z = zarr.create_array(
        tmp_path / "in.zarr", shape=image.shape, dtype=image.dtype, chunks=(50, 60, 3)
    )
    z[:] = image
    for source in (da.from_array(image, chunks=(40, 50, 3)), z):
        np.testing.assert_array_equal(denoise(source, Identity(), tile_size=64, overlap=16), image)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile_size": 250}, "multiple of 16"),
        ({"tile_size": 64, "overlap": 32}, "larger than twice"),
        ({"overlap": -4}, "non-negative"),
        ({"batch_size": 0}, "batch_size"),
        ({"precision": "fp8"}, "precision"),
        ({"device": "tpu"}, "unknown device"),
        ({"device": "cuda:7"}, "not available"),
    ],
)
def test_bad_settings_are_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        denoise(np.zeros((64, 64, 3), np.uint8), Identity(), **kwargs)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((8, 8), np.int16), "dtype"),
        (np.zeros((8,), np.uint8), "at least 2 axes"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        ([[1, 2], [3, 4]], "numpy, dask or zarr"),
    ],
)
def test_bad_images_are_clear_value_errors(image, match):
    with pytest.raises(ValueError, match=match):
        denoise(image, Identity())


def test_named_model_needs_weights_and_known_name():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="needs weights"):
        denoise(image, "basic")
    with pytest.raises(ValueError, match="unknown model"):
        denoise(image, "resnet", weights={})
    with pytest.raises(FileNotFoundError):
        denoise(image, "basic", weights="/nonexistent/w.safetensors")


@pytest.fixture(scope="module")
def basic_weights(tmp_path_factory):
    from napari_histo_denoise.checkpoint import save_weights

    torch.manual_seed(1)
    model = build_model("basic").eval()
    return model, save_weights(tmp_path_factory.mktemp("w") / "w.safetensors", model)


def test_weights_file_and_state_dict(basic_weights):
    model, path = basic_weights
    image = _image((48, 40, 3), np.uint8)
    # One backend for all three: "auto" runs a module in torch and a named model in OpenVINO.
    options = dict(tile_size=64, overlap=16, backend="torch")
    expected = denoise(image, model, **options).compute()
    from_file = denoise(image, "basic", path, **options).compute()
    from_dict = denoise(image, "basic", model.state_dict(), **options).compute()
    np.testing.assert_array_equal(from_file, expected)
    np.testing.assert_array_equal(from_dict, expected)
    with pytest.raises(ValueError, match=r"deep|basic"):
        denoise(image, "deep", path).compute()


def test_progress_reports_every_batch_and_cancel_stops():
    image = _image((200, 200, 3), np.uint8)
    seen = []
    denoise(
        image,
        Identity(),
        tile_size=64,
        overlap=16,
        batch_size=4,
        progress=lambda done, total: seen.append((done, total)),
    ).compute(scheduler="sync")
    grid = tiling.axis_grid(200, 64, 16)
    total = len(grid.starts) ** 2
    done = [d for d, _ in seen]
    assert all(t == total for _, t in seen) and done[-1] == total
    assert all(0 < b - a <= 4 for a, b in zip([0, *done], done, strict=False))

    stop = threading.Event()
    lazy = denoise(
        image,
        Identity(),
        tile_size=64,
        overlap=16,
        batch_size=2,
        progress=lambda done, total: stop.set(),
        cancel=stop,
    )
    with pytest.raises(Cancelled):
        lazy.compute(scheduler="sync")

    events = iter_denoise(
        image,
        Identity(),
        tile_size=64,
        overlap=16,
        batch_size=2,
        cancel=lambda: len(seen_iter) >= 3,
    )
    seen_iter = []
    with pytest.raises(Cancelled):
        for event in events:
            seen_iter.append(event)
    assert len(seen_iter) == 3 and seen_iter[-1].done == 6


def test_cancel_stops_the_basic_model_inside_a_forward_pass_within_a_second():
    torch.manual_seed(0)
    model = build_model("basic").eval()  # eval, on the CPU in fp32: the engine runs it as it is
    small = data.immunohistochemistry()[:48, :64]
    before = denoise(small, model, device="cpu", precision="fp32").compute()
    stop = threading.Event()
    image = np.tile(data.immunohistochemistry()[:256, :256], (2, 2, 1))  # 512 x 512 x 3
    lazy = denoise(
        image, model, tile_size=256, overlap=32, device="cpu", precision="fp32", cancel=stop
    )
    set_at = []
    timer = threading.Timer(0.3, lambda: (set_at.append(time.monotonic()), stop.set()))
    timer.start()
    with pytest.raises(Cancelled):
        lazy.compute()
    latency = time.monotonic() - set_at[0]
    timer.join()
    assert latency < 1.0  # the bound; a 256^2 batch alone takes seconds here
    assert not any(m._forward_pre_hooks for m in model.modules())  # hooks were removed
    after = denoise(small, model, device="cpu", precision="fp32").compute()
    np.testing.assert_array_equal(after, before)


def test_unusable_weights_fail_when_called_not_when_computed(tmp_path, basic_weights):
    _, basic_file = basic_weights
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"these bytes are not a weights file" * 8)
    image = np.zeros((32, 32, 3), np.uint8)
    for model, weights, match in (("basic", broken, "broken"), ("deep", basic_file, "deep")):
        with pytest.raises(WeightsError, match=match):
            denoise(image, model, weights)
        with pytest.raises(WeightsError, match=match):
            iter_denoise(image, model, weights)
        with pytest.raises(WeightsError, match=match):
            denoise_to_zarr(image, tmp_path / "out.zarr", model, weights)
    assert [p.name for p in tmp_path.iterdir()] == ["broken.safetensors"]


def test_module_in_training_mode_runs_in_eval_mode_and_is_left_as_it_was():
    torch.manual_seed(2)
    model = build_model("basic")  # training mode: batch norm would use batch statistics
    state = copy.deepcopy(model.state_dict())
    image = data.immunohistochemistry()[200:264, 300:364]  # (Y, X, 3) uint8
    result = denoise(image, model).compute()  # default settings (CPU here)
    assert all(m.training for m in model.modules())
    for name, tensor in model.state_dict().items():  # running statistics untouched
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    expected = denoise(image, copy.deepcopy(model).eval()).compute()
    np.testing.assert_array_equal(result, expected)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        batch_stats = copy.deepcopy(model)(x)[0].permute(1, 2, 0).mul(255).round().numpy()
    assert np.abs(result.astype(float) - batch_stats).mean() > 1  # eval mode made a difference


def test_a_module_changed_after_a_run_is_not_served_from_a_stale_copy():
    conv = nn.Conv2d(3, 3, 1, bias=False)  # training mode: the engine runs a copy
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[range(3), range(3)] = 1.0
    image = np.full((32, 32, 3), 200, np.uint8)
    exact = dict(precision="fp32")  # 200 / 255 is not a bf16 number
    np.testing.assert_array_equal(denoise(image, conv, **exact).compute(), image)
    with torch.no_grad():
        conv.weight.mul_(0.5)  # e.g. trained further
    halved = denoise(image, conv, **exact).compute()
    np.testing.assert_array_equal(halved, np.full_like(image, 100))


def test_out_of_memory_halves_the_batch_then_fails_clearly():
    image = _image((200, 200, 3), np.uint8)
    module = FlakyMemory(limit=3).eval()  # in eval mode and fp32 the engine uses it as it is
    options = dict(tile_size=64, overlap=16, batch_size=16, precision="fp32")
    result = denoise(image, module, **options).compute(scheduler="sync")
    np.testing.assert_array_equal(result, image)
    assert module.sizes[:4] == [16, 8, 4, 2] and max(module.sizes[4:]) == 2
    with pytest.raises(MemoryError, match="single 64 x 64 tile"):
        denoise(image, FlakyMemory(limit=0), tile_size=64, overlap=16, batch_size=4).compute()


class CountingReads:
    """An array wrapper that records how many rows each read asks for."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.rows = array, array.shape, array.dtype, []

    def __getitem__(self, index):
        out = self.array[index]
        self.rows.append(out.shape[0])
        return out


def test_memory_is_bounded_by_a_band(tmp_path):
    size, tile, overlap = 2048, 64, 16
    source = zarr.create_array(
        tmp_path / "in.zarr", shape=(size, size, 3), dtype="uint8", chunks=(256, 256, 3)
    )
    source[:] = _image((size, size, 3), np.uint8)
    reads = CountingReads(source)
    store = tmp_path / "out.zarr"
    out = denoise_to_zarr(reads, store, Identity(), tile_size=tile, overlap=overlap)
    np.testing.assert_array_equal(out[:], source[:])
    band = max(
        b.stop - b.start for b in tiling.plan_bands(tiling.axis_grid(size, tile, overlap), 2)
    )
    assert max(reads.rows) <= band < size // 8  # never more than a band in memory
    assert sum(reads.rows) < 1.5 * size  # each row read about once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "out.zarr"]


def test_denoise_to_zarr_round_trip_and_cleanup(tmp_path):
    image = _image((2, 70, 90, 4), np.uint8)
    store = tmp_path / "out.zarr"
    out = denoise_to_zarr(image, store, Identity(), tile_size=32, overlap=8)
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[:], image)
    assert out.shape == image.shape
    with pytest.raises(FileExistsError):
        denoise_to_zarr(image, store, Identity())
    with pytest.raises(Cancelled):
        denoise_to_zarr(
            image,
            tmp_path / "cancelled.zarr",
            Identity(),
            tile_size=32,
            overlap=8,
            cancel=lambda: True,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]  # nothing half-made


def test_core_imports_no_gui():
    import subprocess
    import sys

    code = (
        "import sys, napari_histo_denoise as n; n.denoise; n.iter_denoise; "
        "import napari_histo_denoise.cli.denoise; "
        "print(sorted(m for m in ('napari','qtpy','magicgui','vispy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_denoise_picture_tiff_and_zarr(tmp_path, basic_weights, capsys):
    from skimage import data
    from skimage import io as skio

    from napari_histo_denoise.cli import main
    from napari_histo_denoise.io import read_image

    _, weights = basic_weights
    picture = data.immunohistochemistry()[100:160, 200:270]
    source = tmp_path / "ihc.png"
    skio.imsave(source, picture, check_contrast=False)
    expected = denoise(picture, "basic", weights, tile_size=64, overlap=16).compute()
    common = ["--weights", str(weights), "--tile-size", "64", "--overlap", "16"]
    assert main(["denoise", str(source), "-o", str(tmp_path / "out.tif"), *common]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), expected)
    assert "tiles" in capsys.readouterr().err  # the progress bar
    assert main(["denoise", str(source), "-o", str(tmp_path / "out.zarr"), *common]) == 0
    data, _ = read_image(tmp_path / "out.zarr")  # RGB to .zarr: an OME-Zarr pyramid
    np.testing.assert_array_equal(
        np.asarray(data[0] if isinstance(data, list) else data), expected
    )
    assert main(["denoise", str(source), "-o", str(tmp_path / "out.tif"), *common]) == 2
    assert "exists" in capsys.readouterr().err
    assert (
        main(
            [
                "denoise",
                str(source),
                "-o",
                str(tmp_path / "x.tif"),
                "--weights",
                str(weights),
                "--tile-size",
                "100",
            ]
        )
        == 2
    )
    assert "multiple of 16" in capsys.readouterr().err


def test_devices_and_precision_choices():
    from napari_histo_denoise.devices import cpu_has_native_bf16, resolve_precision

    devices = nhd.available_devices()
    assert devices[-1] == "cpu"
    assert str(nhd.resolve_device("auto")) == devices[0]
    assert nhd.resolve_device("CPU") == torch.device("cpu")
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    with pytest.raises(ValueError, match="unknown device"):
        nhd.resolve_device("cpu:1")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            nhd.resolve_device("cuda")


def test_settings_refuse_mismatched_model_and_weights():
    with pytest.raises(ValueError, match="only for a named model"):
        nhd.DenoiseSettings(model=Identity(), weights={})
    with pytest.raises(ValueError, match=r"torch\.nn\.Module"):
        nhd.DenoiseSettings(model=42)
    settings = nhd.DenoiseSettings(model=Identity(), tile_size=512, overlap=64)
    assert (settings.tile_size, settings.overlap, settings.batch_size) == (512, 64, None)
