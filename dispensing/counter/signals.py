"""In-process notice that a counter has a new dose to deliver, so a device service running in the
same process (single-PC mode) starts at once instead of at its next poll. Listeners must be quick
and must not raise; a missed notice only costs one poll interval."""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_listeners: dict[int, list[Callable[[], None]]] = {}


def subscribe(counter_id: int, listener: Callable[[], None]) -> None:
    with _lock:
        _listeners.setdefault(counter_id, []).append(listener)


def unsubscribe(counter_id: int, listener: Callable[[], None]) -> None:
    with _lock:
        listeners = _listeners.get(counter_id, [])
        if listener in listeners:
            listeners.remove(listener)


def dose_requested(counter_id: int | None) -> None:
    """Tell the listeners of ``counter_id`` (after the dose was committed)."""
    if counter_id is None:
        return
    with _lock:
        listeners = list(_listeners.get(counter_id, ()))
    for listener in listeners:
        listener()
