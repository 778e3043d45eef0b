"""Pictures of an evaluation: mosaics of the scored crops and PSNR against sigma.

``histo-denoise evaluate --figures`` writes them beside its report, so the pictures
are always made from the figures in the tables they illustrate:

- one mosaic per source (its first crop, at full resolution): a row per sigma, a column
  for the clean crop and one per method (noisy input, model, baselines), each labelled
  with its PSNR on that crop;
- one chart of PSNR against sigma: a panel per source (and their mean), a line per method.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .evaluation import ALL_SOURCES, EvaluationReport
from .figures import Panel, Series, chart, image_grid, write_image

#: How methods are named in pictures (others, such as the model's label, as they are).
DISPLAY_NAMES = {"noisy": "noisy", "cbm3d": "CBM3D", "nlm": "NLM", "tv": "TV"}
#: JPEG quality of the mosaics (noise compresses badly as PNG).
MOSAIC_QUALITY = 88


def mosaic(report: EvaluationReport, crop: str) -> np.ndarray:
    """The mosaic of one kept crop (``report.images[crop]``, see ``evaluate(keep_images=True)``).

    Rows: the sigmas. Columns: the clean crop, then every method in report order,
    each captioned with its PSNR (dB) on this crop.
    """
    kept = report.images[crop]
    sigmas = list(dict.fromkeys(r.sigma for r in report.rows if r.image == crop))
    scores = {(r.sigma, r.method): r.psnr for r in report.rows if r.image == crop}
    cells, captions = [], []
    for sigma in sigmas:
        cells.append([kept.clean] + [kept.outputs[(sigma, m)] for m in report.methods])
        captions.append(["reference"] + [f"{scores[(sigma, m)]:.2f} dB" for m in report.methods])
    height, width = kept.clean.shape[:2]
    weights = report.settings.get("weights")
    footer = f"{crop}: {width} x {height} px, one image pixel per pixel; PSNR of each output"
    footer += " against the clean crop"
    if weights:
        footer += f"; weights {Path(weights['path']).name} (SHA-256 {weights['sha256'][:12]})"
    return image_grid(
        cells,
        column_labels=["clean", *(_display(m) for m in report.methods)],
        row_labels=[f"sigma {s:g}" for s in sigmas],
        captions=captions,
        footer=footer,
    )


def psnr_chart(report: EvaluationReport) -> np.ndarray:
    """PSNR (dB) against sigma: a panel per source (and the mean when there are several)."""
    means = report.per_source()
    sources = list(dict.fromkeys(r.source for r in report.rows))
    if len(sources) > 1:  # of one source, the mean is the same line again
        sources.append(ALL_SOURCES)
    panels = []
    for source in sources:
        series = []
        for index, method in enumerate(report.methods):
            points = sorted(
                (m["sigma"], m["psnr"])
                for m in means
                if m["source"] == source and m["method"] == method
            )
            x, y = zip(*points, strict=True)
            series.append(Series(_display(method), x, y, markers=True, color=index))
        title = "mean of all sources" if source == ALL_SOURCES else source
        panels.append(Panel(f"{title}: PSNR (dB)", series, "sigma (0-255 scale)", integer_x=True))
    columns = min(2, len(panels))
    return chart(panels, columns=columns, width=560 * columns, panel_height=300)


def write_figures(report: EvaluationReport, report_path: str | os.PathLike) -> list[Path]:
    """Write the chart and the mosaics beside ``report_path`` (``NAME.md``); return their paths.

    ``NAME_psnr.png`` and ``NAME_<source>.jpg`` for every kept crop.
    """
    report_path = Path(report_path)
    stem = report_path.with_suffix("")
    files = [write_image(f"{stem}_psnr.png", psnr_chart(report))]
    for crop, kept in report.images.items():
        path = f"{stem}_{_slug(kept.source)}.jpg"
        files.append(write_image(path, mosaic(report, crop), quality=MOSAIC_QUALITY))
    return files


def figures_markdown(report: EvaluationReport, files: list[Path]) -> str:
    """Markdown that shows :func:`write_figures`' files, linked relative to the report."""
    lines = ["## Figures", ""]
    chart_file, *mosaics = files
    lines += [f"![PSNR against sigma, per method]({chart_file.name})", ""]
    for kept, path in zip(report.images.values(), mosaics, strict=True):
        lines += [f"![{kept.source}: clean, noisy and every method at each sigma]({path.name})"]
        lines += [""]
    return "\n".join(lines)


def _display(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", Path(name).stem).strip("_") or "image"
