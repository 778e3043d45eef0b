"""bioimage.io model packages: export trained weights as one, and read one back as weights.

A package (format 0.5 of the bioimage.io model specification, written with
``bioimageio.spec``) holds the basic or deep model three ways: the PyTorch state dict with
this package's architecture (``napari_histo_denoise.models``), TorchScript and ONNX; the
description of its input and output (RGB, float32 in [0, 1], batch x channel x y x x, tiles
of any multiple of 16 from :data:`MIN_TILE` on, with :data:`HALO` pixels per side to crop when
tiles are stitched); a test input (a noisy crop of the bundled CMU-1 slide) and the output
this package's engine makes of it; a cover (noisy | denoised | clean); the model card with
the training totals and the licence and citation of every training image.

Reading a package (:func:`read_package`, used by :func:`~napari_histo_denoise.checkpoint.
read_weights`, hence by every face) checks its description against the specification
without touching the network, accepts only this project's two architectures, and reads the
state dict with ``torch.load(weights_only=True)`` after checking its SHA-256: nothing in a
package is imported or executed.

``bioimageio.spec`` (reading) and ``bioimageio.core`` with ``onnx`` (export) come with the
``bioimageio`` extra: ``pip install "napari-histo-denoise[bioimageio]"``.

The modules of this package, each one job: :mod:`.contract` (what every package states:
architectures, tile sizes, test input), :mod:`.spec_calls` (calls into the bioimage.io
libraries: installed, quiet, files closed), :mod:`.export` (the export: weight files, test
tensors, the ``.zip``), :mod:`.description` (the ``rdf.yaml``), :mod:`.card` (the model
card, training totals, sources and citations), :mod:`.read` (reading a package back, and
its checks), :mod:`.conformance` (bioimage.io's own test). torch and the bioimage.io
libraries are imported inside the functions that use them.
"""

from __future__ import annotations

from .card import citations, model_card, training_sources, training_totals
from .conformance import run_bmz_test
from .contract import (
    ARCHITECTURES,
    ENGINE_OVERLAP,
    HALO,
    MIN_TILE,
    ONNX_OPSET,
    TEST_SEED,
    TEST_SIGMA,
    TEST_SIZE,
)
from .export import WEIGHT_FORMATS, export_bmz, iter_export_bmz
from .read import package_architecture, package_model, read_package
from .spec_calls import EXTRA_HINT

__all__ = [
    "ARCHITECTURES",
    "ENGINE_OVERLAP",
    "EXTRA_HINT",
    "HALO",
    "MIN_TILE",
    "ONNX_OPSET",
    "TEST_SEED",
    "TEST_SIGMA",
    "TEST_SIZE",
    "WEIGHT_FORMATS",
    "citations",
    "export_bmz",
    "iter_export_bmz",
    "model_card",
    "package_architecture",
    "package_model",
    "read_package",
    "run_bmz_test",
    "training_sources",
    "training_totals",
]
