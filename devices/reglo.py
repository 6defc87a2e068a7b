"""Driver for the Ismatec Reglo ICC peristaltic pump (volume-at-rate from a stock bottle).

Protocol (9600 8N1, ASCII): ``<addr><cmd>[args]\\r``. Set commands answer one status
character: ``*`` done, ``#`` refused, ``+``/``-`` command-specific; queries answer a
data line ending CR LF. Volumes and flows use the ``mmmmse`` format (m.mmm x 10^se).

There is no checksum, no watchdog and no dispensed-volume counter, so:

* every wait is bounded on the host (reply timeout, run deadline);
* a one-character reply is only believed if nothing else arrives with it (noise
  plus ``*`` must not read as "done");
* the pump cannot say how much it delivered. ``dispense`` treats a run that stops
  by itself no earlier than the volume could have been delivered as the setpoint
  delivered (``MeasurementSource.SETPOINT``), anything else as unknown; use a
  ``GravimetricCheck`` to confirm by weight. Async event messages are switched off
  (``xE0``) so they cannot be mistaken for replies.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import structlog

from devices.clock import SYSTEM_CLOCK, Clock
from devices.errors import (
    CommandRejected,
    CrcError,
    FramingError,
    NoReply,
    OutOfRange,
    ProtocolError,
    VolumeCeilingExceeded,
    VolumeCounterUnavailable,
)
from devices.interfaces import DeviceIdentity, PumpState, PumpStatus
from devices.link import SerialLink
from devices.quantities import ml
from devices.transcript import Transcript

log = structlog.get_logger(__name__)

_STATUS_CHARS = frozenset(b"*#+-")


def encode_volume(value: Decimal) -> str:
    """Return ``value`` in ``mmmmse`` form (``Decimal("0.012")`` -> ``1200-2``).

    Raises OutOfRange if it needs more than 4 significant digits or the exponent is
    outside -9..9 (never rounds).
    """
    if not value.is_finite() or value < 0:
        raise OutOfRange("volume must be a non-negative number")
    if value == 0:
        return "0000+0"
    normal = value.normalize()
    digits = normal.as_tuple().digits
    if len(digits) > 4:
        raise OutOfRange(f"{value} needs more than 4 significant digits")
    exponent = normal.adjusted()
    if not -9 <= exponent <= 9:
        raise OutOfRange(f"{value} is outside the pump's number range")
    mantissa = "".join(str(d) for d in digits).ljust(4, "0")
    return f"{mantissa}{'-' if exponent < 0 else '+'}{abs(exponent)}"


_VOLUME = re.compile(r"^(\d)(\d{3})([+-])(\d)$", re.ASCII)


def decode_volume(text: str) -> Decimal:
    """Return the number in an ``mmmmse`` string; raises ProtocolError otherwise."""
    match = _VOLUME.match(text)
    if match is None:
        raise ProtocolError(f"not an mmmmse number: {text!r}")
    mantissa = Decimal(f"{match[1]}.{match[2]}")
    exponent = int(match[4]) * (-1 if match[3] == "-" else 1)
    return mantissa.scaleb(exponent)


@dataclass(frozen=True)
class RegloSettings:
    address: int = 1
    baudrate: int = 9600
    flow_ml_min: Decimal = Decimal("20")
    max_volume_ml: Decimal = Decimal("100.00")
    reply_timeout_s: float = 1.0
    query_retries: int = 2
    poll_interval_s: float = 0.5
    quiet_s: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= self.address <= 8:
            raise ValueError("Reglo address must be 1-8")
        if self.flow_ml_min <= 0:
            raise ValueError("flow must be positive")
        encode_volume(self.flow_ml_min)


class RegloIccPump:
    """A Reglo ICC in volume-at-rate mode."""

    has_volume_counter = False

    def __init__(
        self,
        link: SerialLink,
        settings: RegloSettings,
        *,
        device_id: str = "pump",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._link = link
        self.settings = settings
        self.device_id = device_id
        self.max_volume_ml = settings.max_volume_ml
        self.poll_interval_s = settings.poll_interval_s
        self._clock = clock
        self._lock = threading.RLock()
        self.identity: DeviceIdentity | None = None

    @classmethod
    def connect(
        cls,
        url: str,
        settings: RegloSettings | None = None,
        *,
        device_id: str = "pump",
        clock: Clock = SYSTEM_CLOCK,
    ) -> RegloIccPump:
        """Return a pump in volume-at-rate mode with the flow set and read back.

        Raises PortUnavailable or a DeviceError from the pump.
        """
        settings = settings or RegloSettings()
        link = SerialLink.open(url, name=device_id, baudrate=settings.baudrate)
        pump = cls(link, settings, device_id=device_id, clock=clock)
        try:
            pump.start_session()
        except BaseException:
            pump.close()
            raise
        return pump

    def start_session(self) -> None:
        retries = self.settings.query_retries
        self._expect_done(self._status_command("xE0", retries=retries), "xE0")
        self.identity = self.identify()
        self._expect_done(self._status_command("O", retries=retries), "O")
        flow = self.settings.flow_ml_min
        self._expect_done(self._status_command(f"f{encode_volume(flow)}", retries=retries), "f")
        flow_back = decode_volume(self._data_command("f", retries=retries))
        if flow_back != flow:
            raise ProtocolError(f"flow read back {flow_back}, set {flow}")

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> RegloIccPump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recording(self, transcript: Transcript) -> contextlib.AbstractContextManager[Transcript]:
        return self._link.recording(transcript)

    # -- pump interface ---------------------------------------------------------------

    def identify(self) -> DeviceIdentity:
        """Return model, software version and head code from ``#``."""
        line = self._data_command("#", retries=self.settings.query_retries)
        parts = line.rsplit(" ", 2)
        if len(parts) != 3:
            raise ProtocolError(f"unexpected identification {line!r}")
        return DeviceIdentity(model=parts[0], firmware=parts[1], detail=f"head {parts[2]}")

    def clear_counter(self) -> None:
        """Nothing to clear: the Reglo has no dispensed-volume counter."""

    def prepare(self, volume_ml: Decimal) -> Decimal:
        """Set the volume (``v``) and return the read-back; raises before sending if too big."""
        volume = ml(volume_ml)
        if volume <= 0:
            raise OutOfRange("volume must be positive")
        if volume > self.max_volume_ml:
            raise VolumeCeilingExceeded(
                f"{volume} ml is above the pump ceiling of {self.max_volume_ml} ml"
            )
        text = encode_volume(volume)
        retries = self.settings.query_retries
        self._expect_done(self._status_command("O", retries=retries), "O")
        self._expect_done(self._status_command(f"v{text}", retries=retries), "v")
        return decode_volume(self._data_command("v", retries=retries))

    def start(self) -> None:
        """Send ``H`` once; on ``-`` ask ``xe`` why and raise CommandRejected."""
        status = self._status_command("H", retries=0)
        if status == "*":
            return
        if status == "-":
            cause = self._data_command("xe", retries=self.settings.query_retries)
            raise CommandRejected(f"pump cannot run: {cause}", code=cause.split(" ")[0])
        raise CommandRejected("pump refused to start", code=status)

    def status(self) -> PumpStatus:
        """Return RUNNING or STOPPED from ``E``; no counter."""
        status = self._status_command("E", retries=self.settings.query_retries)
        if status == "+":
            return PumpStatus(PumpState.RUNNING)
        if status == "-":
            return PumpStatus(PumpState.STOPPED)
        raise ProtocolError(f"unexpected reply to E: {status!r}")

    def dispensed_volume(self) -> Decimal:
        raise VolumeCounterUnavailable("the Reglo ICC has no dispensed-volume counter")

    def stop(self) -> None:
        self._expect_done(self._status_command("I", retries=self.settings.query_retries), "I")

    def max_run_seconds(self, volume_ml: Decimal) -> float:
        return float(volume_ml / self.settings.flow_ml_min * 60)

    # -- wire ------------------------------------------------------------------------------

    @staticmethod
    def _expect_done(status: str, command: str) -> None:
        if status != "*":
            raise CommandRejected(f"pump refused {command}", code=status)

    def _send(self, command: str) -> None:
        stale = self._link.read_available()
        if stale:
            log.info("reglo.stale_bytes_discarded", device=self.device_id, count=len(stale))
        self._link.write(f"{self.settings.address}{command}\r".encode("ascii"))

    def _retrying(self, command: str, retries: int, read: Callable[[], str]) -> str:
        with self._lock:
            attempt = 0
            while True:
                try:
                    self._send(command)
                    return read()
                except (NoReply, FramingError, ProtocolError, CrcError) as exc:
                    if attempt >= retries:
                        raise
                    attempt += 1
                    log.info(
                        "reglo.retry", device=self.device_id, command=command[:2], reason=exc.reason
                    )
                    self._settle()

    def _status_command(self, command: str, *, retries: int) -> str:
        return self._retrying(command, retries, self._read_status)

    def _data_command(self, command: str, *, retries: int) -> str:
        return self._retrying(command, retries, self._read_line)

    def _read_status(self) -> str:
        data = self._link.read_some(time.monotonic() + self.settings.reply_timeout_s)
        if not data:
            raise NoReply(f"{self.device_id}: no reply")
        # Anything arriving with or right after the status character makes it
        # untrustworthy: without a checksum, noise could look like "*".
        extra = self._link.read_some(time.monotonic() + self.settings.quiet_s)
        data += extra
        if len(data) != 1 or data[0] not in _STATUS_CHARS:
            raise ProtocolError(f"unexpected status reply {data!r}")
        return data.decode("ascii")

    def _read_line(self) -> str:
        buffer = self._link.read_until(b"\r\n", time.monotonic() + self.settings.reply_timeout_s, limit=256)
        if buffer.count(b"\r\n") != 1 or not buffer.endswith(b"\r\n"):
            raise ProtocolError("more than one line in reply")
        line = buffer[:-2]
        if not line or any(b < 0x20 or b > 0x7E for b in line):
            raise ProtocolError(f"reply is not a printable line: {line!r}")
        return line.decode("ascii")

    def _settle(self) -> None:
        self._link.drain(min(0.05, self.settings.reply_timeout_s / 4))
