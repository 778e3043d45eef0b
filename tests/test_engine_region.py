"""Denoising a region reuses cached tiles and gives exactly the whole image's pixels there."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from skimage.data import immunohistochemistry
from torch import nn

from napari_histo_denoise.engine import Cancelled, TileCache, denoise, iter_denoise_region
from napari_histo_denoise.engine.region import denoise_region

TILE, OVERLAP = 64, 16


class Blur(nn.Module):
    """A small fixed convolution: a model whose output depends on the neighbourhood."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 5, padding=2)
        torch.manual_seed(0)
        nn.init.uniform_(self.conv.weight, 0, 0.1)
        self.calls = 0

    def forward(self, x):
        self.calls += x.shape[0]
        return self.conv(x)


@pytest.fixture(scope="module")
def ihc():
    return np.ascontiguousarray(immunohistochemistry()[:300, :400])


def _run(image, rows, columns, model, **kwargs):
    kwargs.setdefault("tile_size", TILE)
    kwargs.setdefault("overlap", OVERLAP)
    kwargs.setdefault("precision", "fp32")  # the module itself runs (no bf16 copy): calls count
    return denoise_region(image, rows, columns, model, device="cpu", **kwargs)


@pytest.mark.parametrize("channels", ["rgb", "grey", "rgba"])
def test_region_equals_the_whole_image_result_there(ihc, channels):
    image = {
        "rgb": ihc,
        "grey": ihc[..., 1],
        "rgba": np.concatenate([ihc, np.full((*ihc.shape[:2], 1), 7, np.uint8)], -1),
    }[channels]
    model = Blur().eval()
    whole = denoise(
        image, model, tile_size=TILE, overlap=OVERLAP, device="cpu", precision="fp32"
    ).compute()
    result = _run(image, slice(37, 201), slice(150, 333), model)
    assert result.data.dtype == image.dtype and result.data.shape[:2] == (164, 183)
    np.testing.assert_array_equal(result.data, whole[37:201, 150:333])
    assert result.computed > 0 and result.reused == 0


def test_a_plane_of_a_stack_and_an_image_shorter_than_a_tile(ihc):
    model = Blur().eval()
    stack = np.stack([ihc[:40, :50], ihc[100:140, 200:250]]).astype(np.float32) / 255
    whole = denoise(
        stack, model, tile_size=TILE, overlap=OVERLAP, device="cpu", precision="fp32"
    ).compute()
    result = _run(stack, slice(5, 40), slice(None), model, plane=(1,))
    np.testing.assert_array_equal(result.data, whole[1, 5:40])


def test_a_pan_reuses_the_cached_tiles(ihc):
    model = Blur().eval()
    cache = TileCache()
    first = _run(ihc, slice(0, 150), slice(0, 200), model, cache=cache, source="ihc")
    calls = model.calls
    assert calls == first.computed and len(cache) == first.computed
    panned = _run(ihc, slice(100, 250), slice(150, 350), model, cache=cache, source="ihc")
    assert panned.reused > 0 and panned.computed > 0
    assert model.calls - calls == panned.computed  # only the new tiles ran
    whole = denoise(
        ihc, model, tile_size=TILE, overlap=OVERLAP, device="cpu", precision="fp32"
    ).compute()
    np.testing.assert_array_equal(panned.data, whole[100:250, 150:350])
    again = _run(ihc, slice(100, 250), slice(150, 350), model, cache=cache, source="ihc")
    assert again.computed == 0 and again.reused == panned.computed + panned.reused
    assert cache.hits == panned.reused + again.reused


def test_tiles_are_not_reused_across_sources_or_settings(ihc):
    model = Blur().eval()
    cache = TileCache()
    _run(ihc, slice(0, 100), slice(0, 100), model, cache=cache, source="a")
    other = _run(ihc[::-1].copy(), slice(0, 100), slice(0, 100), model, cache=cache, source="b")
    assert other.reused == 0
    retiled = _run(ihc, slice(0, 100), slice(0, 100), model, cache=cache, source="a", overlap=8)
    assert retiled.reused == 0
    changed = Blur().eval()
    with torch.no_grad():
        changed.conv.weight.mul_(2)
    assert _run(ihc, slice(0, 100), slice(0, 100), changed, cache=cache, source="a").reused == 0


def test_the_cache_stays_within_its_bound_least_recently_used_first_out():
    tile = torch.zeros(3, 8, 8)  # 768 bytes
    cache = TileCache(max_bytes=3 * 768)
    for key in "abc":
        cache.put(key, tile)
    assert cache.get("a") is not None  # now the most recent
    cache.put("d", tile)
    assert cache.bytes == 3 * 768 and len(cache) == 3
    assert cache.get("b") is None and cache.get("a") is not None
    cache.put("huge", torch.zeros(3, 64, 64))  # over the whole bound: not kept
    assert cache.get("huge") is None and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


def test_a_cancelled_region_keeps_the_tiles_it_finished(ihc):
    model = Blur().eval()
    cache = TileCache()
    cancel = threading.Event()
    events = iter_denoise_region(
        ihc, slice(None), slice(None), model, tile_size=TILE, overlap=OVERLAP, device="cpu",
        precision="fp32", batch_size=2, cache=cache, source="ihc", cancel=cancel,
    )  # fmt: skip
    first = next(events)
    assert first.done == 2 and first.total > 2
    cancel.set()
    with pytest.raises(Cancelled):
        next(events)
    assert len(cache) == 2
    finished = _run(ihc, slice(None), slice(None), model, cache=cache, source="ihc")
    assert finished.reused == 2 and finished.computed == first.total - 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": slice(300, 400)}, "hold no pixel"),
        ({"rows": slice(0, 100, 2)}, "contiguous"),
        ({"plane": (0,)}, "not a plane"),
        ({"cache": TileCache()}, "a cache needs a source"),
    ],
)
def test_bad_regions_are_refused_clearly(ihc, kwargs, message):
    args = {"rows": slice(0, 50), "columns": slice(0, 50), **kwargs}
    with pytest.raises(ValueError, match=message):
        _run(ihc, model=Blur().eval(), **args)


def test_a_region_may_be_given_as_start_stop_pairs(ihc):
    model = Blur().eval()
    pairs = _run(ihc, (37, 201), [150, 333], model)
    np.testing.assert_array_equal(
        pairs.data, _run(ihc, slice(37, 201), slice(150, 333), model).data
    )
    with pytest.raises(TypeError, match=r"rows must be a slice or \(start, stop\)"):
        _run(ihc, "37:201", slice(0, 50), model)
