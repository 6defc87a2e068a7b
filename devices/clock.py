"""Clocks: the real one, a faster one for demos, and a virtual one for tests.

Drivers, simulators and the dispense routine take a ``Clock`` so that protocol
timings (poll interval, safe-mode watchdog, delivery at a rate) can run in simulated
time. Serial reply timeouts are always real seconds: they bound how long we wait for
bytes on a wire, whatever the clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of time for device code."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Return seconds on a monotonic scale (only differences mean anything)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of this clock's time pass."""
        ...


class SystemClock:
    """Wall-clock time in UTC and ``time.monotonic``."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ScaledClock:
    """Real time running ``speed`` times faster (for demos that should not drag)."""

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._real0 = time.monotonic()
        self._wall0 = datetime.now(UTC)

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self.speed

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)


class VirtualClock:
    """Time that moves only when someone sleeps on it (or calls ``advance``).

    Only the thread driving the scenario should sleep on a virtual clock; background
    threads (simulators, heartbeat) read it but wait in real time. That makes a
    dispense deterministic: the pump simulator computes delivery from the same
    virtual seconds the dispense routine slept.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._wall0 = start
        self._t = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        # Give simulator threads a chance to observe the new time.
        time.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (negative values are refused)."""
        if seconds < 0:
            raise ValueError("time does not run backwards")
        with self._lock:
            self._t += seconds


SYSTEM_CLOCK = SystemClock()
