"""The description (``rdf.yaml``) of a package being exported, built with ``bioimageio.spec``.

Its weights in each format, its input and output (RGB, float32 in [0, 1], batch x channel x
y x x, tiles of any multiple of 16 from :data:`~.contract.MIN_TILE` on, with
:data:`~.contract.HALO` pixels per side to crop when tiles are stitched), the test and
sample tensors, the card and cover, citations, and this project's metadata of the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..settings import TILE_MULTIPLE
from .card import citations, training_totals
from .contract import ARCHITECTURES, HALO, MIN_TILE, ONNX_OPSET


def package_description(
    folder: Path,
    files: Mapping[str, Path],
    meta: Mapping[str, Any],
    name: str,
    authors: Sequence[str],
):
    """The package's description, built with ``bioimageio.spec`` (checked as it is built).

    Parameters
    ----------
    folder : pathlib.Path
        The folder of the package's files: the test and sample tensors, ``README.md`` and
        ``cover.jpg``; the description reads each to record its SHA-256.
    files : mapping of str to pathlib.Path
        The weight file of each format written (``pytorch_state_dict`` always).
    meta : mapping
        The weights file's metadata, with ``architecture``.
    name : str
        The model's name in the package.
    authors : sequence of str
        Author names.

    Returns
    -------
    bioimageio.spec.model.v0_5.ModelDescr
    """
    import torch
    from bioimageio.spec.model import v0_5

    from ..checkpoint import METADATA_KEY

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


__all__ = ["package_description"]
