"""In-process notice that a counter has new work for its device service (a dose to deliver, a
balance to read), so a device service running in the same process (single-PC mode) starts at once
instead of at its next poll. Listeners must be quick and must not raise; a missed notice only costs
one poll interval."""

from __future__ import annotations

import threading
from collections.abc import Callable

DOSE = "dose"
WEIGHING = "weighing"

_lock = threading.Lock()
_listeners: dict[tuple[str, int], list[Callable[[], None]]] = {}


def subscribe(counter_id: int, listener: Callable[[], None], topic: str = DOSE) -> None:
    with _lock:
        _listeners.setdefault((topic, counter_id), []).append(listener)


def unsubscribe(counter_id: int, listener: Callable[[], None], topic: str = DOSE) -> None:
    with _lock:
        listeners = _listeners.get((topic, counter_id), [])
        if listener in listeners:
            listeners.remove(listener)


def _notify(topic: str, counter_id: int | None) -> None:
    if counter_id is None:
        return
    with _lock:
        listeners = list(_listeners.get((topic, counter_id), ()))
    for listener in listeners:
        listener()


def dose_requested(counter_id: int | None) -> None:
    """Tell the dose listeners of ``counter_id`` (after the dose was committed)."""
    _notify(DOSE, counter_id)


def weighing_requested(counter_id: int | None) -> None:
    """Tell the balance listeners of ``counter_id`` (after the request was committed)."""
    _notify(WEIGHING, counter_id)
