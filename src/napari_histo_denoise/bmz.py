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
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .events import Cancelled, Progress, cancel_check, drain
from .files import atomic_output, check_target
from .settings import TILE_MULTIPLE, DenoiseSettings

#: Where each architecture's class lives: what a package's ``pytorch_state_dict`` names.
ARCHITECTURES = {
    "basic": ("napari_histo_denoise.models.basic", "HistoAutoencoder"),
    "deep": ("napari_histo_denoise.models.deep", "DeepHistoAutoencoder"),
}
#: The weight formats a package can hold, in the order they are written.
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
#: The engine's default overlap of neighbouring tiles.
ENGINE_OVERLAP = DenoiseSettings.overlap
#: Output pixels per side a crop-and-stitch consumer drops from each tile: half the
#: engine's overlap, so that stitched tiles meet where the engine's blending windows cross.
HALO = ENGINE_OVERLAP // 2
#: Smallest tile the package accepts: the engine's smallest tile at its overlap.
MIN_TILE = 2 * ENGINE_OVERLAP + TILE_MULTIPLE
#: Side of the test input of an exported package.
TEST_SIZE = 256
#: Gaussian noise (0-255 scale) and seed of the test input.
TEST_SIGMA, TEST_SEED = 25.0, 0
#: ONNX operator set of the exported graph.
ONNX_OPSET = 17
#: Extra install hint for messages.
EXTRA_HINT = 'pip install "napari-histo-denoise[bioimageio]"'
#: Preprocessing and postprocessing steps the engine honours (it feeds float32 in [0, 1]).
_NEUTRAL_STEPS = ("ensure_dtype", "clip")
#: Steps of :func:`iter_export_bmz`.
_STEPS = 5


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
        Side of the test input, a multiple of 16 of at least :data:`MIN_TILE`.
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
        For an unknown weight format or a bad test size.
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
    from .checkpoint import load_model

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
    _require("bioimageio.spec", "export a bioimage.io package")
    model, meta = load_model(weights, "cpu")
    return _export(model, meta, target, name, authors, formats, test_size, cancel)


def _export(model, meta, target, name, authors, formats, test_size, cancel):
    from bioimageio.spec import save_bioimageio_package

    from .figures import image_grid, write_image
    from .metrics import psnr

    cancelled = cancel_check(cancel)
    started = time.monotonic()
    done = 0

    def step() -> Progress:
        nonlocal done
        if cancelled():
            raise Cancelled("export cancelled")
        done += 1
        return Progress(done, _STEPS, time.monotonic() - started, "steps")

    architecture = meta["architecture"]
    with tempfile.TemporaryDirectory(prefix="histo-denoise-bmz-") as tmp:
        folder = Path(tmp)
        files = _weight_files(model, folder, formats)
        yield step()
        noisy, denoised, clean = _test_tensors(model, test_size)
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
            model_card(meta, test_size, scores), encoding="utf-8", newline="\n"
        )
        yield step()
        with _spec_calls():  # the description reads each file to record its SHA-256
            descr = _description(folder, files, meta, name or _default_name(architecture), authors)
        yield step()
        with atomic_output(target) as partial:
            with _spec_calls():
                save_bioimageio_package(descr, output_path=partial)
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


def _test_tensors(model, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noisy crop of the bundled slide, the engine's output for it, and the clean crop.

    The engine runs it as one tile (fp32, torch), which is what a consumer of the package
    computes from the whole test input.
    """
    from .engine import denoise
    from .samples import noisy_crop

    clean, noisy, _ = noisy_crop(size, TEST_SIGMA, TEST_SEED)
    denoised = denoise(
        noisy,
        model,
        tile_size=size,
        overlap=0,
        device="cpu",
        precision="fp32",
        backend="torch",
    ).compute()
    return noisy, denoised, clean


def _write_tensor(path: Path, image: np.ndarray) -> None:
    """Save an H x W x 3 image as a 1 x 3 x H x W float32 array (the package's axes)."""
    np.save(path, np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))


def _default_name(architecture: str) -> str:
    return f"napari-histo-denoise {architecture} (H+E and IHC denoiser)"


def _description(folder: Path, files, meta, name, authors):
    """The package's description, built with ``bioimageio.spec`` (checked as it is built)."""
    import torch
    from bioimageio.spec.model import v0_5

    from .checkpoint import METADATA_KEY

    architecture = meta["architecture"]
    module, callable_name = ARCHITECTURES[architecture]
    torch_version = v0_5.Version(torch.__version__.split("+")[0])
    weights = {
        "pytorch_state_dict": v0_5.PytorchStateDictWeightsDescr(
            source=files["pytorch_state_dict"],
            architecture=v0_5.ArchitectureFromLibraryDescr(
                callable=callable_name, import_from=module
            ),
            pytorch_version=torch_version,
            comment=f"napari-histo-denoise {__version__}: pip install napari-histo-denoise",
        )
    }
    if "torchscript" in files:
        weights["torchscript"] = v0_5.TorchscriptWeightsDescr(
            source=files["torchscript"],
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
            comment="traced; takes any batch and any size that is a multiple of 16",
        )
    if "onnx" in files:
        weights["onnx"] = v0_5.OnnxWeightsDescr(
            source=files["onnx"],
            opset_version=ONNX_OPSET,
            parent="pytorch_state_dict",
            comment="exported with torch.onnx (dynamic batch, y and x)",
        )
    data = v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0))
    channels = v0_5.ChannelAxis(channel_names=["r", "g", "b"])
    size = v0_5.ParameterizedSize(min=MIN_TILE, step=TILE_MULTIPLE)
    image = v0_5.TensorId("input")
    inputs = v0_5.InputTensorDescr(
        id=image,
        description="RGB image, float32 in [0, 1] (8-bit values / 255)",
        axes=[
            v0_5.BatchAxis(),
            channels,
            v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=size),
            v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=size),
        ],
        test_tensor=v0_5.FileDescr(source=folder / "test_input.npy"),
        sample_tensor=v0_5.FileDescr(source=folder / "sample_input.png"),
        data=data,
        pad=v0_5.ReflectPadding(),
    )
    outputs = v0_5.OutputTensorDescr(
        id=v0_5.TensorId("output"),
        description="the denoised RGB image, float32 in [0, 1]",
        axes=[
            v0_5.BatchAxis(),
            channels,
            *(
                v0_5.SpaceOutputAxisWithHalo(
                    id=v0_5.AxisId(axis),
                    size=v0_5.SizeReference(tensor_id=image, axis_id=v0_5.AxisId(axis)),
                    halo=HALO,
                )
                for axis in ("y", "x")
            ),
        ],
        test_tensor=v0_5.FileDescr(source=folder / "test_output.npy"),
        sample_tensor=v0_5.FileDescr(source=folder / "sample_output.png"),
        data=data,
    )
    own = {k: v for k, v in meta.items() if k != "history"}
    return v0_5.ModelDescr(
        name=name,
        description=(
            f"Removes noise from brightfield histology images (H&E, IHC): the {architecture} "
            "U-Net autoencoder of napari-histo-denoise, trained on RGB tiles with synthetic "
            "or self-supervised noise."
        )[:1024],
        authors=[v0_5.Author(name=author) for author in authors],
        cite=[v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in citations(meta)],
        license=v0_5.LicenseId("BSD-3-Clause"),
        documentation=v0_5.FileDescr(source=folder / "README.md"),
        covers=[v0_5.FileDescr(source=folder / "cover.jpg")],
        tags=["denoising", "histology", "histopathology", "h&e", "ihc", "2d", "rgb", "u-net"],
        inputs=[inputs],
        outputs=[outputs],
        weights=v0_5.WeightsDescr(**weights),
        version=v0_5.Version(__version__),
        config=v0_5.Config(
            bioimageio=v0_5.BioimageioConfig(
                architecture_type="U-Net" if architecture == "basic" else "ResNet U-Net",
                modality="brightfield histology (H&E, IHC)",
                task="denoising",
                model_parameter_count=int(meta.get("parameters", 0)) or None,
                training=_training_details(meta),
            ),
            **{METADATA_KEY: own},
        ),
    )


def _training_details(meta: Mapping[str, Any]):
    from bioimageio.spec.model import v0_5

    total = training_totals(meta)
    return v0_5.TrainingDetails(
        training_preprocessing=meta.get("noise") and f"synthetic noise {meta['noise']}",
        training_batch_size=meta.get("batch_size"),
        initial_learning_rate=meta.get("lr"),
        loss_function=meta.get("loss"),
        optimizer=meta.get("optimizer"),
        training_duration=total["hours"] if total else None,
    )


def training_totals(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training behind weights: their lineage's totals, their own run's, or None.

    Parameters
    ----------
    meta : mapping
        A weights file's metadata.
    """
    from .lineage import LINEAGE_KEY, chunk, totals

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
    from .datasets import SOURCES

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
        f"# {_default_name(architecture)}",
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
    else:
        lines += ["- No training record in the weights file."]
    for key, label in (
        ("mode", "mode"),
        ("noise", "noise"),
        ("patch_size", "patch size"),
        ("storage_dtype", "weights stored as"),
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
    from .datasets import licence_table

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


def run_bmz_test(path: str | os.PathLike) -> tuple[bool, str]:
    """Run bioimage.io's own test of a model package (what ``bioimageio test`` runs).

    It checks the description against the specification and reproduces the test output
    from the test input with every weight format in the package.

    Returns
    -------
    passed : bool
        Whether every check passed.
    report : str
        The test's summary, as Markdown.
    """
    _require("bioimageio.core", "test a bioimage.io package")
    from bioimageio.core import test_model

    with _spec_calls():
        summary = test_model(Path(path))
    return summary.status == "passed", summary.format_md()


def read_package(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the state dict of a bioimage.io package of the basic or deep model.

    The description is checked against the specification (no network access), the
    ``pytorch_state_dict`` entry must name one of :data:`ARCHITECTURES`, the input and output
    must be what the engine feeds and expects, and the weights' SHA-256 must match the
    description; then the state dict is read with ``torch.load(weights_only=True)``.
    Nothing in the package is imported or executed.

    Parameters
    ----------
    path : str or os.PathLike
        The package: a ``.zip``, or the ``rdf.yaml``/``bioimageio.yaml`` of an unpacked one.

    Returns
    -------
    state_dict : dict of str to torch.Tensor
        The tensors, on the CPU.
    metadata : dict
        This project's metadata stored in the package (``{}`` for another exporter's),
        with ``architecture`` set.

    Raises
    ------
    WeightsError
        If the package is not valid, is not of these architectures, or its weights do not
        match the description.
    """
    from .checkpoint import WeightsError, detect_architecture, read_torch_state

    path = Path(path)
    with _spec_calls():
        source, data, metadata = _package_contents(path)
    state_dict, _ = read_torch_state(io.BytesIO(data), f"{path.name}:{source}")
    found = detect_architecture(state_dict)
    if found != metadata["architecture"]:
        raise WeightsError(
            f"{path.name} declares the {metadata['architecture']} model, but its weights "
            f"{source} are {f'the {found} model' if found else 'of neither model'}'s"
        )
    return state_dict, metadata


def _package_contents(path: Path) -> tuple[str, bytes, dict[str, Any]]:
    """The weights' name and bytes (checked against their SHA-256), and our metadata."""
    from .checkpoint import METADATA_KEY, WeightsError

    descr = _describe(path)
    entry = descr.weights.pytorch_state_dict
    architecture = package_architecture(descr, path.name)
    metadata = dict((descr.config.model_extra or {}).get(METADATA_KEY) or {})
    metadata.update(architecture=architecture, bioimageio_name=descr.name)
    try:
        data = entry.get_reader().read()  # the reader checks the SHA-256 the package states
    except ValueError as exc:
        raise WeightsError(
            f"{path.name}: the weights {entry.source} do not match the SHA-256 in the "
            f"package's description, a damaged or altered package ({exc})"
        ) from None
    return str(entry.source), data, metadata


def _describe(path: Path):
    """Load and check a package's description (format 0.5), without network access.

    Call it inside :func:`_spec_calls` and drop the description before that block ends:
    it keeps the package's zip file open until it is collected.

    Returns
    -------
    bioimageio.spec.model.v0_5.ModelDescr

    Raises
    ------
    WeightsError
        If the description is invalid, not a model's, or of an older format that does not
        describe axes.
    """
    from .checkpoint import WeightsError

    _require("bioimageio.spec", "read a bioimage.io package")
    from bioimageio.spec import InvalidDescr, load_description
    from bioimageio.spec.model import v0_5

    try:
        descr = load_description(path, perform_io_checks=False, format_version="latest")
    except Exception as exc:  # a corrupt zip or YAML: the spec's loader raises many kinds
        raise WeightsError(f"{path.name} is not a readable bioimage.io package ({exc})") from None
    if isinstance(descr, InvalidDescr):
        errors = descr.validation_summary.errors
        reason = f"{errors[0].loc}: {errors[0].msg}" if errors else ""
        raise WeightsError(
            f"{path.name} is not a valid bioimage.io model package: {reason.strip()[:500]}"
        )
    if not isinstance(descr, v0_5.ModelDescr):
        raise WeightsError(f"{path.name} describes a {descr.type}, not a model")
    return descr


def package_model(path: str | os.PathLike) -> str:
    """Name the architecture (``"basic"`` or ``"deep"``) of a package, after checking it.

    Raises
    ------
    WeightsError
        As :func:`read_package`, for a package this plugin cannot run.
    """
    with _spec_calls():
        return package_architecture(_describe(Path(path)), Path(path).name)


def package_architecture(descr: Any, name: str) -> str:
    """Which of this project's architectures a package holds, after checking its tensors.

    Raises
    ------
    WeightsError
        If the package has no PyTorch state dict of :data:`ARCHITECTURES`, or its input or
        output is not one RGB image in [0, 1] with batch, channel, y and x axes.
    """
    from .checkpoint import WeightsError

    entry = descr.weights.pytorch_state_dict
    if entry is None:
        held = ", ".join(f for f, w in descr.weights if w is not None)
        raise WeightsError(
            f"{name} holds no pytorch_state_dict weights (only {held}): this plugin loads "
            "the state dict into its own architectures and runs nothing from a package"
        )
    arch = entry.architecture
    found = (getattr(arch, "import_from", None), str(arch.callable))
    matches = [a for a, where in ARCHITECTURES.items() if where == found]
    if not matches or arch.kwargs:
        where = ".".join(str(x) for x in found if x) or "a file in the package"
        raise WeightsError(
            f"{name} is a package of another architecture ({where}); this plugin runs "
            f"packages of its own: {', '.join(f'{m}.{c}' for m, c in ARCHITECTURES.values())}"
        )
    for tensors, kind in ((descr.inputs, "input"), (descr.outputs, "output")):
        _check_tensor(tensors, kind, name)
    return matches[0]


def _check_tensor(tensors: Sequence[Any], kind: str, name: str) -> None:
    from .checkpoint import WeightsError

    if len(tensors) != 1:
        raise WeightsError(f"{name} has {len(tensors)} {kind}s; these models have one")
    tensor = tensors[0]
    axes = [(a.type, str(a.id)) for a in tensor.axes]
    expected = [("batch", "batch"), ("channel", "channel"), ("space", "y"), ("space", "x")]
    if axes != expected or len(tensor.axes[1].channel_names) != 3:
        raise WeightsError(
            f"{name}: the {kind} axes are {[a for _, a in axes]}; these models take batch, "
            "channel (3, RGB), y, x"
        )
    steps = getattr(tensor, "preprocessing" if kind == "input" else "postprocessing")
    other = [s.id for s in steps if s.id not in _NEUTRAL_STEPS]
    data = tensor.data
    if other or getattr(data, "type", None) != "float32" or tuple(data.range) != (0.0, 1.0):
        raise WeightsError(
            f"{name}: the {kind} is not float32 RGB in [0, 1] as the engine's "
            f"(data {getattr(data, 'type', data)}, range {getattr(data, 'range', None)}, "
            f"processing {other or 'none'})"
        )


@contextlib.contextmanager
def _spec_calls() -> Iterator[None]:
    """Quiet the bioimage.io libraries' own warnings, and close the files they leave open.

    Their readers leave files for the garbage collector to close (a ResourceWarning each);
    collecting while those warnings are ignored closes them here, not at a random later time.
    Do the work in a function called inside the block, so that its objects (a description
    holds its package's zip file open) are gone when the block ends: a
    :class:`~napari_histo_denoise.checkpoint.WeightsError` leaves without its traceback,
    whose frames would keep them.
    """
    from .checkpoint import WeightsError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except WeightsError as exc:
            exc.__context__ = None  # a library error it replaced, with the same frames
            raise exc.with_traceback(None) from None
        finally:
            gc.collect()


def _require(module: str, what: str) -> None:
    import importlib.util

    from .checkpoint import WeightsError

    if (
        importlib.util.find_spec(module.split(".")[0]) is None
        or importlib.util.find_spec(module) is None
    ):
        raise WeightsError(f"to {what}, install {module}: {EXTRA_HINT}")


__all__ = [
    "ARCHITECTURES",
    "HALO",
    "MIN_TILE",
    "WEIGHT_FORMATS",
    "citations",
    "export_bmz",
    "iter_export_bmz",
    "model_card",
    "package_architecture",
    "package_model",
    "read_package",
    "run_bmz_test",
    "training_totals",
]
