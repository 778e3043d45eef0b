"""Synthetic noise models for supervised training and for evaluation.

A noise model is built from a short spec string by :func:`parse_noise`:

=============================  ====================================================================
spec                           noise (image floats in [0, 1]; result clipped to [0, 1])
=============================  ====================================================================
``gaussian:25``                additive Gaussian, sigma on the 0-255 scale (25 -> 25/255)
``gaussian:15-50``             the same with sigma drawn uniformly per image from [15, 50]
``gaussian:0-55``              a range may start at 0: sigma 0 leaves the image clean
``poisson:30``                 shot noise at peak 30: ``rng.poisson(x * 30) / 30``
``poisson-gaussian:25``        signal-dependent noise of variance ``a * x + b`` (half shot,
                               half read noise at mid-grey, std 25/255 there)
``speckle:0.1``                multiplicative: ``x + x * n``, ``n ~ N(0, var 0.1)``
``salt-pepper:0.05``           5% of the values set to 0 or 1 (half each), per channel
``mix``                        one of :data:`DEFAULT_MIX`'s components per image
``mix:gaussian:25+poisson:30`` one of the listed components per image, equally likely
=============================  ====================================================================

Every parameter accepts a range ``LOW-HIGH`` sampled uniformly per image.

Calling a model works on a NumPy image (H x W x C or H x W, or a N x H x W x C
batch) and on a torch tensor (C x H x W or an N x C x H x W batch) on any device.
The NumPy path uses :func:`skimage.util.random_noise` where it has the mode
(Gaussian with ``clip=True``, speckle, salt-and-pepper); Poisson uses
``rng.poisson(x * peak) / peak`` because ``random_noise(mode="poisson")`` scales
by the number of distinct values in the image, not by a fixed peak. The torch path
draws from the same distributions with torch's generators on the tensor's device,
so training never copies batches to the host; both paths are tested against the
same statistics. Random numbers of the two paths differ for the same seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from skimage.util import random_noise

if TYPE_CHECKING:
    import torch

#: Components of the plain ``"mix"`` spec.
DEFAULT_MIX = "gaussian:5-50+poisson:10-100+speckle:0.01-0.1+salt-pepper:0.005-0.05"

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_VALUE = re.compile(rf"^({_NUMBER})(?:-({_NUMBER}))?$")

Rng = np.random.Generator | int | None


@dataclass(frozen=True)
class NoiseModel:
    """Base of the noise models: apply noise to an image or a batch, per image.

    Attributes
    ----------
    spec : str
        The canonical spec string (``parse_noise(model.spec)`` rebuilds the model).
    """

    spec: str

    def __call__(self, image: Any, rng: Rng = None) -> Any:
        """Return a noisy copy of ``image`` (never modified in place).

        Parameters
        ----------
        image : numpy.ndarray or torch.Tensor
            Floats in [0, 1]. NumPy: H x W, H x W x C, or an N x H x W x C batch.
            Torch: C x H x W or an N x C x H x W batch, on any device.
        rng : numpy.random.Generator or int, optional
            Source of randomness (a seed or a generator). Parameters are drawn per
            image; the torch path seeds a generator on the tensor's device from it.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Same shape; NumPy results are float64 (as ``random_noise``), torch results
            keep the input dtype and device.
        """
        rng = np.random.default_rng(rng)
        if _is_tensor(image):
            return self._torch_batch(image, rng)
        image = np.asarray(image)
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(
                f"noise needs a float image in [0, 1], got dtype {image.dtype}; "
                "convert with skimage.util.img_as_float"
            )
        if image.size and (image.min() < 0 or image.max() > 1):
            raise ValueError(
                f"noise needs values in [0, 1], got [{image.min():.3g}, {image.max():.3g}]"
            )
        if image.ndim == 4:
            return np.stack([self._numpy_image(im, rng) for im in image])
        if image.ndim not in (2, 3):
            raise ValueError(
                f"expected H x W, H x W x C or N x H x W x C, got shape {image.shape}"
            )
        return self._numpy_image(image, rng)

    def _torch_batch(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch

        if not torch.is_floating_point(batch):
            raise ValueError(f"noise needs a float tensor in [0, 1], got dtype {batch.dtype}")
        if batch.ndim == 3:
            return self._torch_batch(batch[None], rng)[0]
        if batch.ndim != 4:
            raise ValueError(
                f"expected C x H x W or N x C x H x W, got shape {tuple(batch.shape)}"
            )
        gen = torch.Generator(device=batch.device)
        gen.manual_seed(int(rng.integers(2**62)))
        return self._torch(batch, rng, gen)

    def _numpy_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _torch(
        self, batch: torch.Tensor, rng: np.random.Generator, gen: torch.Generator
    ) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class _ParametricNoise(NoiseModel):
    """A noise kind with one parameter, fixed (``low == high``) or drawn per image."""

    low: float
    high: float

    kind: ClassVar[str]
    bounds: ClassVar[tuple[float, float]]  # allowed (exclusive low, inclusive high)
    meaning: ClassVar[str]
    zero_is_clean: ClassVar[bool] = False  # a range may start at the low bound (no noise)

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.low == self.high:
            return np.full(n, self.low)
        return rng.uniform(self.low, self.high, size=n)

    def _numpy_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._numpy(image, float(self._draw(1, rng)[0]), rng)

    def _torch(
        self, batch: torch.Tensor, rng: np.random.Generator, gen: torch.Generator
    ) -> torch.Tensor:
        import torch

        param = torch.as_tensor(self._draw(len(batch), rng), dtype=batch.dtype)
        param = param.to(batch.device).view(-1, 1, 1, 1)
        return self._tensor(batch, param, gen).clamp_(0, 1)

    def _numpy(self, image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _tensor(
        self, batch: torch.Tensor, param: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        raise NotImplementedError


def _randn(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    import torch

    return torch.randn(batch.shape, generator=gen, device=batch.device, dtype=batch.dtype)


def _rand(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    import torch

    return torch.rand(batch.shape, generator=gen, device=batch.device, dtype=batch.dtype)


@dataclass(frozen=True)
class GaussianNoise(_ParametricNoise):
    """Additive Gaussian noise; ``low``/``high`` are sigma on the 0-255 scale."""

    kind: ClassVar[str] = "gaussian"
    bounds: ClassVar[tuple[float, float]] = (0, 255)
    meaning: ClassVar[str] = "sigma on the 0-255 scale"
    zero_is_clean: ClassVar[bool] = True

    def _numpy(self, image, value, rng):
        return add_gaussian_noise(image, value, rng) if value > 0 else image.astype(np.float64)

    def _tensor(self, batch, param, gen):
        return batch + _randn(batch, gen) * (param / 255)


@dataclass(frozen=True)
class PoissonGaussianNoise(_ParametricNoise):
    """Signal-dependent noise, Gaussian-approximated: variance ``a * x + b``.

    The parameter is the noise std at mid-grey (x = 0.5) on the 0-255 scale; half its
    variance there is shot noise (``a * 0.5``) and half read noise (``b``), the usual
    model of camera noise (Foi et al., 2008). Dark stain is thus less noisy than glass.
    """

    kind: ClassVar[str] = "poisson-gaussian"
    bounds: ClassVar[tuple[float, float]] = (0, 255)
    meaning: ClassVar[str] = "noise std at mid-grey on the 0-255 scale"
    zero_is_clean: ClassVar[bool] = True

    def _numpy(self, image, value, rng):
        variance = (value / 255) ** 2 * (image + 0.5)  # a = b / 0.5 = (value / 255)^2
        return np.clip(image + rng.standard_normal(image.shape) * np.sqrt(variance), 0, 1)

    def _tensor(self, batch, param, gen):
        return batch + _randn(batch, gen) * ((param / 255) ** 2 * (batch + 0.5)).sqrt()


@dataclass(frozen=True)
class PoissonNoise(_ParametricNoise):
    """Shot noise: ``poisson(x * peak) / peak`` (a lower peak is noisier)."""

    kind: ClassVar[str] = "poisson"
    bounds: ClassVar[tuple[float, float]] = (0, float("inf"))
    meaning: ClassVar[str] = "peak photon count of a white pixel"

    def _numpy(self, image, value, rng):
        return np.clip(rng.poisson(image * value) / value, 0, 1)

    def _tensor(self, batch, param, gen):
        import torch

        # torch.poisson has no low-precision kernels: draw in float32.
        rate = (batch * param).float()
        return (torch.poisson(rate, generator=gen) / param.float()).to(batch.dtype)


@dataclass(frozen=True)
class SpeckleNoise(_ParametricNoise):
    """Multiplicative noise ``x + x * n`` with ``n ~ N(0, variance)``."""

    kind: ClassVar[str] = "speckle"
    bounds: ClassVar[tuple[float, float]] = (0, 10)
    meaning: ClassVar[str] = "variance of the multiplicative factor"

    def _numpy(self, image, value, rng):
        return random_noise(image, mode="speckle", var=value, clip=True, rng=rng)

    def _tensor(self, batch, param, gen):
        return batch + batch * _randn(batch, gen) * param.sqrt()


@dataclass(frozen=True)
class SaltPepperNoise(_ParametricNoise):
    """Impulse noise: a fraction ``amount`` of the values set to 0 or 1 (equally likely)."""

    kind: ClassVar[str] = "salt-pepper"
    bounds: ClassVar[tuple[float, float]] = (0, 1)
    meaning: ClassVar[str] = "fraction of values replaced"

    def _numpy(self, image, value, rng):
        return random_noise(image, mode="s&p", amount=value, clip=True, rng=rng)

    def _tensor(self, batch, param, gen):
        import torch

        flipped = _rand(batch, gen) < param
        salt = (_rand(batch, gen) < 0.5).to(batch.dtype)
        return torch.where(flipped, salt, batch)


@dataclass(frozen=True)
class MixtureNoise(NoiseModel):
    """One component per image, each equally likely."""

    components: tuple[_ParametricNoise, ...] = ()

    def _numpy_image(self, image, rng):
        return self.components[rng.integers(len(self.components))]._numpy_image(image, rng)

    def _torch(self, batch, rng, gen):
        import torch

        choice = torch.as_tensor(rng.integers(len(self.components), size=len(batch)))
        out = torch.empty_like(batch)
        for k, component in enumerate(self.components):
            idx = (choice == k).nonzero().flatten().to(batch.device)
            if len(idx):
                out[idx] = component._torch(batch[idx], rng, gen)
        return out


#: Spec name -> class (``s&p`` is accepted as scikit-image's name for salt-and-pepper).
NOISE_KINDS: dict[str, type[_ParametricNoise]] = {
    cls.kind: cls
    for cls in (GaussianNoise, PoissonNoise, PoissonGaussianNoise, SpeckleNoise, SaltPepperNoise)
}
_ALIASES = {"s&p": "salt-pepper"}


def parse_noise(spec: str | NoiseModel) -> NoiseModel:
    """Build a noise model from its spec string (see the module docstring).

    Parameters
    ----------
    spec : str or NoiseModel
        E.g. ``"gaussian:25"``, ``"gaussian:15-50"``, ``"poisson:30"``, ``"speckle:0.1"``,
        ``"salt-pepper:0.05"``, ``"mix"`` or ``"mix:gaussian:25+poisson:30"``. A
        NoiseModel is returned unchanged.

    Returns
    -------
    NoiseModel
        Callable as ``model(image, rng)``; ``model.spec`` is the canonical spec.

    Raises
    ------
    ValueError
        If the spec is malformed or a value is out of range; the message lists the valid specs.
    """
    if isinstance(spec, NoiseModel):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"a noise spec must be a string, got {type(spec).__name__}. {_HELP}")
    text = spec.strip().lower()
    if text == "mix" or text.startswith("mix:"):
        parts = DEFAULT_MIX if text == "mix" else text[4:]
        components = tuple(_parse_component(p, spec) for p in parts.split("+"))
        canonical = "mix:" + "+".join(c.spec for c in components)
        return MixtureNoise(spec=canonical, components=components)
    return _parse_component(text, spec)


def add_gaussian_noise(image: np.ndarray, sigma: float, seed: Rng = None) -> np.ndarray:
    """Add Gaussian noise by the project's evaluation protocol.

    ``skimage.util.random_noise(image, mode="gaussian", var=(sigma / 255) ** 2,
    clip=True, rng=seed)`` (the protocol of ``docs/quality.md``).

    Parameters
    ----------
    image : numpy.ndarray
        Floats in [0, 1] (H x W or H x W x C).
    sigma : float
        Standard deviation on the 0-255 scale.
    seed : int or numpy.random.Generator, optional
        Fixed seed for reproducible noisy copies.

    Returns
    -------
    numpy.ndarray
        The noisy image, float64, clipped to [0, 1].
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (on the 0-255 scale), got {sigma}")
    return random_noise(image, mode="gaussian", var=(sigma / 255) ** 2, clip=True, rng=seed)


def _parse_component(text: str, original: str) -> _ParametricNoise:
    name, sep, value = text.partition(":")
    name = _ALIASES.get(name.strip(), name.strip())
    if name not in NOISE_KINDS or not sep:
        raise ValueError(f"invalid noise spec {original!r}. {_HELP}")
    cls = NOISE_KINDS[name]
    match = _VALUE.match(value.strip())
    if match is None:
        raise ValueError(
            f"invalid value {value!r} in noise spec {original!r}: expected a positive number or "
            f"a range LOW-HIGH ({cls.meaning}). {_HELP}"
        )
    low = float(match.group(1))
    high = float(match.group(2) or low)
    lo_bound, hi_bound = cls.bounds
    clean_low = cls.zero_is_clean and low == lo_bound < high
    if not ((lo_bound < low or clean_low) and low <= high <= hi_bound):
        zero = f" (a range may start at {lo_bound:g})" if cls.zero_is_clean else ""
        raise ValueError(
            f"invalid value {value!r} in noise spec {original!r}: {name} takes {cls.meaning}, "
            f"with {lo_bound:g} < LOW <= HIGH <= {hi_bound:g}{zero}"
        )
    canonical = f"{name}:{low:g}" + (f"-{high:g}" if high != low else "")
    return cls(spec=canonical, low=low, high=high)


def _is_tensor(obj: Any) -> bool:
    # Avoids importing torch for NumPy-only callers.
    return type(obj).__module__.startswith("torch") and hasattr(obj, "device")


_HELP = (
    "Valid specs: " + ", ".join(f"'{k}:VALUE'" for k in NOISE_KINDS) + " (VALUE a number or "
    "LOW-HIGH; gaussian sigma on the 0-255 scale, poisson peak, poisson-gaussian std at "
    "mid-grey, speckle variance, salt-pepper amount), 'mix', or 'mix:' followed by components "
    "joined with '+', e.g. "
    "'mix:gaussian:25+poisson:30'."
)

__all__ = [
    "DEFAULT_MIX",
    "NOISE_KINDS",
    "GaussianNoise",
    "MixtureNoise",
    "NoiseModel",
    "PoissonGaussianNoise",
    "PoissonNoise",
    "SaltPepperNoise",
    "SpeckleNoise",
    "add_gaussian_noise",
    "parse_noise",
]
