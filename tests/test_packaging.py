"""What pyproject.toml promises: safe floors, one version number, every import declared."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import napari_histo_denoise

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
SRC = ROOT / "src" / "napari_histo_denoise"
#: Imported but deliberately not a dependency: napari is the host application (napari's rule).
HOST = {"napari"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(extras: bool = False) -> dict[str, Requirement]:
    lines = list(PROJECT["dependencies"])
    if extras:
        lines += [line for group in PROJECT["optional-dependencies"].values() for line in group]
    return {_normal(r.name): r for r in map(Requirement, lines)}


def _lowest(requirement: Requirement) -> Version:
    """The lowest version a ``>=`` specifier allows."""
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors, f"{requirement} has no >= floor"
    return max(floors)


@pytest.mark.parametrize(
    ("name", "floor", "why"),
    [
        ("torch", "2.6", "torch.load(weights_only=True) runs code before 2.6 (CVE-2025-32434)"),
        ("zarr", "3.0.8", "the code calls zarr 3 APIs; 3.0.0-3.0.7 are yanked"),
        ("tifffile", "2025.5.21", "tifffile's zarr store works with zarr 3 from 2025.5.21"),
    ],
)
def test_dependency_floors_are_safe(name, floor, why):
    assert _lowest(_requirements()[name]) >= Version(floor), why


def test_python_floor_follows_zarr_3_everywhere():
    requires = SpecifierSet(PROJECT["requires-python"])
    assert "3.10" not in requires and "3.11" in requires  # zarr 3 needs Python 3.11
    classified = {
        c.rsplit(" :: ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    envs = re.fullmatch(r"py\{([\d,]+)\}", tox["tox"]["envlist"].strip()).group(1).split(",")
    tested = {f"{env[0]}.{env[1:]}" for env in envs}
    assert classified == tested and all(v in requires for v in tested)
    assert sys.version_info[:2] >= (3, 11)


def test_the_version_number_has_one_source():
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    attr = setuptools["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "napari_histo_denoise.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", napari_histo_denoise.__version__)


def _imported_top_level_names() -> set[str]:
    names = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"napari_histo_denoise", "__future__"}


def test_every_third_party_import_is_declared():
    declared = set(_requirements(extras=True))
    distributions = packages_distributions()
    undeclared = {
        name
        for name in _imported_top_level_names() - HOST
        if not {_normal(d) for d in distributions.get(name, [name])} & declared
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {sorted(undeclared)}"


def test_magicgui_is_declared_because_it_is_used():
    assert "magicgui" in _imported_top_level_names() and "magicgui" in _requirements()
