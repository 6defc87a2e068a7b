"""NE-1000 family syringe pump simulator (safe and basic mode), written from the manual.

It deliberately shares nothing with ``devices.ne1000_codec``: its receive side is a
byte-by-byte state machine with the manual's 0.5 s inter-byte timeout, and its CRC is
computed bit by bit, so a bug in the driver's codec cannot hide behind the same bug
here.

Delivery happens in the injected clock's time: volume = rate x elapsed, computed
lazily at each command and at each tick, with events (target reached, stall, power
reset, watchdog...) applied in time order.

Fault knobs (all thread-safe, set any time):

* reply faults from ``SimulatorBase.inject`` (no reply, dropped command, slow reply,
  partial frame, garbage before STX, bad CRC) and ``mute()``;
* ``stall_at(ml)``, ``power_reset_at(ml)``, ``alarm_at(ml, code)``: alarms mid-run;
* ``short_delivery_at(ml)``: the pump stops without an alarm, counter short;
* ``stuck_at(ml)``: the plunger stops moving but the pump still says infusing;
* ``vanish_at(ml)`` / ``vanish()``: the port disappears;
* ``mute_at(ml)``: the pump stops answering mid-run (it keeps pumping);
* ``readback_override``: the pump reports a different programmed volume;
* ``overrun_ml``: the pump runs past its target by this much (over-delivery);
* ``ignore_clear``: ``CLD`` is acknowledged but the counter is not zeroed;
* ``delivery_factor``: liquid actually delivered per ml counted (for calibration);
* watchdog expiry is not a knob: stop talking to the pump for the safe-mode timeout.
"""

from __future__ import annotations

import collections
import re
from decimal import ROUND_DOWN, Decimal

from devices.clock import SYSTEM_CLOCK, Clock
from devices.simulators.base import SimulatorBase

_STX, _ETX, _CR = 0x02, 0x03, 0x0D
_INTER_BYTE_TIMEOUT = Decimal("0.5")
_COMMANDS = ("VER", "DIA", "DIR", "RAT", "VOL", "RUN", "STP", "PUR", "DIS", "CLD", "SAF")
_RATE_UNITS = {
    "MM": Decimal(1),
    "MH": Decimal(1) / 60,
    "UM": Decimal("0.001"),
    "UH": Decimal("0.001") / 60,
}


def crc16_xmodem(data: bytes) -> int:
    """CRC-CCITT, polynomial 0x1021, initial value 0, computed bit by bit."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _pump_number(text: str) -> Decimal | None:
    """The pump accepts at most 4 digits and one decimal point."""
    if not re.fullmatch(r"\d+\.?\d*|\.\d+", text):
        return None
    if len(text.replace(".", "")) > 4:
        return None
    return Decimal(text)


def _display(value: Decimal) -> str:
    """Write a value the way the pump shows it: 4 digits, truncated, never rounded up."""
    for limit, places in ((10, 3), (100, 2), (1000, 1)):
        if value < limit:
            return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN))
    return str(value.quantize(Decimal(1), rounding=ROUND_DOWN))


class Ne1000Simulator(SimulatorBase):
    """A simulated NE-1000 on a pty (``.port``) or TCP (``.url``)."""

    name = "ne1000"

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        transport: str = "pty",
        address: int = 0,
        safe_mode: bool = True,
        safe_timeout_s: int = 10,
        power_on_alarm: bool = True,
        model: str = "NE1000",
        firmware: str = "3.928",
        purge_rate_ml_min: Decimal = Decimal("60"),
    ) -> None:
        super().__init__(clock=clock, transport=transport)
        self.address = address
        self.safe_mode = safe_mode
        self.safe_timeout_s = safe_timeout_s
        self.model = model
        self.firmware = firmware
        self.purge_rate_ml_min = purge_rate_ml_min
        # Settings (kept in the pump's non-volatile memory).
        self.diameter = Decimal("26.70")
        self.direction = "INF"
        self.rate = Decimal("30")
        self.rate_units = "MM"
        self.volume = Decimal(0)
        self.volume_units = "ML"
        # Counters and state.
        self.infused = Decimal(0)
        self.withdrawn = Decimal(0)
        self.liquid_ml = Decimal(0)
        self.prompt = "S"
        self.alarm: str | None = "R" if power_on_alarm else None
        self.alarm_history: collections.deque[str] = collections.deque(maxlen=1000)
        self.watchdog_armed = False
        self._last_valid_rx = self._now()
        # Run bookkeeping.
        self._run_delivered = Decimal(0)
        self._accrued_at = self._now()
        self._stuck = False
        self._events: list[tuple[Decimal, str, str | None]] = []
        # Knobs.
        self.readback_override: Decimal | None = None
        self.overrun_ml = Decimal(0)
        self.ignore_clear = False
        self.delivery_factor = Decimal(1)
        # Receiver.
        self._rx: bytearray | None = None
        self._rx_need = 0
        self._rx_last = self._now()
        self._basic_rx = bytearray()
        self._power_on_pending = power_on_alarm

    # -- knobs --------------------------------------------------------------------------

    def stall_at(self, volume_ml: Decimal) -> None:
        """Motor stall (alarm S) when this run reaches ``volume_ml``."""
        self.alarm_at(volume_ml, "S")

    def power_reset_at(self, volume_ml: Decimal) -> None:
        """Power interruption (alarm R, counters lost) at ``volume_ml`` into the run."""
        self._add_event(volume_ml, "reset", "R")

    def alarm_at(self, volume_ml: Decimal, code: str) -> None:
        """Alarm ``code`` (S, E, O...) stopping the pump at ``volume_ml`` into the run."""
        self._add_event(volume_ml, "alarm", code)

    def short_delivery_at(self, volume_ml: Decimal) -> None:
        """Stop without an alarm at ``volume_ml`` (the counter shows the short volume)."""
        self._add_event(volume_ml, "short", None)

    def stuck_at(self, volume_ml: Decimal) -> None:
        """Stop moving at ``volume_ml`` while still reporting 'infusing'."""
        self._add_event(volume_ml, "stuck", None)

    def vanish_at(self, volume_ml: Decimal) -> None:
        """Make the port disappear at ``volume_ml`` into the run."""
        self._add_event(volume_ml, "vanish", None)

    def mute_at(self, volume_ml: Decimal) -> None:
        """Stop answering (commands still executed) from ``volume_ml`` into the run."""
        self._add_event(volume_ml, "mute", None)

    def power_cycle(self) -> None:
        """Power the pump off and on now (idle or not)."""
        with self._lock:
            self._apply_event("reset", "R")

    def _add_event(self, volume_ml: Decimal, kind: str, code: str | None) -> None:
        with self._lock:
            self._events.append((Decimal(volume_ml), kind, code))

    @property
    def delivered_ml(self) -> Decimal:
        """Liquid that actually left the pump, all time (not reset by CLD)."""
        with self._lock:
            self._advance(self._now())
            return self.liquid_ml

    @property
    def counter_ml(self) -> Decimal:
        with self._lock:
            self._advance(self._now())
            return self.infused

    @property
    def receiving(self) -> bool:
        """True while part of a safe-mode packet has arrived and the rest has not."""
        with self._lock:
            return self._rx is not None

    def count(self, mnemonic: str) -> int:
        """Return how many valid commands with this mnemonic were received."""
        with self._lock:
            return sum(1 for command in self.commands if command.startswith(mnemonic))

    # -- time ---------------------------------------------------------------------------

    def _now(self) -> Decimal:
        return Decimal(repr(self.clock.monotonic()))

    def _rate_per_s(self) -> Decimal:
        if self.prompt == "X":
            return self.purge_rate_ml_min / 60
        return self.rate * _RATE_UNITS[self.rate_units] / 60

    def _accrue(self, delivered: Decimal, at: Decimal) -> None:
        gained = delivered - self._run_delivered
        if gained > 0:
            if self.direction == "WDR" and self.prompt == "W":
                self.withdrawn += gained
            else:
                self.infused += gained
                self.liquid_ml += gained * self.delivery_factor
            self._run_delivered = delivered
        self._accrued_at = at

    def _advance(self, now: Decimal) -> None:
        while self.prompt in ("I", "X", "W"):
            rate = self._rate_per_s()
            candidates: list[tuple[Decimal, int, str, str | None, Decimal | None]] = []
            if not self._stuck:
                if self.prompt != "X" and self.volume > 0:
                    target = self._volume_ml(self.volume) + self.overrun_ml
                    candidates.append((self._time_at(target, rate), 0, "target", None, target))
                for index, (volume, kind, code) in enumerate(self._events):
                    candidates.append((self._time_at(volume, rate), 1 + index, kind, code, volume))
            if self.safe_mode and self.watchdog_armed:
                expiry = self._last_valid_rx + self.safe_timeout_s
                candidates.append((expiry, 10_000, "watchdog", "T", None))
            due = sorted(c for c in candidates if c[0] <= now)
            if not due:
                if not self._stuck:
                    self._accrue(self._run_delivered + rate * (now - self._accrued_at), now)
                self._accrued_at = now
                return
            at, _, kind, code, volume = due[0]
            if volume is not None:
                self._accrue(volume, at)
            elif not self._stuck:
                self._accrue(self._run_delivered + rate * (at - self._accrued_at), at)
            if kind not in ("target", "watchdog"):
                self._events = [e for e in self._events if not (e[0] == volume and e[1] == kind)]
            self._apply_event(kind, code)
            if self.vanished:
                return
        if (
            self.safe_mode
            and self.watchdog_armed
            and now >= self._last_valid_rx + self.safe_timeout_s
        ):
            self._apply_event("watchdog", "T")

    def _time_at(self, volume: Decimal, rate: Decimal) -> Decimal:
        remaining = max(volume - self._run_delivered, Decimal(0))
        return self._accrued_at + remaining / rate

    def _volume_ml(self, value: Decimal) -> Decimal:
        return value / 1000 if self.volume_units == "UL" else value

    def _apply_event(self, kind: str, code: str | None) -> None:
        if kind == "stuck":
            self._stuck = True
            return
        if kind == "vanish":
            self.vanish()
            return
        if kind == "mute":
            self.mute()
            return
        self.prompt = "S"
        self._stuck = False
        if kind == "reset":
            self.infused = Decimal(0)
            self.withdrawn = Decimal(0)
            self.watchdog_armed = False
            self._rx = None
            self._basic_rx.clear()
        if kind == "watchdog":
            self.watchdog_armed = False
        if code is not None:
            self._latch(code)

    def _latch(self, code: str) -> None:
        self.alarm = code
        self.alarm_history.append(code)
        if self.safe_mode:
            # Auto-alarm: sent unasked, and it does not clear the alarm.
            self._send(self._frame(f"{self.address:02d}A?{code}".encode("ascii")))

    def _tick(self) -> None:
        if self._power_on_pending:
            self._power_on_pending = False
            self.alarm_history.append("R")
            if self.safe_mode:
                self._send(self._frame(f"{self.address:02d}A?R".encode("ascii")))
        self._advance(self._now())

    # -- receive ----------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        now = self._now()
        self._advance(now)
        for byte in data:
            if self.vanished:
                return
            if self.safe_mode:
                self._safe_byte(byte, now)
            else:
                self._basic_byte(byte)

    def _safe_byte(self, byte: int, now: Decimal) -> None:
        if self._rx is not None and now - self._rx_last > _INTER_BYTE_TIMEOUT:
            self._rx = None
        self._rx_last = now
        if self._rx is None:
            if byte == _STX:
                self._rx = bytearray()
                self._rx_need = 0
            return
        if not self._rx_need:
            if byte < 4:
                self._rx = None
                self._respond_error("", "COM")
                return
            self._rx_need = byte - 1
            return
        self._rx.append(byte)
        if len(self._rx) < self._rx_need:
            return
        packet, self._rx = bytes(self._rx), None
        payload, crc, end = packet[:-3], packet[-3:-1], packet[-1]
        if end != _ETX or int.from_bytes(crc, "big") != crc16_xmodem(payload):
            self._respond_error("", "COM")
            return
        # Only a valid packet feeds the watchdog; the first one arms it.
        self._last_valid_rx = now
        self.watchdog_armed = True
        self._execute(payload)

    def _basic_byte(self, byte: int) -> None:
        if byte != _CR:
            self._basic_rx.append(byte)
            return
        raw, self._basic_rx = bytes(self._basic_rx), bytearray()
        # Basic mode strips spaces and control characters and upper-cases.
        cleaned = bytes(b for b in raw if 0x20 < b < 0x7F)
        self._execute(cleaned)

    # -- commands ------------------------------------------------------------------------

    def _execute(self, payload: bytes) -> None:
        try:
            text = payload.decode("ascii").replace(" ", "").upper()
        except UnicodeDecodeError:
            self._respond_error("", "")
            return
        match = re.fullmatch(r"(\d{0,2})([A-Z]{3})?(.*)", text)
        if match is None:
            self._respond_error("", "")
            return
        address = int(match[1]) if match[1] else self.address
        if address != self.address:
            return  # addressed to another pump on the network
        mnemonic, args = match[2] or "", match[3]
        if self._drops_command(mnemonic):
            return
        if mnemonic and mnemonic not in _COMMANDS:
            self._respond(mnemonic, "?")
            return
        if mnemonic == "" and args:
            self._respond(mnemonic, "?")
            return
        self.commands.append(mnemonic + args)
        if self.alarm is not None:
            # Reporting the alarm acknowledges it; the command itself is not run.
            code, self.alarm = self.alarm, None
            self._reply(mnemonic, self._frame_or_basic(f"{self.address:02d}A?{code}"))
            return
        handler = getattr(self, f"_cmd_{mnemonic.lower()}", None) if mnemonic else None
        data = handler(args) if handler else ""
        self._respond(mnemonic, data)

    def _idle(self) -> bool:
        return self.prompt in ("S", "P")

    def _cmd_ver(self, args: str) -> str:
        return f"{self.model}V{self.firmware}" if not args else "?"

    def _cmd_dia(self, args: str) -> str:
        if not args:
            return str(self.diameter)
        value = _pump_number(args)
        if value is None or not Decimal("0.1") <= value <= Decimal("50"):
            return "?OOR"
        if not self._idle():
            return "?NA"
        self.diameter = value
        return ""

    def _cmd_dir(self, args: str) -> str:
        if not args:
            return self.direction
        if args not in ("INF", "WDR"):
            return "?"
        self.direction = args
        return ""

    def _cmd_rat(self, args: str) -> str:
        if not args:
            return f"{self.rate}{self.rate_units}"
        match = re.fullmatch(r"([\d.]+)(MM|MH|UM|UH)?", args)
        value = _pump_number(match[1]) if match else None
        if value is None or value <= 0 or value * _RATE_UNITS[match[2] or self.rate_units] > 1000:
            return "?OOR"
        self.rate = value
        self.rate_units = match[2] or self.rate_units
        return ""

    def _cmd_vol(self, args: str) -> str:
        if not args:
            stored = self.readback_override if self.readback_override is not None else self.volume
            return f"{_display(stored)}{self.volume_units}"
        if args in ("ML", "UL"):
            self.volume_units = args
            return ""
        value = _pump_number(args)
        if value is None:
            return "?OOR"
        if not self._idle():
            return "?NA"
        self.volume = value
        return ""

    def _cmd_run(self, args: str) -> str:
        if args or self.prompt in ("I", "W", "X"):
            return "?NA"
        self.prompt = "I" if self.direction == "INF" else "W"
        self._run_delivered = Decimal(0)
        self._accrued_at = self._now()
        self._stuck = False
        return ""

    def _cmd_stp(self, args: str) -> str:
        # First STP pauses the pumping program, a second one stops it.
        self._advance(self._now())
        self.prompt = "P" if self.prompt in ("I", "W", "X") else "S"
        self._stuck = False
        return ""

    def _cmd_pur(self, args: str) -> str:
        if not self._idle():
            return "?NA"
        self.prompt = "X"
        self._run_delivered = Decimal(0)
        self._accrued_at = self._now()
        return ""

    def _cmd_dis(self, args: str) -> str:
        self._advance(self._now())
        scale = Decimal(1000) if self.volume_units == "UL" else Decimal(1)
        return f"I{_display(self.infused * scale)}W{_display(self.withdrawn * scale)}{self.volume_units}"

    def _cmd_cld(self, args: str) -> str:
        if args not in ("INF", "WDR"):
            return "?"
        if not self._idle():
            return "?NA"
        if self.ignore_clear:
            return ""
        if args == "INF":
            self.infused = Decimal(0)
        else:
            self.withdrawn = Decimal(0)
        return ""

    def _cmd_saf(self, args: str) -> str:
        if not args:
            return str(self.safe_timeout_s if self.safe_mode else 0)
        if not args.isdigit() or not 0 <= int(args) <= 255:
            return "?OOR"
        value = int(args)
        if value == 0:
            self.safe_mode = False
        else:
            self.safe_mode = True
            self.safe_timeout_s = value
        return ""

    # -- transmit ------------------------------------------------------------------------

    def _respond(self, mnemonic: str, data: str) -> None:
        self._reply(mnemonic, self._frame_or_basic(f"{self.address:02d}{self.prompt}{data}"))

    def _respond_error(self, mnemonic: str, error: str) -> None:
        self._reply(mnemonic, self._frame_or_basic(f"{self.address:02d}{self.prompt}?{error}"))

    def _frame_or_basic(self, text: str) -> bytes:
        payload = text.encode("ascii")
        if self.safe_mode:
            return self._frame(payload)
        return bytes((_STX,)) + payload + bytes((_ETX,))

    @staticmethod
    def _frame(payload: bytes) -> bytes:
        crc = crc16_xmodem(payload)
        return bytes((_STX, len(payload) + 4)) + payload + bytes((crc >> 8, crc & 0xFF, _ETX))

    def _corrupt(self, data: bytes) -> bytes:
        if len(data) < 5 or not self.safe_mode:
            return data
        corrupted = bytearray(data)
        corrupted[-2] ^= 0x5A
        return bytes(corrupted)

    def _garbage(self) -> bytes:
        # Noise including a stray STX, as a real line sometimes delivers.
        return b"\xff\x00\x02\x41noise\x03"
