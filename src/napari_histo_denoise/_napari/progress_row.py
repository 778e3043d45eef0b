"""A progress bar with a status line, an estimate of the time left and a Cancel button.

While a run goes on, napari's activity dock (bottom right of the viewer) shows the same
progress, as it does for other plugins' work.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..events import format_seconds

#: Resolution of the bar (its range), independent of the unit counted.
_STEPS = 1000


def time_left(done: int, total: int, elapsed_s: float) -> float | None:
    """Estimate the seconds left from the rate so far; None before the first step is done."""
    if done <= 0 or total <= 0:
        return None
    return elapsed_s / done * max(total - done, 0)


class ProgressRow(QWidget):
    """Progress of one run: ``done / total unit``, elapsed and time left, and Cancel."""

    def __init__(self, unit: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.unit = unit
        self._activity: Any = None  # the run's napari.utils.progress (the activity dock's bar)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.reset()

    def reset(self, message: str = "ready") -> None:
        """Show an idle bar and ``message``."""
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("")
        self.status.setText(message)
        self.cancel_button.setEnabled(False)
        if self._activity is not None:
            self._activity.close()
            self._activity = None

    def start(self, message: str) -> None:
        """Show a busy bar (no total yet), here and in napari's activity dock; enable Cancel."""
        from napari.utils import progress

        self.bar.setRange(0, 0)
        self.status.setText(message)
        self.cancel_button.setEnabled(True)
        self._activity = progress(total=0, desc=message, unit=f" {self.unit}")

    def update_progress(
        self, done: int, total: int, elapsed_s: float, extra: str = "", unit: str | None = None
    ) -> None:
        """Show ``done / total unit``, the time spent and the estimated time left.

        ``unit`` is what the event counts (default: the row's own unit).
        """
        self.bar.setRange(0, _STEPS)
        self.bar.setValue(round(_STEPS * done / total) if total else 0)
        self.bar.setFormat(f"{done} / {total} {unit or self.unit}")
        left = time_left(done, total, elapsed_s)
        eta = "estimating" if left is None else f"{format_seconds(left)} left"
        parts = [f"{format_seconds(elapsed_s)} elapsed", eta]
        if extra:
            parts.append(extra)
        self.status.setText(" · ".join(parts))
        if self._activity is not None:
            self._update_activity(done, total, extra)

    def _update_activity(self, done: int, total: int, extra: str) -> None:
        if self.unit == "Mpx":  # whole megapixels: pixel counts overflow Qt's int progress
            done, total = done // 10**6, math.ceil(total / 10**6)
        if self._activity.total != total:
            self._activity.total = total
        self._activity.set_postfix_str(extra, refresh=False)  # e.g. the loss, after the rate
        self._activity.update(done - self._activity.n)
