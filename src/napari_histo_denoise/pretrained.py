"""Pretrained weights bundled inside the package: found by model name, checked by SHA-256.

The package folder ``weights/`` holds ``index.json`` (model name -> file, SHA-256 and a
one-line summary from the model card ``docs/pretrained.md``) and the files it names.
A named model without weights (``denoise(image, "basic")``, the CLI without
``--weights``, the widget's "pretrained (bundled)" entry) uses the bundled file; a model
with none gets an error that says how to train weights.

This module imports no torch: the napari face lists the bundled entries cheaply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: Folder of the bundled weights and their index (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Name of the index file inside ``WEIGHTS_DIR``.
INDEX_NAME = "index.json"
#: Label of the bundled weights in the napari widget's Weights chooser.
BUNDLED_LABEL = "pretrained (bundled)"
#: The release candidate: basic weights not bundled yet, carried over from one training
#: session to the next (docs/pretrained.md). In a source checkout only, not in a package.
CANDIDATE = Path(__file__).resolve().parents[2] / "release_candidate" / "basic.int8.safetensors"


@dataclass(frozen=True)
class Pretrained:
    """One bundled weights file: its model, where it is, its digest and its summary."""

    model: str
    path: Path
    sha256: str
    summary: str


def bundled(model: str) -> Pretrained | None:
    """Return the bundled weights of ``model``, or None when the package has none for it.

    Parameters
    ----------
    model : str
        Architecture name, ``"basic"`` or ``"deep"``.
    """
    index = WEIGHTS_DIR / INDEX_NAME
    if not index.is_file():
        return None
    entry = json.loads(index.read_text(encoding="utf-8")).get(model)
    if entry is None or not (WEIGHTS_DIR / entry["file"]).is_file():
        return None
    return Pretrained(model, WEIGHTS_DIR / entry["file"], entry["sha256"], entry["summary"])


def best_basic_weights() -> Path | None:
    """The bundled basic weights, else the release candidate of a source checkout, else None."""
    entry = bundled("basic")
    if entry is not None:
        return entry.path
    return CANDIDATE if CANDIDATE.is_file() else None


def bundled_weights(model: str) -> Path:
    """Return the path of ``model``'s bundled weights after checking their SHA-256.

    Raises
    ------
    ValueError
        If the package bundles no weights for ``model`` (the message says how to train
        them), or a :class:`~napari_histo_denoise.checkpoint.WeightsError` if the
        bundled file's digest is not the one in the index (a damaged installation).
    """
    entry = bundled(model)
    if entry is None:
        raise ValueError(missing_weights_message(model))
    from .checkpoint import WeightsError
    from .files import file_sha256

    digest = file_sha256(entry.path)
    if digest != entry.sha256:
        raise WeightsError(
            f"the bundled {model} weights {entry.path} are damaged: SHA-256 {digest}, expected "
            f"{entry.sha256}; reinstall napari-histo-denoise"
        )
    return entry.path


def missing_weights_message(model: str) -> str:
    """Say that ``model`` has no weights here, and how to get them."""
    return (
        f"model {model!r} needs weights (a file path or a state dict) and this installation "
        f"bundles none for it. Train them on your clean images, e.g. `histo-denoise train "
        f"--preset release --model {model} --images MY_IMAGES/ --minutes 60 -o "
        f"{model}.safetensors` (docs/training.md), then pass that file as the weights"
    )
