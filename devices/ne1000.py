"""Driver for New Era NE-1000 family syringe pumps in safe mode.

Safe mode gives framing with a length byte and CRC-CCITT both ways, a pump-side
watchdog (the pump stops itself and latches alarm T when the host is silent for the
safe-mode timeout) and auto-alarm packets. This driver:

* keeps the link alive with a status query at half the timeout while the pump is
  idle; during a run the dispense routine's own polling is the heartbeat, so a hung
  host really does stop the pump;
* retries queries and idempotent settings after a lost or corrupt reply, but sends
  RUN and PUR exactly once;
* refuses any volume above its own hard ceiling before a byte is sent, and any
  number the pump cannot represent exactly (never rounds).
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import structlog

from devices.clock import SYSTEM_CLOCK, Clock
from devices.errors import (
    CommandRejected,
    CrcError,
    DeviceError,
    FramingError,
    NoReply,
    OutOfRange,
    ProtocolError,
    PumpAlarm,
    VolumeCeilingExceeded,
)
from devices.interfaces import DeviceIdentity, PumpState, PumpStatus
from devices.link import SerialLink
from devices.ne1000_codec import (
    BadCrcFrame,
    Decoded,
    Discarded,
    Frame,
    FrameDecoder,
    Reply,
    encode_basic,
    encode_frame,
    format_number,
    parse_decimal,
    parse_dispensed,
    parse_rate,
    parse_reply,
    parse_volume,
)
from devices.quantities import ml
from devices.transcript import Transcript

log = structlog.get_logger(__name__)

_STATES = {
    "I": PumpState.RUNNING,
    "X": PumpState.PURGING,
    "S": PumpState.STOPPED,
    "P": PumpState.PAUSED,
    "T": PumpState.PAUSED,
    "U": PumpState.PAUSED,
    "W": PumpState.WITHDRAWING,
}

# Alarms that an idle pump may legitimately have latched: a power cycle, or the
# watchdog firing while nobody needed the pump. Acknowledging them is safe because
# nothing was running; any other alarm is always raised to the caller.
_IDLE_ALARMS = frozenset({"R", "T"})


def _no_data(reply: Reply) -> None:
    if reply.data:
        raise ProtocolError(f"unexpected data in reply: {reply.data!r}")


def _direction(data: str) -> str:
    if data not in ("INF", "WDR"):
        raise ProtocolError(f"not a direction: {data!r}")
    return data


def _identity(data: str) -> DeviceIdentity:
    model, _, firmware = data.partition("V")
    if not model or not firmware:
        raise ProtocolError(f"unexpected VER reply {data!r}")
    return DeviceIdentity(model=model, firmware=firmware)


T = TypeVar("T")

_MAX_IDLE_ACKS = 3


@dataclass(frozen=True)
class Ne1000Settings:
    """Per-pump settings from ``config/devices.toml``."""

    address: int = 0
    baudrate: int = 19200
    safe_mode_timeout_s: int = 10
    syringe_diameter_mm: Decimal = Decimal("26.70")
    rate_ml_min: Decimal = Decimal("30")
    max_volume_ml: Decimal = Decimal("100.00")
    reply_timeout_s: float = 1.0
    query_retries: int = 2
    heartbeat: bool = True
    poll_interval_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.address <= 99:
            raise ValueError("NE-1000 address must be 0-99")
        if not 1 <= self.safe_mode_timeout_s <= 255:
            raise ValueError("safe-mode timeout must be 1-255 s")
        if self.rate_ml_min <= 0:
            raise ValueError("rate must be positive")
        if self.max_volume_ml <= 0:
            raise ValueError("max volume must be positive")
        if self.poll_interval_s is not None and not (
            0 < self.poll_interval_s <= self.safe_mode_timeout_s / 2
        ):
            raise ValueError("poll interval must be at most half the safe-mode timeout")
        # Both must be representable on the wire; fail at configuration time.
        format_number(self.syringe_diameter_mm)
        format_number(self.rate_ml_min)


class Ne1000Pump:
    """An NE-1000 family pump on a serial link, in safe mode."""

    has_volume_counter = True

    def __init__(
        self,
        link: SerialLink,
        settings: Ne1000Settings,
        *,
        device_id: str = "pump",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._link = link
        self.settings = settings
        self.device_id = device_id
        self.max_volume_ml = settings.max_volume_ml
        self.poll_interval_s = settings.poll_interval_s or min(
            1.0, settings.safe_mode_timeout_s / 2
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._decoder = FrameDecoder()
        self._inbox: collections.deque[Decoded] = collections.deque()
        self._last_tx = clock.monotonic()
        self._run_active = False
        self._needs_configure = True
        self._closing = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        # Last alarm the pump raised outside a dispense (auto-alarm packet, or found
        # latched when idle/connecting), and whether it lost power since we connected:
        # after a power reset its counter says nothing about earlier doses.
        self.last_unsolicited_alarm: str | None = None
        self.power_reset_seen = False
        self.identity: DeviceIdentity | None = None
        # While connecting nobody has asked the pump to do anything, so whatever
        # alarm it latched since it was last used is acknowledged, not raised.
        self._connecting = False

    # -- session -----------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str,
        settings: Ne1000Settings | None = None,
        *,
        device_id: str = "pump",
        clock: Clock = SYSTEM_CLOCK,
    ) -> Ne1000Pump:
        """Return a pump in safe mode, identified and configured.

        Raises PortUnavailable if the port cannot be opened and a DeviceError if the
        pump does not answer in safe mode or refuses the settings.
        """
        settings = settings or Ne1000Settings()
        link = SerialLink.open(url, name=device_id, baudrate=settings.baudrate)
        pump = cls(link, settings, device_id=device_id, clock=clock)
        try:
            pump.start_session()
        except BaseException:
            pump.close()
            raise
        return pump

    def start_session(self) -> None:
        """Enter safe mode, identify, configure and start the idle heartbeat."""
        self._connecting = True
        try:
            self._enter_safe_mode()
        finally:
            self._connecting = False
        self.identity = self.identify()
        self.configure()
        if self.settings.heartbeat and self._heartbeat_thread is None:
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, name=f"{self.device_id}-heartbeat", daemon=True
            )
            self._heartbeat_thread.start()

    def _enter_safe_mode(self) -> None:
        timeout = self.settings.safe_mode_timeout_s
        try:
            self._command(f"SAF{timeout}", retries=0)
            return
        except (NoReply, FramingError, CrcError, ProtocolError):
            pass
        # SAF is kept in the pump's non-volatile memory, so only a freshly
        # commissioned pump is still in basic mode. A lone CR ends whatever our safe
        # frame looked like to it; then switch it over and confirm in safe mode.
        log.info("ne1000.enabling_safe_mode", device=self.device_id)
        with self._lock:
            self._link.write(b"\r")
            self._link.write(encode_basic(f"{self.settings.address:02d}SAF{timeout}"))
            self._link.drain(self.settings.reply_timeout_s)
            self._decoder.reset()
            self._inbox.clear()
        self._command(f"SAF{timeout}", retries=1)

    def configure(self) -> None:
        """Set syringe diameter, direction and rate, reading each back.

        Raises ProtocolError if a read-back differs from what was set.
        """
        diameter = self.settings.syringe_diameter_mm
        rate = self.settings.rate_ml_min
        self._set(f"DIA{format_number(diameter)}")
        readback = self._query("DIA", parse_decimal)
        if readback != diameter:
            raise ProtocolError(f"diameter read back {readback}, set {diameter}")
        self._set("DIRINF")
        direction = self._query("DIR", _direction)
        if direction != "INF":
            raise ProtocolError(f"direction read back {direction!r}")
        self._set(f"RAT{format_number(rate)}MM")
        rate_back = self._query("RAT", parse_rate)
        if rate_back != rate:
            raise ProtocolError(f"rate read back {rate_back}, set {rate}")
        self._needs_configure = False

    def close(self) -> None:
        self._closing.set()
        if (
            self._heartbeat_thread is not None
            and self._heartbeat_thread is not threading.current_thread()
        ):
            self._heartbeat_thread.join(timeout=2)
        self._link.close()

    def __enter__(self) -> Ne1000Pump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recording(self, transcript: Transcript) -> contextlib.AbstractContextManager[Transcript]:
        return self._link.recording(transcript)

    # -- pump interface ---------------------------------------------------------------

    def identify(self) -> DeviceIdentity:
        """Return model and firmware from ``VER`` (e.g. ``NE1000V3.928``)."""
        return self._query("VER", _identity)

    def clear_counter(self) -> None:
        """Zero the infused-volume counter (``CLD INF``)."""
        self._set("CLDINF")

    def prepare(self, volume_ml: Decimal) -> Decimal:
        """Program ``volume_ml`` (``VOL ML``, ``VOL x``) and return the read-back.

        Raises VolumeCeilingExceeded above the driver's ceiling and OutOfRange for
        volumes the pump cannot represent, both before anything is sent.
        """
        volume = ml(volume_ml)
        if volume <= 0:
            raise OutOfRange("volume must be positive")
        if volume > self.max_volume_ml:
            raise VolumeCeilingExceeded(
                f"{volume} ml is above the pump ceiling of {self.max_volume_ml} ml"
            )
        text = format_number(volume)
        self._set("VOLML")
        if self._needs_configure:
            # A power reset was seen (possibly just now, in the reply to VOL ML):
            # settings are written and read back again before any volume.
            self.configure()
            self._set("VOLML")
        self._set(f"VOL{text}")
        return self._query("VOL", parse_volume)

    def start(self) -> None:
        """Send RUN once.

        Raises PumpAlarm/CommandRejected when the pump refused (it is not running)
        and NoReply/FramingError/CrcError/PortLost when the outcome is unknown.
        """
        self._run_active = True
        try:
            self._command("RUN", retries=0, resend_after_idle_alarm=False)
        except (PumpAlarm, CommandRejected):
            self._run_active = False
            raise

    def status(self) -> PumpStatus:
        """Return state and infused counter from one ``DIS`` exchange."""
        reply = self._command(
            "DIS", retries=self.settings.query_retries, expect=lambda r: parse_dispensed(r.data)
        )
        infused, _ = parse_dispensed(reply.data)
        return PumpStatus(state=self._state(reply), dispensed_ml=infused)

    def dispensed_volume(self) -> Decimal:
        """Return the infused-volume counter in ml (``DIS``)."""
        return self.status().dispensed_ml  # type: ignore[return-value]

    def stop(self) -> None:
        """Stop pumping: STP until the pump reports stopped (a first STP may pause).

        STP is idempotent, so it is retried and re-sent after an alarm reply.
        Raises ProtocolError if the pump still does not report stopped.
        """
        for _ in range(3):
            try:
                reply = self._command("STP", retries=self.settings.query_retries)
            except PumpAlarm as alarm:
                # The alarm reply acknowledged the alarm and STP was not executed;
                # an alarm stops the pump anyway, but say STP again to be sure.
                log.warning("ne1000.alarm_on_stop", device=self.device_id, code=alarm.code)
                continue
            if reply.prompt == "S":
                self._run_active = False
                return
        raise ProtocolError("pump does not report stopped after STP")

    def prime(self, duration_s: float) -> Decimal:
        """Purge for ``duration_s`` (clock seconds) and return the volume pushed out.

        The volume comes from the pump's counter so the stock ledger can book it as
        waste. Raises DeviceError on any failure after trying to stop the pump.
        """
        self.clear_counter()
        self._run_active = True
        try:
            self._command("PUR", retries=0, resend_after_idle_alarm=False)
            deadline = self._clock.monotonic() + duration_s
            while self._clock.monotonic() < deadline:
                self._clock.sleep(min(self.poll_interval_s, deadline - self._clock.monotonic()))
                self.status()
        finally:
            with contextlib.suppress(DeviceError):
                self.stop()
        return self.dispensed_volume()

    def max_run_seconds(self, volume_ml: Decimal) -> float:
        return float(volume_ml / self.settings.rate_ml_min * 60)

    # -- wire ----------------------------------------------------------------------------

    def _set(self, command: str) -> Reply:
        """Send an idempotent setting (retried after a lost reply); expect no data."""
        return self._command(command, retries=self.settings.query_retries)

    def _query(self, command: str, parse: Callable[[str], T]) -> T:
        """Send a query and return ``parse(data)``; a wrong-shaped reply is retried."""
        reply = self._command(
            command, retries=self.settings.query_retries, expect=lambda r: parse(r.data)
        )
        return parse(reply.data)

    def _command(
        self,
        command: str,
        *,
        retries: int,
        resend_after_idle_alarm: bool = True,
        expect: Callable[[Reply], object] | None = None,
    ) -> Reply:
        """Exchange one command; return the reply or raise the typed failure.

        ``expect`` checks the reply has the shape this command calls for (raising
        ProtocolError): replies do not name their command, so a late reply to an
        earlier command is recognised by its shape and the exchange retried.
        """
        check = expect or _no_data
        with self._lock:
            attempts = 0
            acknowledged = 0
            while True:
                try:
                    reply = self._exchange(command)
                    check(reply)
                    return reply
                except PumpAlarm as alarm:
                    # The auto-alarm packet and the alarm reply may both be on their
                    # way: let the second one arrive and drop it, so it is not taken
                    # for the reply to the next command.
                    self._resync()
                    idle = not self._run_active and (alarm.code in _IDLE_ALARMS or self._connecting)
                    if alarm.code == "R":
                        self._needs_configure = True
                        self.power_reset_seen = True
                    if idle:
                        # Raised while nobody was dispensing: unsolicited, as far as
                        # the host is concerned (recovery reads this at start-up).
                        self.last_unsolicited_alarm = alarm.code
                    if idle and resend_after_idle_alarm and acknowledged < _MAX_IDLE_ACKS:
                        # The alarm reply cleared the alarm and the command was not
                        # executed; nothing was running, so sending it again is safe.
                        log.warning(
                            "ne1000.idle_alarm_acknowledged", device=self.device_id, code=alarm.code
                        )
                        acknowledged += 1
                        continue
                    raise
                except (NoReply, FramingError, CrcError, ProtocolError) as exc:
                    if attempts >= retries:
                        raise
                    attempts += 1
                    log.info(
                        "ne1000.retry",
                        device=self.device_id,
                        command=command[:3],
                        reason=exc.reason,
                    )
                    self._resync()

    def _exchange(self, command: str) -> Reply:
        self._drain()
        payload = f"{self.settings.address:02d}{command}".encode("ascii")
        self._link.write(encode_frame(payload))
        self._last_tx = self._clock.monotonic()
        frame = self._read_frame(time.monotonic() + self.settings.reply_timeout_s)
        reply = parse_reply(frame.payload)
        if reply.address != self.settings.address:
            raise ProtocolError(f"reply from address {reply.address}")
        if reply.alarm is not None:
            raise PumpAlarm(reply.alarm)
        if reply.prompt in ("S", "P"):
            # The pump says it is not moving: whatever run we started is over.
            self._run_active = False
        if reply.error is not None:
            if reply.error == "COM":
                raise CrcError("pump received a corrupted packet")
            if reply.error == "OOR":
                raise OutOfRange(f"pump: {command[:3]} out of range", code="OOR")
            raise CommandRejected(f"pump rejected {command[:3]}", code=reply.error or "?")
        return reply

    def _read_frame(self, deadline: float) -> Frame:
        while True:
            while self._inbox:
                item = self._inbox.popleft()
                if isinstance(item, Discarded):
                    log.debug("ne1000.noise", device=self.device_id, length=len(item.data))
                    continue
                if isinstance(item, BadCrcFrame):
                    raise CrcError("reply CRC mismatch")
                return item
            chunk = self._link.read_some(deadline)
            if not chunk:
                if self._decoder.pending:
                    self._decoder.reset()
                    raise FramingError("reply frame incomplete")
                raise NoReply(f"{self.device_id}: no reply")
            self._inbox.extend(self._decoder.feed(chunk))

    def _drain(self) -> None:
        """Handle what arrived while we were not waiting: auto-alarms, late replies."""
        data = self._link.read_available()
        if data:
            self._inbox.extend(self._decoder.feed(data))
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, Frame):
                try:
                    reply = parse_reply(item.payload)
                except ProtocolError:
                    continue
                if reply.alarm is not None:
                    # The alarm stays latched in the pump until a reply reports it,
                    # so the next exchange raises it; remember it for diagnostics.
                    self.last_unsolicited_alarm = reply.alarm
                    if reply.alarm == "R":
                        self._needs_configure = True
                        self.power_reset_seen = True
                    log.warning("ne1000.auto_alarm", device=self.device_id, code=reply.alarm)
                else:
                    log.info("ne1000.stale_reply_discarded", device=self.device_id)

    def _resync(self) -> None:
        """Let stragglers of a failed exchange arrive and drop them."""
        self._link.drain(min(0.05, self.settings.reply_timeout_s / 4))
        self._decoder.reset()
        self._inbox.clear()

    def _state(self, reply: Reply) -> PumpState:
        assert reply.prompt is not None
        state = _STATES[reply.prompt]
        if state is PumpState.STOPPED:
            self._run_active = False
        return state

    # -- heartbeat -------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = self.settings.safe_mode_timeout_s / 2
        tick = min(0.05, interval / 8)
        while not self._closing.wait(tick):
            if self._run_active or self._link.closed:
                continue
            if self._clock.monotonic() - self._last_tx < interval:
                continue
            if not self._lock.acquire(blocking=False):
                continue
            try:
                self._command("", retries=1)
            except DeviceError as exc:
                log.warning("ne1000.heartbeat_failed", device=self.device_id, reason=exc.reason)
            finally:
                self._lock.release()

    def heartbeat_running(self) -> bool:
        return self._heartbeat_thread is not None and self._heartbeat_thread.is_alive()
