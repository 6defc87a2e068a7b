"""Small interfaces the rest of the project programs against.

Drivers (``devices.ne1000``, ``devices.reglo``, ``devices.mtsics``,
``devices.scanner``, ``devices.labels``) implement these; the dispense routine and
calibration only use what is declared here.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from devices.labels import Label
    from devices.scan import Scan
    from devices.transcript import Transcript


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device says about itself."""

    model: str
    firmware: str | None = None
    serial_number: str | None = None
    detail: str | None = None

    def __str__(self) -> str:
        parts = [self.model]
        if self.firmware:
            parts.append(f"fw {self.firmware}")
        if self.serial_number:
            parts.append(f"s/n {self.serial_number}")
        return " ".join(parts)


class PumpState(enum.StrEnum):
    STOPPED = "STOPPED"
    RUNNING = "RUNNING"
    PURGING = "PURGING"
    PAUSED = "PAUSED"
    WITHDRAWING = "WITHDRAWING"


@dataclass(frozen=True)
class PumpStatus:
    """Pump state plus its dispensed-volume counter (None if it has none)."""

    state: PumpState
    dispensed_ml: Decimal | None = None


@runtime_checkable
class Pump(Protocol):
    """A dosing pump.

    Volumes are ``Decimal`` millilitres at 0.01 ml resolution. Every method either
    returns what the pump confirmed or raises a ``devices.errors.DeviceError``.
    """

    device_id: str
    max_volume_ml: Decimal
    has_volume_counter: bool
    poll_interval_s: float

    def identify(self) -> DeviceIdentity:
        """Return the pump's model and firmware."""
        ...

    def clear_counter(self) -> None:
        """Zero the dispensed-volume counter (no-op for pumps without one)."""
        ...

    def prepare(self, volume_ml: Decimal) -> Decimal:
        """Program ``volume_ml`` and return the volume the pump reports back.

        Raises VolumeCeilingExceeded above ``max_volume_ml`` without sending.
        """
        ...

    def start(self) -> None:
        """Send RUN once. Never retried by the driver."""
        ...

    def status(self) -> PumpStatus:
        """Return the current state (and counter, if the pump has one)."""
        ...

    def dispensed_volume(self) -> Decimal:
        """Return the dispensed-volume counter in ml.

        Raises VolumeCounterUnavailable for pumps without a counter.
        """
        ...

    def stop(self) -> None:
        """Stop pumping (safe to repeat)."""
        ...

    def max_run_seconds(self, volume_ml: Decimal) -> float:
        """Return how long delivering ``volume_ml`` should take at the set rate."""
        ...

    def recording(self, transcript: Transcript) -> contextlib.AbstractContextManager[Transcript]:
        """Record every byte to and from the pump into ``transcript`` in the block."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Weighing:
    """One balance reading; ``grams`` is net (after tare)."""

    grams: Decimal
    stable: bool
    unit: str
    at: datetime


@runtime_checkable
class Balance(Protocol):
    """A laboratory balance. Only stable readings in grams are returned as such."""

    device_id: str

    def identify(self) -> DeviceIdentity: ...

    def stable_weight(self, timeout_s: float | None = None) -> Weighing:
        """Return a stable net weight in grams.

        Raises BalanceUnstable if none within ``timeout_s``, WrongUnit if the balance
        answers in another unit.
        """
        ...

    def immediate_weight(self) -> Weighing:
        """Return the current net weight, stable or not (``Weighing.stable`` says)."""
        ...

    def zero(self) -> None: ...

    def tare(self) -> Decimal:
        """Tare the balance and return the tare weight in grams."""
        ...

    def recording(
        self, transcript: Transcript
    ) -> contextlib.AbstractContextManager[Transcript]: ...

    def close(self) -> None: ...


@runtime_checkable
class Scanner(Protocol):
    """A barcode reader that yields classified scans."""

    device_id: str

    def read_scan(self, timeout_s: float) -> Scan | None:
        """Return the next scan, or None if nothing was read within ``timeout_s``."""
        ...

    def scans(self) -> Iterator[Scan]:
        """Yield scans until the scanner is closed."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LabelPrinter(Protocol):
    """Something that turns a label into paper (or a file standing in for paper)."""

    def print_label(self, label: Label) -> Path:
        """Render ``label`` and return where the printable output went."""
        ...
