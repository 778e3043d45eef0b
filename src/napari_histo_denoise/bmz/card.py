"""A package's model card and what it says of the training: totals, images, citations.

:func:`model_card` writes the package's ``README.md``; :func:`training_totals`,
:func:`training_sources` and :func:`citations` read a weights file's metadata (its lineage
and the images named in it) for the card and for the description (:mod:`.description`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..lineage import LINEAGE_KEY
from ..settings import TILE_MULTIPLE
from .contract import ENGINE_OVERLAP, HALO, MIN_TILE, TEST_SEED, TEST_SIGMA, default_name


def training_totals(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training behind weights: their lineage's totals, their own run's, or None.

    Parameters
    ----------
    meta : mapping
        A weights file's metadata.
    """
    from ..lineage import chunk, totals

    recorded = meta.get(LINEAGE_KEY)
    if recorded:
        return dict(recorded["total"])
    try:
        return totals([chunk(meta)])
    except (KeyError, TypeError, ValueError):
        return None


def training_sources(meta: Mapping[str, Any]) -> list[Any]:
    """List the project's images (:mod:`~napari_histo_denoise.datasets`) behind weights.

    Those trained on or validated with, matched by file name, in the table's order.
    """
    from ..datasets import SOURCES

    total = training_totals(meta) or {}
    names = {Path(n).name for n in (*total.get("train_images", ()), *meta.get("val_images", ()))}
    return [s for s in SOURCES if Path(s.name).name in names]


def citations(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(text, doi)`` of the papers to cite: the architecture's, then the images' sources."""
    cites = [
        (
            "Ronneberger O, Fischer P, Brox T. U-Net: convolutional networks for biomedical "
            "image segmentation. MICCAI 2015 (the architecture)",
            "10.1007/978-3-319-24574-4_28",
        )
    ]
    if meta.get("architecture") == "deep":
        cites.append(
            (
                "He K, Zhang X, Ren S, Sun J. Deep residual learning for image recognition. "
                "CVPR 2016 (the residual blocks)",
                "10.1109/CVPR.2016.90",
            )
        )
    for source in training_sources(meta):
        if source.archive.cite is not None and source.archive.cite not in cites:
            cites.append(source.archive.cite)
    return cites


def model_card(
    meta: Mapping[str, Any], test_size: int, scores: tuple[float, float] | None = None
) -> str:
    """Write the package's documentation (Markdown).

    What the model is, its input and output, how it was trained and checked, its data and
    their licences, and how to run it. ``scores``: PSNR (dB) of the noisy test input and
    of its denoised output against the clean crop.
    """
    architecture = meta["architecture"]
    total = training_totals(meta)
    lines = [
        f"# {default_name(architecture)}",
        "",
        f"The {architecture} model of [napari-histo-denoise]"
        "(https://pypi.org/project/napari-histo-denoise/) "
        f"({meta.get('parameters', 0):,} parameters), exported by napari-histo-denoise "
        f"{__version__}.",
        "",
        "## Input and output",
        "",
        "- One RGB image, batch x channel x y x x, float32 in [0, 1] (8-bit values / 255); "
        "the output has the input's shape and range.",
        f"- y and x: any multiple of {TILE_MULTIPLE} from {MIN_TILE} px (the network halves "
        "them four times).",
        f"- Large images: tiles overlapping by {ENGINE_OVERLAP} px; crop {HALO} px (the halo) "
        "from each side of each output tile before stitching. napari-histo-denoise blends "
        f"its {ENGINE_OVERLAP} px overlaps with a window that gives the outer "
        f"{ENGINE_OVERLAP // 4} px no weight.",
        f"- Test input: a {test_size} x {test_size} crop of the CMU-1 slide with Gaussian "
        f"noise (sigma {TEST_SIGMA:g} on the 0-255 scale, seed {TEST_SEED}); test output: "
        "napari-histo-denoise's engine on it (one tile, fp32).",
        "",
        "## Training",
        "",
    ]
    if total:
        lines += [
            f"- {total['steps']:,} optimiser steps in {total['chunks']} run(s), "
            f"{total['patches']:,} patches, {total['hours']:g} hours on "
            f"{', '.join(total['devices'])}.",
        ]
        earlier = meta.get("init_sha256") or meta.get("init_weights")
        if earlier and not meta.get(LINEAGE_KEY):
            lines.append(
                f"- These are this file's own run only: it went on from earlier weights "
                f"({str(earlier)[:16]}...) whose training this file does not record."
            )
    else:
        lines += ["- No training record in the weights file."]
    for key, label in (
        ("mode", "mode"),
        ("noise", "noise"),
        ("patch_size", "patch size"),
        ("storage_dtype", "exported from weights stored as"),  # the package's: float32
    ):
        if meta.get(key) is not None:
            lines.append(f"- {label}: {meta[key]}")
    lines += [
        "",
        "## Validation",
        "",
        "- The test output is napari-histo-denoise's own result for the test input; "
        "`bioimageio test` reproduces it from each weight format included.",
    ]
    if scores is not None:
        lines.append(
            f"- On the test crop: noisy {scores[0]:.2f} dB, denoised {scores[1]:.2f} dB "
            "(PSNR against the clean crop; the cover shows the three)."
        )
    if meta.get("best_val_psnr") is not None:
        lines.append(f"- Best validation PSNR in training: {meta['best_val_psnr']} dB.")
    from ..datasets import licence_table

    sources = training_sources(meta)
    known = {Path(s.name).name for s in sources}
    named = [*(total or {}).get("train_images", ()), *meta.get("val_images", ())]
    others = sorted({Path(n).name for n in named} - known)
    lines += ["", "## Data and licences", ""]
    if sources:
        lines += licence_table(sources)
    if others:
        lines += [
            *([""] if sources else []),
            f"Also trained or validated on images outside napari-histo-denoise's data table "
            f"(their licences are their owners'): {', '.join(others)}.",
        ]
    if not named:
        lines.append("The weights file names no training images.")
    lines += [
        "",
        "## Use",
        "",
        '- napari-histo-denoise: `hd.denoise(image, "model.zip")`, `histo-denoise denoise '
        "IN -o OUT --weights model.zip`, or the widget's Weights chooser.",
        "- bioimage.io tools: `bioimageio test model.zip`; deepImageJ (Fiji) runs the "
        "TorchScript weights, ilastik the PyTorch or ONNX weights.",
        "",
        "## Licence",
        "",
        "The weights: BSD-3-Clause, as napari-histo-denoise. The training images keep their "
        "own licences (above).",
        "",
    ]
    return "\n".join(lines)


__all__ = ["citations", "model_card", "training_sources", "training_totals"]
