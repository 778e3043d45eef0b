"""Training images: arrays, files and folders resolved to arrays (level 0) and names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: Images of at most this many bytes are read into memory once; larger ones stay lazy.
IN_MEMORY_BYTES = 1 << 30


def load_images(images: Any, *, what: str = "images") -> tuple[list[Any], list[str]]:
    """Resolve arrays, image files and folders to a list of arrays (level 0) and names.

    ``images`` is one array, path or folder, or a list of them; a list or tuple inside
    that list is a multiscale pyramid (as napari holds one) and gives its level 0.
    Images up to ``IN_MEMORY_BYTES`` are read into memory; larger slides stay lazy.

    Raises
    ------
    ValueError
        If nothing is given, a folder holds no image, or a file type is not supported.
    FileNotFoundError
        If a path does not exist.
    """
    from ..io import PICTURE_SUFFIXES, TIFF_SUFFIXES, read_image

    if images is None:
        raise ValueError(f"{what}: no images given")
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise ValueError(f"{what}: no images given")
    suffixes = (*PICTURE_SUFFIXES, *TIFF_SUFFIXES, ".zarr")
    arrays, names = [], []
    for index, item in enumerate(items):
        if isinstance(item, (list, tuple)) and item:  # a multiscale pyramid: level 0
            item = item[0]
        if not isinstance(item, (str, os.PathLike)):
            arrays.append(_in_memory(item))
            names.append(f"{what}[{index}]")
            continue
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{what}: no such file or folder: {path}")
        if path.is_dir() and not path.name.lower().endswith(".zarr"):
            files = sorted(p for p in path.iterdir() if p.name.lower().endswith(suffixes))
            if not files:
                raise ValueError(
                    f"{what}: folder {path} holds no images (looked for "
                    f"{', '.join(s.lstrip('.').upper() for s in suffixes)})"
                )
        elif not path.name.lower().endswith(suffixes):
            raise ValueError(
                f"{what}: {path.name} is not a supported image; use one of {', '.join(suffixes)}"
            )
        else:
            files = [path]
        for file in files:
            data, _meta = read_image(file)
            arrays.append(_in_memory(data[0] if isinstance(data, list) else data))
            names.append(file.name)
    return arrays, names


def _in_memory(array: Any) -> Any:
    """Read a lazy array (dask, zarr) into memory unless it is larger than IN_MEMORY_BYTES."""
    if isinstance(array, np.ndarray):
        return array
    if not hasattr(array, "shape"):
        return np.asarray(array)  # PatchSampler then names what is wrong with its shape
    nbytes = getattr(array, "nbytes", None)
    return np.asarray(array) if nbytes is not None and nbytes <= IN_MEMORY_BYTES else array
