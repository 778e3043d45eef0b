"""The headless renderer: ticks, charts, image grids and the files they are written to."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data, io

from napari_histo_denoise.figures import (
    DARK,
    LIGHT,
    Panel,
    Series,
    chart,
    image_grid,
    nice_ticks,
    tick_label,
    write_image,
)


@pytest.mark.parametrize(
    ("low", "high", "count", "integer", "expected"),
    [
        (0, 1300, 6, False, [0, 500, 1000, 1500]),
        (15, 50, 5, False, [10, 20, 30, 40, 50]),
        (0.0031, 0.0537, 4, False, [0, 0.02, 0.04, 0.06]),
        (0, 12, 6, False, [0, 2.5, 5, 7.5, 10, 12.5]),
        (0, 12, 6, True, [0, 5, 10, 15]),
        (0, 3, 6, True, [0, 1, 2, 3]),
        (7, 7, 3, False, [6.5, 7, 7.5]),  # one value: a range around it
    ],
)
def test_nice_ticks_are_round_and_span_the_range(low, high, count, integer, expected):
    ticks = nice_ticks(low, high, count, integer=integer)
    np.testing.assert_allclose(ticks, expected, atol=1e-12)
    assert ticks[0] <= low and ticks[-1] >= high


def test_tick_labels_show_the_decimals_their_step_needs():
    assert [tick_label(v, 2.5) for v in (0, 2.5, 5)] == ["0", "2.5", "5.0"]
    assert tick_label(25, 5) == "25" and tick_label(0.002, 0.001) == "0.002"
    assert tick_label(200_000, 50_000) == "200k" and tick_label(1_500_000, 500_000) == "1.5M"
    assert tick_label(0.00025, 0.00005) == "2.5e-4"


def test_chart_draws_every_panel_in_the_theme():
    steps = np.arange(1, 101)
    panels = [
        Panel("loss", [Series("loss", steps, 0.1 / steps)], "step", log_y=True),
        Panel("PSNR (dB)", [Series("model", [0, 50, 100], [18, 25, 27], markers=True)]),
        Panel("empty"),
    ]
    image = chart(panels, columns=2, width=600, panel_height=200, theme=DARK)
    assert image.shape == (400, 600, 3) and image.dtype == np.uint8
    assert tuple(image[-1, -1]) == DARK.background  # the empty fourth cell
    left, right = image[:200, :300], image[:200, 300:]
    for panel in (left, right):  # lines in the palette's first colour, on the background
        assert (np.abs(panel.astype(int) - LIGHT.palette[0]).sum(-1) < 40).sum() > 100
    with pytest.raises(ValueError, match="at least one panel"):
        chart([])


def test_chart_leaves_out_values_it_cannot_draw():
    series = Series("x", [0, 1, 2, 3], [1.0, float("nan"), -1.0, 0.0])
    image = chart([Panel("log", [series], log_y=True)], width=300, panel_height=150)
    assert image.shape == (150, 300, 3)  # one drawable point (x=0): drawn as a dot


def test_image_grid_pastes_images_pixel_for_pixel():
    ihc = data.immunohistochemistry()
    a, b = ihc[:64, :80], ihc[100:164, 100:180]
    grid = image_grid(
        [[a, b], [b, a / 255.0]],
        column_labels=["one", "two"],
        row_labels=["row A", "row B"],
        captions=[["a", "b"], ["b", "a"]],
        footer="made by a test",
        gap=4,
    )
    corners = np.argwhere((grid == a[0, 0]).all(-1))
    found = [(y, x) for y, x in corners if np.array_equal(grid[y : y + 64, x : x + 80], a)]
    assert len(found) == 2  # both copies of `a`, unresampled (the float one rounds back)
    assert grid.shape[0] > 2 * 64 and grid.shape[1] > 2 * 80


def test_write_image_by_suffix(tmp_path):
    picture = data.immunohistochemistry()[:64, :64]
    png = write_image(tmp_path / "a.png", picture)
    np.testing.assert_array_equal(io.imread(png), picture)
    jpeg = io.imread(write_image(tmp_path / "a.jpg", picture, quality=95))
    assert np.abs(jpeg.astype(int) - picture).mean() < 4
    with pytest.raises(ValueError, match=r"\.png, \.jpg or \.jpeg"):
        write_image(tmp_path / "a.gif", picture)
