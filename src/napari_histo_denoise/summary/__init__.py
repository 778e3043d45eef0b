"""The model report: architecture map, data flow, parameter breakdown and memory analysis.

:mod:`.facts` derives them from the real models; :mod:`.render` writes them as text in the
seed specification's layout, JSON or Markdown.
"""

from __future__ import annotations

from .facts import (
    COMPONENTS,
    MB,
    Component,
    MemoryAnalysis,
    ModelSummary,
    component_of,
    model_summary,
)
from .render import FORMATS, comparison_rows, render

__all__ = [
    "COMPONENTS",
    "FORMATS",
    "MB",
    "Component",
    "MemoryAnalysis",
    "ModelSummary",
    "comparison_rows",
    "component_of",
    "model_summary",
    "render",
]
