"""Parse the seed specification's tables so that tests can compare the code against them."""

from __future__ import annotations

import re
from pathlib import Path

SEED = Path(__file__).resolve().parents[1] / "docs" / "spec" / "histo_autoencoder_report.txt"

ROW = re.compile(r"^(\S+)\s+(\w+)\s+(\[\(.*?\)\])\s+(\(.*?\))\s+(\d+)\s*$")
BREAKDOWN = re.compile(r"^([A-Z]+)\s+(\S+)\s+([\d,]+)$")


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def layer_rows(text: str, title: str) -> list[tuple[str, str, tuple, tuple, int]]:
    """Rows ``(name, type, input shape, output shape, params)`` of one ARCHITECTURE MAP table."""
    section = text.split(f"ARCHITECTURE MAP - {title}", 1)[1].split("DATA FLOW MAP", 1)[0]
    rows = []
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            name, kind, inp, out, params = match.groups()
            rows.append((name, kind, _shape(inp), _shape(out), int(params)))
    return rows


def breakdown_rows(text: str, title: str) -> list[tuple[str, str, int]]:
    """Rows ``(component, layer name, params)`` of one PARAMETER BREAKDOWN section."""
    section = text.split(f"PARAMETER BREAKDOWN - {title}", 1)[1].split("TOTAL:", 1)[0]
    return [
        (m.group(1), m.group(2), int(m.group(3).replace(",", "")))
        for m in map(BREAKDOWN.match, section.splitlines())
        if m
    ]


def seed_text() -> str:
    """The seed report, as committed under ``docs/spec``."""
    return SEED.read_text(encoding="utf-8")
