"""Pictures without matplotlib: line charts and labelled image grids, as RGB arrays.

The training curves, the evaluation's mosaics and charts, the before/after picture and
the napari widget's live plot are all drawn here with Pillow (which scikit-image
depends on), so every face stays headless and no plotting library is needed. Charts
are drawn at ``SUPERSAMPLE`` times their size and reduced, which smooths lines and
text; images in a grid are pasted pixel for pixel, never resampled.

Labels use Pillow's built-in font: keep them ASCII.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]

#: Charts are drawn this many times larger, then reduced (anti-aliasing).
SUPERSAMPLE = 3
#: Okabe-Ito colours (distinguishable with colour-vision deficiencies), black left out.
PALETTE: tuple[RGB, ...] = (
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
)


@dataclass(frozen=True)
class Theme:
    """Colours of a figure: background, text and axes, grid lines, and the series palette."""

    background: RGB = (255, 255, 255)
    text: RGB = (34, 34, 34)
    grid: RGB = (228, 228, 228)
    palette: tuple[RGB, ...] = PALETTE


LIGHT = Theme()
DARK = Theme(background=(38, 41, 48), text=(235, 235, 235), grid=(66, 72, 82))


@dataclass(frozen=True)
class Series:
    """One line of a chart; ``markers`` adds a dot at every point (for a few points)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    markers: bool = False
    color: int | None = None  # palette index; None: the series' position in its panel


@dataclass(frozen=True)
class Panel:
    """One chart: a title (with the unit), its lines, an x-axis label, a log or linear y.

    ``xlim`` fixes the x range (e.g. 0 to a run's last step); by default the ticks
    around the data set it. ``integer_x``: x ticks at whole numbers only (steps, sigmas).
    """

    title: str
    series: Sequence[Series] = field(default_factory=tuple)
    xlabel: str = ""
    log_y: bool = False
    xlim: tuple[float, float] | None = None
    integer_x: bool = False


def chart(
    panels: Sequence[Panel],
    *,
    columns: int = 1,
    width: int = 640,
    panel_height: int = 220,
    font_px: int = 13,
    theme: Theme = LIGHT,
) -> np.ndarray:
    """Draw panels of line charts on a grid and return the picture.

    Each panel has its title and legend on top, tick values on the left and bottom,
    grid lines at the ticks and its own y range (a log scale with ``log_y``);
    non-finite and, on a log scale, non-positive values are left out. A panel with
    no point to draw says so.

    Parameters
    ----------
    panels : sequence of Panel
        Laid out row by row, ``columns`` per row.
    columns : int
        Panels per row.
    width, panel_height : int
        Size of the whole picture's width and of each panel's height, in pixels.
    font_px : int
        Text height in pixels.
    theme : Theme
        Colours.

    Returns
    -------
    numpy.ndarray
        ``height x width x 3`` uint8 RGB.
    """
    if not panels:
        raise ValueError("a chart needs at least one panel")
    rows = math.ceil(len(panels) / columns)
    s = SUPERSAMPLE
    canvas = Image.new("RGB", (width * s, rows * panel_height * s), theme.background)
    draw = ImageDraw.Draw(canvas)
    panel_width = width // columns
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        box = (column * panel_width * s, row * panel_height * s, panel_width * s, panel_height * s)
        _draw_panel(draw, panel, box, font_px * s, theme)
    return np.asarray(canvas.resize((width, rows * panel_height), Image.LANCZOS))


def image_grid(
    cells: Sequence[Sequence[np.ndarray]],
    *,
    column_labels: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    captions: Sequence[Sequence[str]] | None = None,
    footer: str = "",
    font_px: int = 14,
    gap: int = 6,
    theme: Theme = LIGHT,
) -> np.ndarray:
    """Lay out images on a grid, with column labels, row labels, captions and a footer.

    Images are pasted at full resolution (one image pixel per picture pixel), so noise
    and nuclei look as they are; a cell as large as the largest image holds each one.

    Parameters
    ----------
    cells : sequence of sequences of numpy.ndarray
        Rows of H x W x 3 (or H x W) images, uint8 or float in [0, 1].
    column_labels, row_labels : sequence of str
        Text above each column and left of each row (optional).
    captions : sequence of sequences of str, optional
        Text under each image, row by row.
    footer : str
        One line under the grid (provenance, settings).
    font_px : int
        Text height in pixels.
    gap : int
        Pixels between cells.
    theme : Theme
        Colours.

    Returns
    -------
    numpy.ndarray
        uint8 RGB picture.
    """
    images = [[_as_uint8_rgb(image) for image in row] for row in cells]
    if not images or not all(images):
        raise ValueError("an image grid needs at least one image in every row")
    font = _font(font_px)
    line = font_px + font_px // 2
    cell_h = max(im.shape[0] for row in images for im in row)
    cell_w = max(im.shape[1] for row in images for im in row)
    columns = max(len(row) for row in images)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((_text_width(measure, t, font) for t in row_labels), default=0)
    left = gap + (label_w + gap if row_labels else 0)
    top = gap + (line if column_labels else 0)
    row_h = cell_h + (line if captions else 0) + gap
    width = left + columns * (cell_w + gap)
    height = top + len(images) * row_h + (line if footer else 0)
    canvas = Image.new("RGB", (width, height), theme.background)
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(column_labels):
        _centred(draw, text, left + c * (cell_w + gap) + cell_w / 2, gap, font, theme.text)
    for r, row in enumerate(images):
        y = top + r * row_h
        if r < len(row_labels):
            draw.text(
                (gap, y + cell_h / 2 - font_px / 2), row_labels[r], font=font, fill=theme.text
            )
        for c, image in enumerate(row):
            x = left + c * (cell_w + gap)
            canvas.paste(Image.fromarray(image), (x, y))
            if captions and c < len(captions[r]):
                _centred(draw, captions[r][c], x + cell_w / 2, y + cell_h + 2, font, theme.text)
    if footer:
        draw.text((gap, height - line), footer, font=font, fill=theme.text)
    return np.asarray(canvas)


def write_image(path: str | Path, image: np.ndarray, *, quality: int = 90) -> Path:
    """Write a picture as PNG or JPEG (by the suffix; JPEG at ``quality``).

    Raises
    ------
    ValueError
        For another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    picture = Image.fromarray(_as_uint8_rgb(image))
    if suffix == ".png":
        picture.save(path, optimize=True)
    elif suffix in (".jpg", ".jpeg"):
        picture.save(path, quality=quality, optimize=True)
    else:
        raise ValueError(f"{path.name}: write pictures as .png, .jpg or .jpeg")
    return path


def nice_ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """About ``count`` round ticks (1, 2, 2.5 or 5 times a power of ten) spanning [low, high].

    The first tick is at or below ``low`` and the last at or above ``high``, so the
    ticks also give the axis range. With ``integer`` the ticks are whole numbers.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got [{low}, {high}]")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.05 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    if integer:
        raw = max(raw, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    step = next(
        m * power
        for m in (1, 2, 2.5, 5, 10)
        if m * power >= raw * (1 - 1e-9) and not (integer and m * power % 1)
    )
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    return [first + i * step for i in range(round((last - first) / step) + 1)]


def tick_label(value: float, step: float) -> str:
    """A tick value with as many decimals as its step needs, e.g. ``25``, ``0.25``, ``12k``."""
    if abs(value) < step * 1e-6:
        return "0"
    if abs(value) >= 10_000 and step >= 1000:
        for unit, size in (("M", 1e6), ("k", 1e3)):
            if abs(value) >= size:
                return f"{value / size:.{_decimals(step / size)}f}{unit}"
    if step < 1e-3:
        return f"{value:.1e}".replace("e-0", "e-")
    return f"{value:.{_decimals(step)}f}"


def _decimals(step: float) -> int:
    """Decimals that show every multiple of ``step`` exactly (2.5 -> 1, 0.2 -> 1, 20 -> 0)."""
    for decimals in range(8):
        if abs(round(step, decimals) - step) < step * 1e-6:
            return decimals
    return 8


@functools.lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or without FreeType: bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> float:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _centred(draw, text: str, x: float, y: float, font, fill: RGB) -> None:
    draw.text((x - _text_width(draw, text, font) / 2, y), text, font=font, fill=fill)


def _as_uint8_rgb(image: np.ndarray) -> np.ndarray:
    data = np.asarray(image)
    if data.dtype != np.uint8:
        data = np.round(np.clip(data, 0, 1) * 255).astype(np.uint8)
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=-1)
    if data.ndim != 3 or data.shape[-1] not in (3, 4):
        raise ValueError(f"expected an H x W or H x W x 3 image, got shape {data.shape}")
    return np.ascontiguousarray(data[..., :3])


def _points(series: Series, log_y: bool) -> list[tuple[float, float]]:
    points = []
    for x, y in zip(series.x, series.y, strict=True):
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        if log_y:
            if y <= 0:
                continue
            y = math.log10(y)
        points.append((float(x), float(y)))
    return points


def _draw_panel(draw, panel: Panel, box: tuple[int, int, int, int], px: int, theme: Theme) -> None:
    x0, y0, width, height = box
    font, pad = _font(px), px // 2
    palette = theme.palette
    colors = [
        palette[(i if s.color is None else s.color) % len(palette)]
        for i, s in enumerate(panel.series)
    ]
    lines = [(s, c, _points(s, panel.log_y)) for s, c in zip(panel.series, colors, strict=True)]
    lines = [line for line in lines if line[2]]

    # Title, then the legend on the same line when it fits, else on the next.
    draw.text((x0 + pad, y0 + pad), panel.title, font=font, fill=theme.text)
    legend = [(s.label, color) for s, color, _ in lines if s.label]
    legend_w = sum(_text_width(draw, t, font) + 3 * px for t, _ in legend)
    title_end = x0 + pad + _text_width(draw, panel.title, font) + 2 * px
    if title_end + legend_w <= x0 + width - pad:
        lx, ly, top = x0 + width - pad - legend_w, y0 + pad, y0 + 2 * pad + px
    else:
        lx, ly, top = x0 + pad, y0 + 2 * pad + px, y0 + 3 * pad + 2 * px
    for text, color in legend:
        mid = ly + px * 0.6
        draw.line([(lx, mid), (lx + 1.6 * px, mid)], fill=color, width=max(2, px // 5))
        draw.text((lx + 2 * px, ly), text, font=font, fill=theme.text)
        lx += _text_width(draw, text, font) + 3 * px

    if not lines:
        message = "no data yet"
        _centred(draw, message, x0 + width / 2, y0 + height / 2 - px / 2, font, theme.text)
        return
    xs = [x for *_, points in lines for x, _ in points]
    ys = [y for *_, points in lines for _, y in points]
    xlow, xhigh = panel.xlim or (min(xs), max(xs))
    xticks = nice_ticks(xlow, xhigh, 6, integer=panel.integer_x)
    xstep = xticks[1] - xticks[0]
    if panel.xlim is None:
        xlow, xhigh = xticks[0], xticks[-1]
    else:
        xticks = [t for t in xticks if xlow - xstep * 1e-6 <= t <= xhigh + xstep * 1e-6]
    yticks = nice_ticks(min(ys), max(ys), 4)
    ylabels = [_y_label(t, yticks, panel.log_y) for t in yticks]
    left = x0 + pad + max(_text_width(draw, t, font) for t in ylabels) + pad
    right = x0 + width - pad - px
    bottom = y0 + height - pad - (2 * px + pad if panel.xlabel else px) - pad
    top += pad

    def to_xy(x: float, y: float) -> tuple[float, float]:
        fx = (x - xlow) / ((xhigh - xlow) or 1.0)
        fy = (y - yticks[0]) / (yticks[-1] - yticks[0])
        return left + fx * (right - left), bottom - fy * (bottom - top)

    thin = max(1, px // 12)
    for value, text in zip(yticks, ylabels, strict=True):
        _, y = to_xy(xlow, value)
        draw.line([(left, y), (right, y)], fill=theme.grid, width=thin)
        tw = _text_width(draw, text, font)
        draw.text((left - pad - tw, y - px * 0.6), text, font=font, fill=theme.text)
    for value in xticks:
        x, _ = to_xy(value, yticks[0])
        draw.line([(x, top), (x, bottom)], fill=theme.grid, width=thin)
        _centred(draw, tick_label(value, xstep), x, bottom + pad // 2, font, theme.text)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=theme.text, width=2 * thin)
    if panel.xlabel:
        _centred(draw, panel.xlabel, (left + right) / 2, bottom + px + pad, font, theme.text)

    for series, color, points in lines:
        xy = [to_xy(x, y) for x, y in points]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=max(2, px // 6), joint="curve")
        if series.markers or len(xy) == 1:
            r = max(2, px // 4)
            for x, y in xy:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def _y_label(value: float, ticks: list[float], log_y: bool) -> str:
    step = ticks[1] - ticks[0]
    if not log_y:
        return tick_label(value, step)
    number = 10**value
    return f"{number:.2g}" if 1e-3 <= number < 1e4 else f"{number:.1e}".replace("e-0", "e-")
