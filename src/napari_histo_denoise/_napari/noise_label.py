"""The widget's Noise row: a layer's estimated noise, measured once per layer in a worker."""

from __future__ import annotations

import functools
import weakref
from typing import Any

from qtpy.QtWidgets import QLabel


class NoiseLabel(QLabel):
    """Shows the estimated noise of the layer given to :meth:`show_for` (``hd.estimate_noise``).

    Each layer is measured once, in a worker thread; its estimate, or why it failed, is kept
    for as long as the layer lives.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)
        self.setToolTip(
            "The layer's noise (standard deviation on the 0-255 scale), estimated blind from "
            "a few tissue tiles with scikit-image's estimate_sigma: hd.estimate_noise"
        )
        # Per layer: its NoiseEstimate, or the message of an estimate that failed.
        self._known: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._measuring: weakref.WeakSet[Any] = weakref.WeakSet()
        self._running = 0
        self._shown: Any = None  # a weak reference to the layer shown, or None

    @property
    def busy(self) -> bool:
        """Whether an estimate is being made."""
        return self._running > 0

    def show_for(self, layer: Any) -> None:
        """Show the noise of ``layer`` (None: nothing), measuring it first if need be."""
        from napari.qt.threading import create_worker

        from ..noise_level import estimate_noise
        from .layers import source_data

        self._shown = None if layer is None else weakref.ref(layer)
        if layer is None or layer in self._known:
            self._set_text(None if layer is None else self._known[layer])
            return
        self._set_text("estimating...")
        if layer in self._measuring:
            return
        worker = create_worker(
            estimate_noise, source_data(layer), _start_thread=False, _ignore_errors=True
        )
        # Bound methods: Qt drops their connections if this label is deleted meanwhile.
        worker.returned.connect(functools.partial(self._known_now, layer))
        worker.errored.connect(functools.partial(self._failed, layer))
        worker.finished.connect(self._done)
        self._measuring.add(layer)
        self._running += 1
        worker.start()

    def _known_now(self, layer: Any, estimate: Any) -> None:
        self._known[layer] = estimate
        self._show_if_current(layer)

    def _failed(self, layer: Any, error: Exception) -> None:
        self._known[layer] = f"not estimated: {error}"
        self._show_if_current(layer)

    def _done(self) -> None:
        self._running -= 1

    def _show_if_current(self, layer: Any) -> None:
        if self._shown is not None and self._shown() is layer:
            self._set_text(self._known[layer])

    def _set_text(self, estimate: Any) -> None:
        """Show an estimate, a message (str), or nothing (None)."""
        self.setStyleSheet("")
        if estimate is None or isinstance(estimate, str):
            self.setText(estimate or "")
            return
        text = f"sigma {estimate.sigma:.1f} on the 0-255 scale"
        if estimate.looks_clean:
            text += ": the image looks clean, denoising may soften detail"
        self.setText(text)
        self.setStyleSheet("color: #e0a052;" if estimate.looks_clean else "")
