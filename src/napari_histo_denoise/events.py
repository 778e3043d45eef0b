"""Drive the progress generators of long jobs (denoise, train, slides).

Long work is a generator that yields progress events and *returns* its result; these
helpers run one to the end or re-yield its events in another form.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

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


def relay(
    events: Generator[Event, None, Result], convert: Callable[[Event], Any]
) -> Generator[Any, None, Result]:
    """Yield ``convert(event)`` for each event of ``events``; return its return value."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        yield convert(event)
