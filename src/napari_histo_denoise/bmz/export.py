"""Export trained weights as a bioimage.io model package (a ``.zip``).

A package (format 0.5 of the bioimage.io model specification, written with
``bioimageio.spec``) holds the basic or deep model three ways (:data:`WEIGHT_FORMATS`): the
PyTorch state dict with this package's architecture (``napari_histo_denoise.models``),
TorchScript and ONNX; the description of its input and output (:mod:`.description`); a test
input (a noisy crop of the bundled CMU-1 slide) and the output this package's engine makes
of it; a cover (noisy | denoised | clean); the model card (:mod:`.card`).
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Cancelled, Progress, cancel_check, drain
from ..files import atomic_output, check_target
from ..settings import TILE_MULTIPLE
from .card import model_card
from .contract import MIN_TILE, ONNX_OPSET, TEST_SEED, TEST_SIGMA, TEST_SIZE, default_name
from .description import package_description
from .spec_calls import require, spec_call

#: The weight formats a package can hold, in the order they are written.
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
#: Steps of :func:`iter_export_bmz`.
STEPS = 5


def export_bmz(
    weights: str | os.PathLike,
    path: str | os.PathLike,
    *,
    progress: Callable[[Progress], object] | None = None,
    **options: Any,
) -> Path:
    """Write a bioimage.io model package (a ``.zip``) of trained weights.

    Parameters
    ----------
    weights : str or os.PathLike
        A weights file of the basic or deep model (safetensors, PyTorch, or a package).
    path : str or os.PathLike
        The package to write (``.zip``); written under a partial name and renamed when
        complete, so a failed or cancelled export leaves nothing behind.
    progress : callable, optional
        Called with a :class:`~napari_histo_denoise.events.Progress` (unit ``"steps"``)
        after each step.
    **options
        Keyword arguments of :func:`iter_export_bmz`:

    name : str, optional
        The model's name in the package; default from the architecture.
    authors : sequence of str
        Author names.
    formats : sequence of str
        Weight formats to include, from :data:`WEIGHT_FORMATS`; ``pytorch_state_dict``
        always (the others are converted from it).
    test_size : int
        Side of the test input, a multiple of 16 of at least :data:`MIN_TILE`, small enough
        for a crop of the bundled slide (at most 464).
    overwrite : bool
        Replace an existing ``path``.
    cancel : threading.Event or callable, optional
        Checked between steps; when set, the export stops with
        :class:`~napari_histo_denoise.events.Cancelled`.

    Returns
    -------
    pathlib.Path
        The written package.

    Raises
    ------
    WeightsError
        If ``weights`` is not a weights file of the two models.
    ValueError
        For an unknown weight format or a bad test size (before any work).
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    return drain(iter_export_bmz(weights, path, **options), progress)


def iter_export_bmz(
    weights: str | os.PathLike,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    authors: Sequence[str] = ("napari-histo-denoise developers",),
    formats: Sequence[str] = WEIGHT_FORMATS,
    test_size: int = TEST_SIZE,
    overwrite: bool = False,
    cancel: Any = None,
) -> Generator[Progress, None, Path]:
    """:func:`export_bmz` as a generator of :class:`Progress`, returning the path.

    Takes the arguments of :func:`export_bmz` but ``progress``; they are checked when this
    function is called, before the generator starts.
    """
    from ..checkpoint import load_model

    unknown = [f for f in formats if f not in WEIGHT_FORMATS]
    if unknown or "pytorch_state_dict" not in formats:
        raise ValueError(
            f"weight formats must include 'pytorch_state_dict' and come from "
            f"{', '.join(map(repr, WEIGHT_FORMATS))}; got {list(formats)}"
        )
    if test_size % TILE_MULTIPLE or test_size < MIN_TILE:
        raise ValueError(
            f"test_size must be a multiple of {TILE_MULTIPLE} of at least {MIN_TILE}, "
            f"got {test_size}"
        )
    target = Path(path).expanduser()
    check_target(target, overwrite)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {str(target.parent)!r} does not exist")
    crop = _test_crop(test_size)
    require("bioimageio.spec", "export a bioimage.io package")
    model, meta = load_model(weights, "cpu")
    # A plain state dict's metadata has no count: the card would say "0 parameters".
    meta["parameters"] = sum(p.numel() for p in model.parameters())
    return _export(model, meta, target, name, authors, formats, crop, cancel)


def _export(model, meta, target, name, authors, formats, crop, cancel):
    from bioimageio.spec import save_bioimageio_package

    from ..figures import image_grid, write_image
    from ..metrics import psnr

    cancelled = cancel_check(cancel)
    started = time.monotonic()
    done = 0

    def step() -> Progress:
        nonlocal done
        if cancelled():
            raise Cancelled("export cancelled")
        done += 1
        return Progress(done, STEPS, time.monotonic() - started, "steps")

    architecture = meta["architecture"]
    with tempfile.TemporaryDirectory(prefix="histo-denoise-bmz-") as tmp:
        folder = Path(tmp)
        files = _weight_files(model, folder, formats)
        yield step()
        clean, noisy = crop
        denoised = _test_output(model, noisy)
        scores = (psnr(clean, noisy), psnr(clean, denoised))
        yield step()
        for stem, image in (("input", noisy), ("output", denoised)):
            _write_tensor(folder / f"test_{stem}.npy", image)
            write_image(folder / f"sample_{stem}.png", image)
        labels = [f"noisy {scores[0]:.2f} dB", f"denoised {scores[1]:.2f} dB", "clean"]
        write_image(
            folder / "cover.jpg", image_grid([[noisy, denoised, clean]], column_labels=labels)
        )
        (folder / "README.md").write_text(
            model_card(meta, noisy.shape[0], scores), encoding="utf-8", newline="\n"
        )
        yield step()
        descr = spec_call(  # the description reads each file to record its SHA-256
            package_description, folder, files, meta, name or default_name(architecture), authors
        )
        yield step()
        with atomic_output(target) as partial:
            spec_call(save_bioimageio_package, descr, output_path=partial)
            yield step()
    return target


def _weight_files(model, folder: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Write the model in each format; the traced ones from an example of the smallest tile."""
    import torch

    files = {"pytorch_state_dict": folder / "weights.pt"}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, files["pytorch_state_dict"])
    example = torch.rand(1, 3, MIN_TILE, MIN_TILE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        # The input checks in forward() are Python conditionals: tracing drops them (the
        # exported graphs take any size) and warns that it does.
        warnings.simplefilter("ignore")
        if "torchscript" in formats:
            files["torchscript"] = folder / "weights.torchscript.pt"
            torch.jit.trace(model, example).save(str(files["torchscript"]))
        if "onnx" in formats:
            files["onnx"] = folder / "weights.onnx"
            dynamic = {0: "batch", 2: "y", 3: "x"}
            torch.onnx.export(
                model,
                (example,),
                str(files["onnx"]),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": dynamic, "output": dynamic},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    return files


def _test_crop(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The clean and noisy crop of the bundled slide that make the test input.

    Raises
    ------
    ValueError
        If a crop of ``size`` does not fit the slide.
    """
    from ..samples import noisy_crop

    try:
        clean, noisy, _ = noisy_crop(size, TEST_SIGMA, TEST_SEED)
    except ValueError as exc:
        raise ValueError(f"test_size {size} is too large for the bundled slide: {exc}") from None
    return clean, noisy


def _test_output(model, noisy: np.ndarray) -> np.ndarray:
    """The engine's output for the test input.

    The engine runs it as one tile (fp32, torch), which is what a consumer of the package
    computes from the whole test input.
    """
    from ..engine import denoise

    return denoise(
        noisy,
        model,
        tile_size=noisy.shape[0],
        overlap=0,
        device="cpu",
        precision="fp32",
        backend="torch",
    ).compute()


def _write_tensor(path: Path, image: np.ndarray) -> None:
    """Save an H x W x 3 image as a 1 x 3 x H x W float32 array (the package's axes)."""
    np.save(path, np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))


__all__ = ["STEPS", "WEIGHT_FORMATS", "export_bmz", "iter_export_bmz"]
