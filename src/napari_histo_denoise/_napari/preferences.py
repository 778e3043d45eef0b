r"""What the Histo Denoise widget remembers between sessions, in a small INI file.

The file is Qt's ``QSettings`` INI file of organisation ``napari-histo-denoise``, application
``widget``: ``~/.config/napari-histo-denoise/widget.ini`` on Linux and macOS,
``%APPDATA%\napari-histo-denoise\widget.ini`` on Windows. The ``HISTO_DENOISE_SETTINGS``
environment variable names another file (the tests point it at a temporary one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import QSettings

#: Environment variable naming the settings file to use instead of the user's.
SETTINGS_ENV = "HISTO_DENOISE_SETTINGS"
#: The remembered values: ``DenoiseSettings`` fields, as the widget's ``set_settings`` takes them.
KEYS = ("model", "weights", "tile_size", "overlap", "device", "backend")
_INTEGERS = ("tile_size", "overlap")


def _store() -> QSettings:
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "napari-histo-denoise", "widget")


def remembered() -> dict[str, Any]:
    """Return the values remembered so far (those never remembered, or unreadable, left out).

    ``weights`` is a path, or None for the model's bundled weights; a remembered weights file
    that no longer exists (say, weights trained in a past session's scratch folder) is left out.
    """
    store = _store()
    values: dict[str, Any] = {}
    for key in KEYS:
        if store.contains(key):
            try:
                values[key] = store.value(key, type=int if key in _INTEGERS else str)
            except (TypeError, ValueError):  # a damaged or hand-edited file: forget the key
                pass
    if "weights" in values:
        weights = values.pop("weights")
        if not weights:
            values["weights"] = None
        elif Path(weights).is_file():
            values["weights"] = weights
    return values


def remember(**values: Any) -> None:
    """Remember ``values`` (keys of :data:`KEYS`; ``weights`` None for the bundled weights)."""
    store = _store()
    for key, value in values.items():
        store.setValue(key, "" if value is None else value)
    store.sync()
