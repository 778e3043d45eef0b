"""One path from a source to a destination: the core function every face calls.

::

    source ---> plan ---> tiles ---> model ---> blend ---> sink
    (array,     (grid,    (bands,    (batches   (weighted  (memory, zarr array,
     pyramid,    bands,    segments,  on the     sums,      OME-Zarr pyramid,
     file)       skips)    tissue)    device)    seams)     OME-TIFF, picture)

:func:`iter_denoise_into` reads the source (an array, a pyramid whose level 0 is denoised, or
a file), makes one run (the weights hashed and the model loaded once), optionally skips the
tiles without tissue, and streams the result into the destination, yielding
:class:`~napari_histo_denoise.events.Progress` events that carry their unit. The napari
widget, the CLI and :func:`denoise_slide` (the OME-Zarr destination) all call it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from .events import Progress, drain
from .files import atomic_output, check_target

#: Destination kinds by file suffix (the first that matches wins).
DESTINATIONS = (
    (".ome.zarr", "ome-zarr"),
    (".zarr", "zarr"),
    (".ome.tiff", "ome-tiff"),
    (".ome.tif", "ome-tiff"),
    (".tiff", "ome-tiff"),
    (".tif", "ome-tiff"),
    (".png", "picture"),
    (".jpg", "picture"),
    (".jpeg", "picture"),
)
#: Destination kinds that hold one 2-D image and a pyramid.
PYRAMIDS = ("ome-zarr", "ome-tiff")


def destination_kind(destination: Any) -> str:
    """Say what ``destination`` is: ``"memory"``, ``"array"``, or a kind of :data:`DESTINATIONS`.

    Raises
    ------
    ValueError
        For a path whose suffix is none of :data:`DESTINATIONS`.
    """
    if destination is None:
        return "memory"
    if not isinstance(destination, (str, os.PathLike)):
        return "array"
    name = Path(destination).name.lower()
    for suffix, kind in DESTINATIONS:
        if name.endswith(suffix):
            return kind
    allowed = ", ".join(s for s, _ in DESTINATIONS)
    raise ValueError(f"unsupported output {Path(destination).name!r}; use one of {allowed}")


def iter_denoise_into(
    source: Any,
    destination: Any = None,
    *,
    model: Any = "basic",
    weights: Any = None,
    tile_size: int = 256,
    overlap: int = 32,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "auto",
    cancel: Any = None,
    tissue_only: bool = False,
    mask: Any = None,
    mpp: float | None = None,
    n_levels: int | None = None,
    chunk: int | None = None,
    resume: bool = True,
    overwrite: bool = False,
    kind: str | None = None,
) -> Generator[Progress, None, Any]:
    """Denoise ``source`` into ``destination``, yielding progress; return the result.

    Parameters
    ----------
    source : array, list of arrays, or path
        An image (numpy, dask or zarr; any layout the engine takes: gray, RGB, RGBA,
        stacks, uint8/uint16/float), a pyramid (level 0 first; level 0 is denoised, the
        others serve the tissue mask), or a file (:func:`napari_histo_denoise.io.read_image`).
    destination : None, array, or path
        ``None``: a new numpy array. An array (numpy, zarr) of the image's shape and dtype:
        written into. A path, by suffix: ``.zarr`` a zarr array (any layout), ``.ome.zarr`` an
        OME-Zarr pyramid (resumable), ``.ome.tif``/``.tif`` a tiled pyramidal OME-TIFF
        (both 2-D images only), ``.png``/``.jpg`` a picture (2-D, uint8).
    model, weights, tile_size, overlap, batch_size, device, precision, backend
        As for :func:`napari_histo_denoise.engine.denoise` (``weights=None``: the bundled
        weights of a named model).
    cancel : threading.Event or callable, optional
        Checked between batches; raises :class:`~napari_histo_denoise.events.Cancelled`.
    tissue_only : bool
        Skip the tiles without tissue (Otsu on a low-resolution level, see
        :func:`~napari_histo_denoise.slides.tissue_mask`): they pass their input through.
    mask : array-like, optional
        A 2-D mask (nonzero = tissue, any resolution) instead of the Otsu mask.
    mpp : float, optional
        Microns per pixel for pyramid outputs (default: from the source file).
    n_levels, chunk : int, optional
        Pyramid depth, and the chunk edge of its lower levels (level 0 of an OME-Zarr output
        is chunked by band segment, so that each one the engine finishes fills whole chunks).
    resume : bool
        An OME-Zarr output continues a previous run of the same job from its
        ``<destination>.partial`` store; False starts afresh.
    overwrite : bool
        Replace an existing destination file (else a FileExistsError, before any work).
    kind : str, optional
        The destination kind, instead of the one its suffix says.

    Yields
    ------
    Progress
        ``unit="tiles"`` while denoising (skipped tiles count as done), then
        ``unit="levels"`` while a pyramid is built.

    Returns
    -------
    numpy.ndarray, the given array, or Path
        The result in memory, the array written into, or the written file.
    """
    from .engine import ArraySink, ImageLayout, make_run, run_bands, write_zarr_array
    from .slides.pyramid import BLOCK_SIZE

    kind = kind or destination_kind(destination)
    if kind not in ("memory", "array"):
        check_target(destination, overwrite)
    levels, meta = _levels(source)
    image = levels[0]
    layout = ImageLayout.of(image)
    if kind == "picture":
        _check_picture(Path(destination), layout)
    if layout.leading and kind in PYRAMIDS:  # checked before the model is loaded
        raise ValueError(
            f"{destination} holds one 2-D image (Y, X[, C]); got shape {layout.shape}: "
            "write a stack to a .zarr array"
        )
    if layout.leading and (tissue_only or mask is not None):
        raise ValueError(
            f"a tissue mask applies to one 2-D image (Y, X[, C]); got shape {layout.shape}"
        )
    tissue = _tissue(levels, tissue_only, mask)
    run = make_run(
        image,
        model,
        weights,
        cancel=cancel,
        tissue=tissue,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        precision=precision,
        backend=backend,
    )
    if kind in ("memory", "array", "picture"):
        out = np.empty(run.layout.shape, run.layout.dtype) if kind != "array" else destination
        yield from run_bands(run, image, ArraySink(out, run.layout))
        if kind != "picture":
            return out
        with atomic_output(destination) as partial:
            _save_picture(partial, Path(destination).suffix, out)
        return Path(destination)
    if kind == "zarr":
        return (yield from write_zarr_array(run, image, Path(destination)))
    pyramid = {
        "chunk": chunk or BLOCK_SIZE,
        "mpp": mpp or meta.get("mpp"),
        "n_levels": n_levels,
        "name": meta.get("name"),
    }
    if kind == "ome-zarr":
        signature = None
        if resume:
            from .slides.resume import run_signature

            origin = str(meta.get("path", "array"))
            signature = run_signature(image, origin, run, pyramid["chunk"])
        return (yield from _into_ome_zarr(run, image, Path(destination), signature, pyramid))
    return (yield from _into_ome_tiff(run, image, Path(destination), pyramid))


def denoise_into(
    source: Any,
    destination: Any = None,
    *,
    progress: Callable[[Progress], object] | None = None,
    **options: Any,
) -> Any:
    """Run :func:`iter_denoise_into` to the end; ``progress`` receives every event."""
    return drain(iter_denoise_into(source, destination, **options), progress)


def iter_denoise_slide(
    path_or_levels: Any, out: str | Path, **options: Any
) -> Generator[Progress, None, Path]:
    """Denoise a slide (level 0) into a pyramidal OME-Zarr store, yielding progress.

    Parameters
    ----------
    path_or_levels : str, Path, array-like or list of array-like
        A slide file/store (read with :func:`napari_histo_denoise.io.read_image`), a 2-D
        image ``(Y, X[, 3|4])``, or a pyramid (level 0 first). Only level 0 is denoised;
        the other levels serve the tissue mask.
    out : str or Path
        The OME-Zarr store to create (OME-NGFF 0.4), whatever its suffix.
    **options
        The keyword arguments of :func:`iter_denoise_into`:
        ``model``, ``weights``, tiling and device settings, ``tissue_only`` (denoise only
        tiles that touch tissue; the others pass through, blended), ``mask``, ``cancel``
        (the partial store is kept for a resume), ``resume`` (default True), ``mpp``,
        ``n_levels``, ``chunk`` and ``overwrite``.

    Yields
    ------
    Progress
        Tiles, then pyramid levels (see the event's ``unit``).

    Returns
    -------
    Path
        ``out``, once complete.
    """
    return (yield from iter_denoise_into(path_or_levels, out, kind="ome-zarr", **options))


def denoise_slide(
    path_or_levels: Any,
    out: str | Path,
    *,
    progress: Callable[[int, int], object] | None = None,
    **options: Any,
) -> Path:
    """Denoise a whole slide (level 0) into a pyramidal OME-Zarr store on disk.

    Takes the arguments of :func:`iter_denoise_slide` and runs it to the end.

    Parameters
    ----------
    progress : callable, optional
        Called as ``progress(done, total)`` in tiles after each batch.

    Returns
    -------
    Path
        ``out``, complete (the partial store renamed).
    """

    def tiles(event: Progress) -> None:
        if progress is not None and event.unit == "tiles":
            progress(event.done, event.total)

    return drain(iter_denoise_slide(path_or_levels, out, **options), tiles)


def _levels(source: Any) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        from .io import read_image

        data, meta = read_image(source)
        return (data if isinstance(data, list) else [data]), meta
    if isinstance(source, (list, tuple)):
        from .io import check_levels

        levels = list(source)
        check_levels(levels, source="input image")
        return levels, {}
    return [source], {}


def _tissue(levels: list[Any], tissue_only: bool, mask: Any) -> np.ndarray | None:
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be 2D (Y, X), got shape {mask.shape}")
        return mask.astype(bool)
    if not tissue_only:
        return None
    from .slides.tissue import tissue_mask

    return tissue_mask(levels)


def _into_ome_zarr(run, image, path: Path, signature, pyramid) -> Generator[Progress, None, Path]:
    from .engine import run_bands
    from .slides.ome_zarr import OmeZarrSink

    # Level-0 chunks of one band segment: each segment the engine finishes fills whole chunks.
    block = (run.plan.bands[0].out_stop, run.plan.segments[0].out_stop)
    sink = OmeZarrSink(path, run.layout, signature=signature, block=block, **pyramid)
    yield from run_bands(run, image, sink, first_band=sink.first_band)
    return (yield from sink.finish())


def _into_ome_tiff(run, image, path: Path, pyramid) -> Generator[Progress, None, Path]:
    """The pyramid is built as OME-Zarr beside the target, then written as OME-TIFF tiles."""
    from .slides.ome_tiff import write_ome_tiff
    from .slides.pyramid import as_levels

    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as scratch:
        store = yield from _into_ome_zarr(
            run, image, Path(scratch) / "level.ome.zarr", None, pyramid
        )
        from .io import read_image

        data, _ = read_image(store)
        write_ome_tiff(as_levels(data), path, mpp=pyramid["mpp"], overwrite=True)
    return path


def _check_picture(path: Path, layout: Any) -> None:
    """Refuse, before any work, what a PNG or JPEG cannot hold."""
    if layout.leading:
        raise ValueError(f"a picture holds one 2-D image (Y, X[, 3|4]); got shape {layout.shape}")
    if layout.dtype != np.uint8:
        raise ValueError(
            f"{path.name}: a picture holds 8-bit pixels, the image is {layout.dtype}; "
            "write .ome.tif or .zarr to keep its values"
        )
    if layout.channels == 4 and path.suffix.lower() in (".jpg", ".jpeg"):
        raise ValueError(f"{path.name}: JPEG has no alpha channel; write .png")


def _save_picture(path: Path, suffix: str, image: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, image, extension=suffix)
