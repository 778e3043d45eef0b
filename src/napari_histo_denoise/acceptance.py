"""The rule that weights must pass to ship as the bundled default, and the check that applies it.

The rule (docs/pretrained.md): on a held-out source that training never saw, the model beats
each of TV, wavelet and NLM (scikit-image, blind) at Gaussian sigma 15, 25 and 50, and on the
clean crops of every scored image it changes them by no more than :data:`NO_HARM_DB` PSNR
(``PSNR(model(clean), clean) >= 36``, the minimum over the crops: "no harm"). The check also
scores a validation image and one Poisson-Gaussian level beside the baselines (and CBM3D, an
oracle reference, where the ``bm3d`` package is installed); those figures inform, they do not
gate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import (
    EvaluationReport,
    _model_runner,
    _resolve_model,
    _weights_record,
    available_baselines,
    evaluate,
    tissue_crops,
)
from .metrics import psnr

#: Gaussian sigmas (0-255 scale) at which the model must beat every rule baseline.
RULE_SIGMAS = (15, 25, 50)
#: The Poisson-Gaussian level also scored (noise std at mid-grey, 0-255 scale).
POISSON_GAUSSIAN_LEVEL = 25
#: The classical denoisers the model must beat on the held-out source.
RULE_BASELINES = ("tv", "wavelet", "nlm")
#: Least PSNR (dB) of the model's output on a clean crop against that crop.
NO_HARM_DB = 36.0
#: Label of the model's column in the reports.
MODEL = "model"


def no_harm_psnr(
    model: Any,
    crops: Sequence[np.ndarray],
    *,
    tile_size: int = 256,
    overlap: int = 32,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "auto",
) -> list[float]:
    """PSNR (dB) of the model's output on each clean crop against the crop (higher: less harm).

    Parameters
    ----------
    model : path, torch.nn.Module or state dict
        A weights file, a model, or a state dict of the basic or deep model.
    crops : sequence of numpy.ndarray
        Clean float RGB crops in [0, 1].
    tile_size, overlap, device, precision, backend
        Passed to the engine, as users run it.
    """
    model, _ = _resolve_model(model)
    run = _model_runner(model, tile_size, overlap, device, precision, backend)
    return [psnr(clean, run(clean)) for clean in crops]


@dataclass(frozen=True)
class Check:
    """One line of the rule: what was measured against what it must reach."""

    name: str
    measured: float
    target: float
    passed: bool


@dataclass
class ShipCheck:
    """The figures of a ship check and the verdict of the rule.

    Attributes
    ----------
    gaussian, poisson_gaussian : EvaluationReport
        Model and baselines on noisy crops of every image.
    no_harm : dict of str to list of float
        By source, :func:`no_harm_psnr` of each clean crop.
    checks : list of Check
        The rule, line by line.
    settings : dict
        What was measured, how (weights, images, crops, seed, device, precision).
    """

    gaussian: EvaluationReport
    poisson_gaussian: EvaluationReport
    no_harm: dict[str, list[float]]
    checks: list[Check]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every line of the rule passed."""
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record of the settings, figures and verdict."""
        return {
            "settings": self.settings,
            "passed": self.passed,
            "checks": [vars(c) for c in self.checks],
            "no_harm_psnr": self.no_harm,
            "gaussian": self.gaussian.to_dict(),
            "poisson_gaussian": self.poisson_gaussian.to_dict(),
        }

    def to_markdown(self) -> str:
        """The rule's lines with pass or fail, then every figure behind them."""
        weights = self.settings["weights"]
        named = "A model" if weights is None else f"Weights `{weights['path']}`"
        if weights is not None:
            named += f" (SHA-256 `{weights['sha256']}`)"
        lines = [
            f"{named}, held-out source `{self.settings['held_out']}`, "
            f"{self.settings['crops']} crops of {self.settings['crop']} px per image, "
            f"device {self.settings['device']}, precision {self.settings['precision']}, "
            f"backend {self.settings['backend']}.",
            "",
            "| rule | measured | target | |",
            "|---|---:|---:|---|",
        ]
        lines += [
            f"| {c.name} | {c.measured:.2f} | {c.target:.2f} | {'pass' if c.passed else 'FAIL'} |"
            for c in self.checks
        ]
        verdict = "pass" if self.passed else "do not pass"
        lines += ["", f"**These weights {verdict} the rule.**", ""]
        lines += ["No harm, PSNR dB per crop:", ""]
        lines += [
            f"- {source}: " + ", ".join(f"{v:.2f}" for v in values)
            for source, values in self.no_harm.items()
        ]
        for title, report in (
            ("Gaussian noise", self.gaussian),
            ("Poisson-Gaussian noise", self.poisson_gaussian),
        ):
            lines += ["", f"## {title}", "", report.to_markdown().rstrip()]
        return "\n".join(lines) + "\n"


def ship_check(
    weights: Any,
    held_out: str | Path,
    others: Sequence[str | Path] = (),
    *,
    crops: int = 4,
    crop: int = 256,
    seed: int = 0,
    tile_size: int = 256,
    overlap: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    backend: str = "auto",
    baselines: Sequence[str] | None = None,
    progress: Callable[[str], object] | None = None,
) -> ShipCheck:
    """Score weights by the shipping rule and return the figures with the verdict.

    Parameters
    ----------
    weights : path, torch.nn.Module or state dict
        A weights file (:func:`~napari_histo_denoise.checkpoint.load_model`), or a model.
    held_out : path
        A clean image of a source the weights never trained on: the rule's denoising lines.
    others : path or sequence of paths
        More clean images (e.g. the validation slide): scored, and checked for no harm.
    crops, crop, seed
        Tissue crops per image, their side and the seed of their positions and noise.
    tile_size, overlap, device, precision, backend
        Passed to the engine for the model.
    baselines : sequence of str, optional
        Baselines to score; default :data:`RULE_BASELINES` and ``cbm3d`` where installed.
    progress : callable, optional
        Called with a short message before each stage.

    Raises
    ------
    ValueError
        For images that cannot be read, bad crop sizes, baselines without the rule's, or
        weights whose record says they were trained on the held-out image.
    """
    names = list(baselines) if baselines is not None else _default_baselines()
    missing = [b for b in RULE_BASELINES if b not in names]
    if missing:
        raise ValueError(f"the rule compares with {', '.join(RULE_BASELINES)}: add {missing}")
    if isinstance(weights, (str, os.PathLike)):  # read once: the model and its record
        from .checkpoint import load_model

        model, meta = load_model(weights)
        _check_held_out(meta, weights, held_out)
    else:
        model, _ = _resolve_model(weights)
    if model is None:
        raise ValueError("ship_check needs weights or a model to score")
    if isinstance(others, (str, os.PathLike)):
        others = [others]
    images = [held_out, *others]
    common = dict(crop=crop, crops_per_image=crops, seed=seed, tile_size=tile_size)
    common.update(overlap=overlap, device=device, precision=precision, backend=backend)
    common.update(label=MODEL)

    def stage(message: str) -> None:
        if progress is not None:
            progress(message)

    stage(f"Gaussian noise, sigma {', '.join(map(str, RULE_SIGMAS))}")
    gaussian = evaluate(model, images, RULE_SIGMAS, names, **common)
    stage(f"Poisson-Gaussian noise, std {POISSON_GAUSSIAN_LEVEL} at mid-grey")
    level = [POISSON_GAUSSIAN_LEVEL]
    pg = evaluate(model, images, level, names, noise="poisson-gaussian", **common)
    stage("no harm: clean crops in")
    found = tissue_crops(images, crop, crops, seed)
    values = no_harm_psnr(
        model,
        [c for *_, c in found],
        tile_size=tile_size,
        overlap=overlap,
        device=device,
        precision=precision,
        backend=backend,
    )
    no_harm: dict[str, list[float]] = {}
    for (_, source, *_), value in zip(found, values, strict=True):
        no_harm.setdefault(source, []).append(value)

    held_out_name = found[0][1]
    checks = _denoising_checks(gaussian, held_out_name) + [
        _no_harm_check(source, v) for source, v in no_harm.items()
    ]
    settings = {
        "weights": _weights_record(weights),
        "held_out": held_out_name,
        "images": list(no_harm),
        "crops": crops,
        "crop": crop,
        "seed": seed,
        "tile_size": tile_size,
        "overlap": overlap,
        "device": gaussian.settings["device"],
        "precision": gaussian.settings["precision"],
        "backend": gaussian.settings["backend"],
        "baselines": names,
    }
    return ShipCheck(gaussian, pg, no_harm, checks, settings)


def _check_held_out(meta: dict[str, Any], weights: Any, held_out: Any) -> None:
    """Refuse weights whose training record (its chunks' too) names the held-out image."""
    if not isinstance(held_out, (str, os.PathLike)):
        return
    from .lineage import LINEAGE_KEY

    trained = set(meta.get("train_images") or [])
    trained |= set(meta.get(LINEAGE_KEY, {}).get("total", {}).get("train_images", []))
    name = Path(held_out).name
    if name in trained:
        raise ValueError(
            f"{Path(weights).name} was trained on {name}: it is not held out, and the rule "
            "needs a source the weights never saw"
        )


def _no_harm_check(source: str, values: list[float]) -> Check:
    worst = min(values)
    name = f"no harm, {source} (min of {len(values)} crops)"
    return Check(name, worst, NO_HARM_DB, worst >= NO_HARM_DB)


def _default_baselines() -> list[str]:
    return [*RULE_BASELINES, *(["cbm3d"] if "cbm3d" in available_baselines() else [])]


def _denoising_checks(report: EvaluationReport, source: str) -> list[Check]:
    """Per rule sigma: the model's mean PSNR on ``source`` above the best rule baseline's."""
    means = {
        (m["sigma"], m["method"]): m["psnr"] for m in report.per_source() if m["source"] == source
    }
    checks = []
    for sigma in RULE_SIGMAS:
        best, name = max((means[(float(sigma), b)], b) for b in RULE_BASELINES)
        model = means[(float(sigma), MODEL)]
        label = f"{source}, sigma {sigma}: model above the best of TV, wavelet, NLM ({name})"
        checks.append(Check(label, model, best, model > best))
    return checks
