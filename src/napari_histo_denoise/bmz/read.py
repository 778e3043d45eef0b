"""Read a bioimage.io package back as weights, after checking it is one this plugin can run.

The description is checked against the specification without touching the network, only
this project's two architectures (:data:`~.contract.ARCHITECTURES`) are accepted, and the
state dict is read with ``torch.load(weights_only=True)`` after checking its SHA-256:
nothing in a package is imported or executed. :func:`read_package` is what
:func:`~napari_histo_denoise.checkpoint.read_weights`, hence every face, calls for a package.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .contract import ARCHITECTURES
from .spec_calls import require, spec_call

#: Preprocessing and postprocessing steps the engine honours (it feeds float32 in [0, 1]).
NEUTRAL_STEPS = ("ensure_dtype", "clip")


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
    from ..checkpoint import WeightsError, detect_architecture, read_torch_state

    path = Path(path)
    source, data, metadata = spec_call(_package_contents, path)
    state_dict, _ = read_torch_state(io.BytesIO(data), f"{path.name}:{source}")
    found = detect_architecture(state_dict)
    if found != metadata["architecture"]:
        raise WeightsError(
            f"{path.name} declares the {metadata['architecture']} model, but its weights "
            f"{source} "
            + (f"are the {found} model's" if found else "fit neither the basic nor the deep model")
        )
    return state_dict, metadata


def _package_contents(path: Path) -> tuple[str, bytes, dict[str, Any]]:
    """The weights' name and bytes (checked against their SHA-256), and our metadata."""
    from ..checkpoint import METADATA_KEY, WeightsError

    descr = _describe(path)
    entry = descr.weights.pytorch_state_dict
    architecture = package_architecture(descr, path.name)
    metadata = dict((descr.config.model_extra or {}).get(METADATA_KEY) or {})
    metadata.update(architecture=architecture, bioimageio_name=descr.name)
    if str(entry.source).startswith(("http://", "https://")):
        raise WeightsError(
            f"{path.name}: the weights are not in the package but at {entry.source}; nothing is "
            "downloaded here: get the package as a .zip with its weights (bioimage.io's "
            "download button gives one) and open that"
        )
    try:
        data = entry.get_reader().read()  # the reader checks the SHA-256 the package states
    except ValueError as exc:
        raise WeightsError(
            f"{path.name}: the weights {entry.source} do not match the SHA-256 in the "
            f"package's description, a damaged or altered package ({exc})"
        ) from None
    except (OSError, TypeError) as exc:
        # A missing file: FileNotFoundError, but from a zip bioimageio.spec 0.5.12 fails to
        # name the missing member and raises a TypeError instead.
        missing = isinstance(exc, FileNotFoundError | TypeError)
        raise WeightsError(
            f"{path.name}: the weights {entry.source} cannot be read, a damaged or incomplete "
            f"package ({'not in the package' if missing else exc})"
        ) from None
    return str(entry.source), data, metadata


def _describe(path: Path):
    """Load and check a package's description (format 0.5), without network access.

    Call it in a function run by :func:`~.spec_calls.spec_call`, which drops the
    description when it returns: it keeps the package's zip file open until it is collected.

    Returns
    -------
    bioimageio.spec.model.v0_5.ModelDescr

    Raises
    ------
    WeightsError
        If the description is invalid, not a model's, or of an older format that does not
        describe axes.
    """
    from ..checkpoint import WeightsError

    require("bioimageio.spec", "read a bioimage.io package")
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
    return spec_call(_described_architecture, Path(path))


def _described_architecture(path: Path) -> str:
    return package_architecture(_describe(path), path.name)


def package_architecture(descr: Any, name: str) -> str:
    """Which of this project's architectures a package holds, after checking its tensors.

    Raises
    ------
    WeightsError
        If the package has no PyTorch state dict of :data:`ARCHITECTURES`, or its input or
        output is not one RGB image in [0, 1] with batch, channel, y and x axes.
    """
    from ..checkpoint import WeightsError

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
    from ..checkpoint import WeightsError

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
    other = [s.id for s in steps if s.id not in NEUTRAL_STEPS]
    data = tensor.data
    if other or getattr(data, "type", None) != "float32" or tuple(data.range) != (0.0, 1.0):
        raise WeightsError(
            f"{name}: the {kind} is not float32 RGB in [0, 1] as the engine's "
            f"(data {getattr(data, 'type', data)}, range {getattr(data, 'range', None)}, "
            f"processing {other or 'none'})"
        )


__all__ = ["NEUTRAL_STEPS", "package_architecture", "package_model", "read_package"]
