"""Outputs that appear complete or not at all: write under a partial name, then rename.

Every writer of the package (weights, zarr arrays, OME-Zarr and OME-TIFF files) creates its
output under ``<name>.partial`` beside the target and renames it over the target only once
it is complete, so an interrupted, cancelled or failed run never leaves something that looks
finished, and never damages an existing output.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def partial_path(path: str | os.PathLike) -> Path:
    """The name ``path`` is written under until it is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def check_target(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to replace an existing ``path`` unless ``overwrite``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True")


def remove(path: str | os.PathLike) -> None:
    """Delete a file or folder if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def publish(partial: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished ``partial`` to ``path``, replacing what was there."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(partial, path)
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the partial path to write; publish it on success, delete it on failure.

    A partial output left by a killed process is deleted first. (The resumable OME-Zarr
    sink keeps its partial store on failure instead; see ``slides.ome_zarr.OmeZarrSink``.)
    """
    partial = partial_path(path)
    remove(partial)
    try:
        yield partial
    except BaseException:
        remove(partial)
        raise
    publish(partial, path)


def give_default_mode(path: str | os.PathLike) -> None:
    """Give the file ``path`` the permissions a new file gets here (0o666 less the umask).

    safetensors writes its files owner-only (0600): weights meant to be shared would be
    unreadable to the group and others. The mode is read off a probe file, so the process's
    umask is never changed (other threads may be creating files).
    """
    path = Path(path)
    probe = path.with_name(path.name + ".mode")
    with open(probe, "x"):
        pass
    try:
        os.chmod(path, probe.stat().st_mode & 0o777)
    finally:
        probe.unlink()


def file_sha256(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file (weights, downloads, data).

    Digests are remembered per file path, size and modification time, so a run that
    needs the digest of the same weights several times reads the file once.
    """
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
