"""A background run of a core generator, with a handle that widgets, scripts and tests wait on."""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

RUNNING, FINISHED, CANCELLED, FAILED = "running", "finished", "cancelled", "failed"


class RunFailed(Exception):
    """A run stopped with an error; the message is meant for the user.

    Not a RuntimeError on purpose: the thread worker swallows RuntimeErrors as warnings.
    """


def error_message(exc: BaseException) -> str:
    """Turn an exception from the core into one clear sentence for a notification."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if "OutOfMemory" in name or "out of memory" in text.lower():
        return (
            f"Out of memory even after the engine's retries with smaller batches ({text}). "
            "Choose a smaller tile or batch size, or the cpu device."
        )
    if name == "WeightsError":
        return f"Bad weights file: {text}"
    if isinstance(exc, (ValueError, FileNotFoundError, RunFailed)):
        return text
    return f"{name}: {text}"


def release_accelerator_memory() -> None:
    """Return cached GPU memory to the driver after a run (only when torch is loaded)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


_live_runs: weakref.WeakSet[BackgroundRun] = weakref.WeakSet()


def _finish_runs_at_exit() -> None:
    """Cancel the runs still going and let the pool threads end before Python tears down Qt.

    Without this a script that exits while a worker runs aborts (the worker emits into
    deleted Qt objects). napari's own event loop does the same on quit; scripts may not run it.
    """
    from qtpy.QtCore import QThreadPool

    for run in list(_live_runs):
        run.cancel()
    QThreadPool.globalInstance().waitForDone(60_000)


def guarded(job: Generator[Any, None, Any]) -> Generator[Any, None, Any]:
    """Drive ``job`` and re-raise its RuntimeErrors (torch's OOM among them) as RunFailed."""
    try:
        return (yield from job)
    except RuntimeError as exc:
        raise RunFailed(error_message(exc)) from exc
    finally:
        release_accelerator_memory()


class BackgroundRun:
    """One denoise or train run in a napari ``thread_worker``.

    Parameters
    ----------
    job
        Called in the worker thread with a :class:`threading.Event` that is set on cancel; returns
        a generator yielding progress events and returning the outcome.
    on_progress
        Called in the main thread with each progress event.
    on_result
        Called in the main thread with the outcome; its return value becomes :attr:`result`.
    on_done
        Called in the main thread with this run once it has ended, whatever the ending.
    what
        Noun for messages ("Denoise", "Training").
    """

    def __init__(
        self,
        job: Callable[[threading.Event], Generator[Any, None, Any]],
        *,
        on_progress: Callable[[Any], None],
        on_result: Callable[[Any], Any],
        on_done: Callable[[BackgroundRun], None],
        what: str,
    ) -> None:
        from napari.qt.threading import create_worker

        self.status = RUNNING
        self.result: Any = None
        self.message = ""
        self._ended = False
        self._what = what
        self._cancel = threading.Event()
        self._abort_message: str | None = None
        self._on_result = on_result
        self._on_done = on_done

        def work() -> Generator[Any, None, Any]:
            return (yield from guarded(job(self._cancel)))

        self.worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        self.worker.yielded.connect(on_progress)
        self.worker.returned.connect(self._returned)
        self.worker.errored.connect(self._errored)
        self.worker.finished.connect(self._finished)
        if not _live_runs:
            atexit.unregister(_finish_runs_at_exit)
            atexit.register(_finish_runs_at_exit)
        _live_runs.add(self)
        self.worker.start()

    @property
    def done(self) -> bool:
        """Whether the run has ended and the widget is ready again."""
        return self.status != RUNNING and self._ended

    def cancel(self, reason: str | None = None) -> None:
        """Ask the run to stop; ``reason`` (shown as an error) marks a forced abort."""
        self._abort_message = reason
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> Any:
        """Process Qt events until the run ends; return :attr:`result` (None unless finished)."""
        from qtpy.QtCore import QEventLoop
        from qtpy.QtWidgets import QApplication

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self._what} still running after {timeout} s")
            QApplication.processEvents(QEventLoop.AllEvents, 20)
            time.sleep(0.002)
        return self.result

    def _returned(self, outcome: Any) -> None:
        if self._cancel.is_set():
            self._set_cancelled()
            return
        try:
            self.result = self._on_result(outcome)
        except Exception as exc:  # e.g. napari refusing the layer: report, don't crash Qt
            self._set_failed(exc)
        else:
            self.status = FINISHED

    def _errored(self, exc: BaseException) -> None:
        from ..engine import Cancelled

        if isinstance(exc, Cancelled) or self._cancel.is_set():
            self._set_cancelled()
        else:
            self._set_failed(exc)

    def _set_cancelled(self) -> None:
        from napari.utils.notifications import show_error, show_info

        self.status = CANCELLED
        if self._abort_message:
            self.message = self._abort_message
            show_error(self.message)
        else:
            self.message = f"{self._what} cancelled; nothing was added."
            show_info(self.message)

    def _set_failed(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.status = FAILED
        self.message = f"{self._what} failed: {error_message(exc)}"
        show_error(self.message)

    def _finished(self) -> None:
        if self.status == RUNNING:  # ended without returning (aborted worker)
            self._set_cancelled()
        self._ended = True
        self._on_done(self)
