"""Drive the progress generators of long jobs (denoise, train, slides).

Long work is a generator that yields progress events and *returns* its result; :func:`drain`
runs one to the end. Also the events themselves, the cancel request and a time format.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar


class Cancelled(Exception):
    """Raised when a long job (denoise, train) is cancelled."""


@dataclass(frozen=True)
class Progress:
    """One progress event of a denoise run: ``done`` of ``total`` units, seconds since the start.

    ``unit`` names what is counted: ``"tiles"`` while denoising, ``"levels"`` while a
    pyramid is built.
    """

    done: int
    total: int
    elapsed_s: float
    unit: str = "tiles"


Event = TypeVar("Event")
Result = TypeVar("Result")


def drain(
    events: Generator[Event, None, Result], on_event: Callable[[Event], object] | None = None
) -> Result:
    """Run a progress generator to the end, calling ``on_event`` with each event.

    Returns
    -------
    The generator's return value.
    """
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


def cancel_check(cancel: Any) -> Callable[[], bool]:
    """Turn a cancel request into a function that says whether it is set.

    Parameters
    ----------
    cancel : threading.Event, callable returning bool, or None
        ``None`` never cancels.

    Raises
    ------
    ValueError
        If ``cancel`` is none of these.
    """
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise ValueError(
        f"cancel must be a threading.Event or a callable returning a bool, got "
        f"{type(cancel).__name__}"
    )


def format_seconds(seconds: float) -> str:
    """Format a duration as ``m:ss`` (or ``h:mm:ss``)."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
