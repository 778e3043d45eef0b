"""Measured denoising quality: a model against the noisy input and classical denoisers.

Protocol (``docs/quality.md``): Gaussian noise by
:func:`~napari_histo_denoise.noise.add_gaussian_noise` (or signal-dependent
Poisson-Gaussian noise of that std at mid-grey) at each sigma with a fixed
seed per crop (derived from ``seed``, the image name, the crop index and sigma, so
the same crop gets the same noise in every run and for every method), PSNR and SSIM
from scikit-image on floats in [0, 1]. The model runs through the tiled engine,
exactly as users run it.

Baselines (scikit-image, blind: the noise level is estimated from the noisy image
with :func:`skimage.restoration.estimate_sigma`, as a user without ground truth would):

* ``tv``: :func:`~skimage.restoration.denoise_tv_chambolle`, weight = estimated sigma;
* ``wavelet``: :func:`~skimage.restoration.denoise_wavelet`, BayesShrink, soft
  thresholds, in YCbCr, ``rescale_sigma=True``;
* ``nlm``: :func:`~skimage.restoration.denoise_nl_means`, fast mode, 5 x 5 patches,
  distance 6, ``h = 0.8 * sigma``;
* ``cbm3d``: ``bm3d.bm3d_rgb`` with the true sigma (an oracle), only when the optional
  ``bm3d`` package is installed (``pip install napari-histo-denoise[benchmark]``; its
  licence is non-commercial, so it is never a runtime dependency).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .metrics import psnr, ssim
from .noise import add_gaussian_noise, parse_noise

#: Classical baselines in report order; ``cbm3d`` needs the optional ``bm3d`` package.
BASELINES = ("cbm3d", "nlm", "tv", "wavelet")
#: Label of the noisy input in reports.
NOISY = "noisy"
#: Label of the overall mean in per-source tables.
ALL_SOURCES = "all"
#: Noise kinds :func:`evaluate` adds; the sigma of ``poisson-gaussian`` is its std at mid-grey.
NOISE_KINDS = {
    "gaussian": "skimage.util.random_noise gaussian, clip=True",
    "poisson-gaussian": "Poisson-Gaussian (variance a * x + b, half shot, half read noise; "
    "sigma is the std at mid-grey), clipped",
}


@dataclass(frozen=True)
class EvaluationRow:
    """Scores of one method on one noisy crop."""

    image: str  # the crop, e.g. "skimage_ihc.png#0"
    source: str  # the image it was cut from
    sigma: float
    method: str
    psnr: float
    ssim: float
    seconds: float  # wall time of the method on this crop (0 for the noisy input)


@dataclass
class CropImages:
    """The pictures of one scored crop: the clean crop and every output, as uint8 RGB."""

    source: str
    clean: np.ndarray
    outputs: dict[tuple[float, str], np.ndarray] = field(default_factory=dict)  # (sigma, method)


@dataclass
class EvaluationReport:
    """Per-crop rows and their per-source means, printable as Markdown.

    Attributes
    ----------
    rows : list of EvaluationRow
        One row per crop, sigma and method.
    methods : list of str
        Methods in column order (noisy input first).
    settings : dict
        How the figures were made (crop, seed, device, ...), for the record.
    images : dict of str to CropImages
        With ``keep_images``: the first crop of each source, by crop name, for
        :mod:`napari_histo_denoise.quality_figures`.
    """

    rows: list[EvaluationRow]
    methods: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    images: dict[str, CropImages] = field(default_factory=dict)

    def per_source(self) -> list[dict[str, Any]]:
        """Mean PSNR, SSIM and seconds per (source, sigma, method), sources then ``"all"``."""
        groups: dict[tuple[str, float, str], list[EvaluationRow]] = {}
        for row in self.rows:
            for source in (row.source, ALL_SOURCES):
                groups.setdefault((source, row.sigma, row.method), []).append(row)
        return [
            {
                "source": source,
                "sigma": sigma,
                "method": method,
                "psnr": float(np.mean([r.psnr for r in rows])),
                "ssim": float(np.mean([r.ssim for r in rows])),
                "seconds": float(np.mean([r.seconds for r in rows])),
                "crops": len(rows),
            }
            for (source, sigma, method), rows in groups.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict: settings, methods, rows and per-source means."""
        return {
            "settings": self.settings,
            "methods": self.methods,
            "rows": [asdict(r) for r in self.rows],
            "per_source": self.per_source(),
        }

    def to_markdown(self) -> str:
        """One table per sigma: a line per source (and their mean), a column per method.

        Cells are ``PSNR dB / SSIM``; the best PSNR of a line is bold. A last line gives
        the mean seconds per crop of each method.
        """
        means = {(m["source"], m["sigma"], m["method"]): m for m in self.per_source()}
        sources = [*dict.fromkeys(r.source for r in self.rows), ALL_SOURCES]
        crop = self.settings.get("crop")
        out = [
            f"Noise ({self.settings.get('noise', NOISE_KINDS['gaussian'])}) with fixed "
            f"per-crop seeds (seed {self.settings.get('seed')}) on "
            + (f"{crop} x {crop} tissue crops" if crop else "whole images")
            + "; PSNR/SSIM from skimage.metrics, data_range 1.0. Bold: best PSNR of the line.",
            "",
        ]
        weights = self.settings.get("weights")
        if weights:
            out[-1:] = [f"Weights: `{weights['path']}` (SHA-256 `{weights['sha256']}`).", ""]
        for sigma in dict.fromkeys(r.sigma for r in self.rows):
            out += [
                f"### sigma {sigma:g} (PSNR dB / SSIM)",
                "",
                "| source | crops | " + " | ".join(self.methods) + " |",
                "|---|---:|" + "---:|" * len(self.methods),
            ]
            for source in sources:
                cells = [means[(source, sigma, m)] for m in self.methods]
                best = max(c["psnr"] for c in cells)
                text = [
                    (f"**{c['psnr']:.2f}**" if c["psnr"] == best else f"{c['psnr']:.2f}")
                    + f" / {c['ssim']:.3f}"
                    for c in cells
                ]
                label = "**mean**" if source == ALL_SOURCES else source
                n = means[(source, sigma, NOISY)]["crops"]
                out.append(f"| {label} | {n} | " + " | ".join(text) + " |")
            seconds = [means[(ALL_SOURCES, sigma, m)]["seconds"] for m in self.methods]
            out.append("| seconds per crop | | " + " | ".join(f"{s:.2f}" for s in seconds) + " |")
            out.append("")
        return "\n".join(out).rstrip() + "\n"


def evaluate(
    weights_or_model: Any,
    images: Any,
    sigmas: Sequence[float] = (15, 25, 50),
    baselines: bool | Sequence[str] = True,
    *,
    crop: int | None = 256,
    crops_per_image: int = 1,
    seed: int = 0,
    noise: str = "gaussian",
    tile_size: int = 256,
    overlap: int = 32,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "auto",
    label: str | None = None,
    progress: Callable[[int, int], object] | None = None,
    keep_images: bool = False,
) -> EvaluationReport:
    """Score a model and the classical baselines on noisy copies of clean images.

    Parameters
    ----------
    weights_or_model : path, torch.nn.Module, state dict or None
        Weights file (see :func:`~napari_histo_denoise.checkpoint.load_model`), a model,
        a state dict of the basic or deep model, or ``None`` to score the baselines only.
    images : array, path, folder or a sequence of them
        Clean images (PNG, JPEG, TIFF, SVS level 0, ...), never seen in training.
    sigmas : sequence of float
        Noise levels: standard deviations on the 0-255 scale.
    baselines : bool or sequence of str
        ``True`` for every available baseline (:data:`BASELINES`; ``cbm3d`` only when
        ``bm3d`` is installed), ``False`` for none, or a selection of names.
    crop : int or None
        Side of the square crops scored (tissue preferred, a multiple of 16), or
        ``None`` for whole images.
    crops_per_image : int
        Crops cut from each image (ignored when ``crop`` is None).
    seed : int
        Base of the per-crop noise seeds and of the crop positions.
    noise : {"gaussian", "poisson-gaussian"}
        The noise added (:data:`NOISE_KINDS`); for ``"poisson-gaussian"`` each sigma is the
        noise std at mid-grey, and CBM3D's oracle is given that std.
    tile_size, overlap, device, precision, backend
        Passed to :func:`napari_histo_denoise.engine.denoise` for the model.
    label : str, optional
        The model's method name in the report (default: its architecture).
    progress : callable, optional
        Called as ``progress(done, total)`` after each (crop, sigma) pair.
    keep_images : bool
        Keep the clean crop and every output of each source's first crop in
        ``report.images`` (for mosaics).

    Returns
    -------
    EvaluationReport
        Per-crop rows (``.rows``), per-source means (``.per_source()``), ``.to_markdown()``.

    Raises
    ------
    ValueError
        For bad sigmas, noise kinds, crop sizes or baseline names, or images that cannot
        be read.
    """
    sigmas = _check_sigmas(sigmas)
    add_noise = _noise_adder(noise)
    names = _choose_baselines(baselines)
    model, architecture = _resolve_model(weights_or_model)
    label = label or architecture
    crops = tissue_crops(images, crop, crops_per_image, seed)
    methods = [NOISY] + ([label] if model is not None else []) + names
    run_model = None
    if model is not None:
        run_model = _model_runner(model, tile_size, overlap, device, precision, backend)

    rows, total, done = [], len(crops) * len(sigmas), 0
    images: dict[str, CropImages] = {}
    for name, source, index, clean in crops:
        kept = None
        if keep_images and index == 0:
            kept = images[name] = CropImages(source, _to_uint8(clean))
        for sigma in sigmas:
            noisy = add_noise(clean, sigma, _noise_seed(seed, source, index, sigma))
            results = {NOISY: (noisy, 0.0)}
            if run_model is not None:
                results[label] = _timed(run_model, noisy)
            for method in names:
                results[method] = _timed(_BASELINE_FUNCS[method], noisy, sigma)
            rows += [
                EvaluationRow(name, source, float(sigma), m, psnr(clean, out), ssim(clean, out), t)
                for m, (out, t) in results.items()
            ]
            if kept is not None:
                kept.outputs.update(
                    {(float(sigma), m): _to_uint8(out) for m, (out, _) in results.items()}
                )
            done += 1
            if progress is not None:
                progress(done, total)
    from .devices import resolve_run
    from .models import is_package_model

    ran = resolve_run(device, precision, backend, own_model=is_package_model(model))
    settings = {
        "model": label if model is not None else None,
        "weights": _weights_record(weights_or_model),
        "sigmas": list(sigmas),
        "crop": crop,
        "crops_per_image": crops_per_image if crop else 1,
        "seed": seed,
        "tile_size": tile_size,
        "overlap": overlap,
        **ran,  # what "auto" meant here
        "noise": NOISE_KINDS[noise],
    }
    return EvaluationReport(rows, methods, settings, images)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def available_baselines() -> list[str]:
    """Baselines that can run here (``cbm3d`` only with the optional ``bm3d`` package)."""
    return [b for b in BASELINES if b != "cbm3d" or _has_bm3d()]


def _has_bm3d() -> bool:
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def _choose_baselines(baselines: bool | Sequence[str]) -> list[str]:
    if baselines is True:
        return available_baselines()
    if baselines is False or baselines is None:
        return []
    if isinstance(baselines, str):
        baselines = [baselines]
    chosen = list(dict.fromkeys(baselines))
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise ValueError(
            f"unknown baseline(s) {', '.join(map(repr, unknown))}; valid: {', '.join(BASELINES)}"
        )
    if "cbm3d" in chosen and not _has_bm3d():
        raise ValueError(
            "the cbm3d baseline needs the optional 'bm3d' package: "
            "pip install 'napari-histo-denoise[benchmark]' (non-commercial licence)"
        )
    return [b for b in BASELINES if b in chosen]


def _check_sigmas(sigmas: Sequence[float]) -> list[float]:
    if isinstance(sigmas, int | float):
        sigmas = [sigmas]
    sigmas = list(sigmas)
    if not sigmas or not all(isinstance(s, int | float) and 0 < s <= 255 for s in sigmas):
        raise ValueError(f"sigmas must be numbers in (0, 255] on the 0-255 scale, got {sigmas}")
    return sigmas


def _resolve_model(weights_or_model: Any) -> tuple[Any, str]:
    """Return the model (or None) and its column label."""
    if weights_or_model is None:
        return None, "model"
    from torch import nn

    from .checkpoint import load_model, model_from_state_dict

    if isinstance(weights_or_model, nn.Module):
        model = weights_or_model
    elif isinstance(weights_or_model, str | os.PathLike):
        model, _ = load_model(weights_or_model)
    elif isinstance(weights_or_model, Mapping):
        model = model_from_state_dict(weights_or_model)
    else:
        raise ValueError(
            "weights_or_model must be a weights file, a torch.nn.Module, a state dict or None; "
            f"got {type(weights_or_model).__name__}"
        )
    label = getattr(model, "architecture", None) or "model"
    return model, label


def _weights_record(weights_or_model: Any) -> dict[str, str] | None:
    """Path and SHA-256 of a weights file, so a report names exactly what it measured."""
    if not isinstance(weights_or_model, str | os.PathLike):
        return None
    from .checkpoint import file_sha256

    return {"path": str(weights_or_model), "sha256": file_sha256(weights_or_model)}


def _model_runner(
    model: Any, tile_size: int, overlap: int, device: str, precision: str, backend: str = "auto"
) -> Callable[[np.ndarray], np.ndarray]:
    from .engine import denoise

    options = dict(tile_size=tile_size, overlap=overlap, device=device, precision=precision)

    def run(noisy: np.ndarray) -> np.ndarray:
        out = denoise(noisy.astype(np.float32), model, backend=backend, **options)
        return np.asarray(out.compute(), dtype=np.float64)

    return run


def tissue_crops(
    images: Any, crop: int | None, per_image: int, seed: int
) -> list[tuple[str, str, int, np.ndarray]]:
    """``(crop name, source name, crop index, float RGB crop)`` for every crop of every image.

    The crops :func:`evaluate` scores: ``per_image`` tissue-preferring squares of side
    ``crop`` per image (whole images when ``crop`` is None), the same for the same ``seed``.
    """
    from .patches import PatchSampler, to_float_rgb
    from .training import load_images

    if crop is not None and (not isinstance(crop, int) or crop < 16 or crop % 16):
        raise ValueError(f"crop must be None or a multiple of 16 pixels (>= 16), got {crop!r}")
    if not isinstance(per_image, int) or per_image < 1:
        raise ValueError(f"crops_per_image must be a positive integer, got {per_image!r}")
    arrays, names = load_images(images)
    if crop is None:
        return [(n, n, 0, to_float_rgb(a, name=n)) for a, n in zip(arrays, names, strict=True)]
    out = []
    for array, name in zip(arrays, names, strict=True):
        sampler = PatchSampler([array], [name], 16)  # 16: crops fit images smaller than `crop`
        crop_seed = seed * 2**32 + zlib.crc32(name.encode())
        for index, clean in enumerate(sampler.fixed_crops(crop, per_image, crop_seed, 16)):
            out.append((f"{name}#{index}", name, index, clean.astype(np.float64)))
    return out


def _noise_adder(noise: str) -> Callable[[np.ndarray, float, np.random.Generator], np.ndarray]:
    """``add(clean, sigma, rng)`` for a noise kind of :data:`NOISE_KINDS`."""
    if noise == "gaussian":
        return add_gaussian_noise
    if noise == "poisson-gaussian":
        return lambda clean, sigma, rng: parse_noise(f"{noise}:{sigma:g}")(clean, rng)
    raise ValueError(f"noise must be one of {sorted(NOISE_KINDS)}, got {noise!r}")


def _noise_seed(seed: int, name: str, index: int, sigma: float) -> np.random.Generator:
    # zlib.crc32, not hash(): stable across processes.
    key = [seed, zlib.crc32(name.encode()), index, round(float(sigma) * 1000)]
    return np.random.default_rng(key)


def _timed(func: Callable[..., np.ndarray], *args: Any) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = func(*args)
    return np.clip(out, 0, 1), time.perf_counter() - start


def _estimated_sigma(noisy: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma

    return float(np.mean(estimate_sigma(noisy, channel_axis=-1)))


def _tv(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(noisy, weight=_estimated_sigma(noisy), channel_axis=-1)


def _wavelet(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(noisy, channel_axis=-1, convert2ycbcr=True, rescale_sigma=True)


def _nlm(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    est = _estimated_sigma(noisy)
    return denoise_nl_means(
        noisy,
        h=0.8 * est,
        sigma=est,
        fast_mode=True,
        patch_size=5,
        patch_distance=6,
        channel_axis=-1,
    )


def _cbm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return bm3d.bm3d_rgb(noisy, sigma_psd=sigma / 255)


_BASELINE_FUNCS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "cbm3d": _cbm3d,
    "nlm": _nlm,
    "tv": _tv,
    "wavelet": _wavelet,
}
