"""Ismatec Reglo ICC simulator (volume-at-rate mode), written from the manual.

Its parser reads ``<addr><cmd>[args]\\r`` itself and its number format code is its
own. Knobs: reply faults from ``SimulatorBase`` (no reply, dropped command, slow
reply, partial line, garbage), ``stop_early_at(ml)`` (overload: the pump stops by
itself), ``refuse_start`` (``H`` answers ``-``, ``xe`` says why), ``vanish_at(ml)``,
``readback_override``, ``delivery_factor`` (liquid per ml the pump believes).
"""

from __future__ import annotations

import re
from decimal import Decimal

from devices.clock import SYSTEM_CLOCK, Clock
from devices.simulators.base import SimulatorBase


def _mmmmse(value: Decimal) -> str:
    if value == 0:
        return "0000+0"
    sign, digits, exponent = value.normalize().as_tuple()
    adjusted = len(digits) + int(exponent) - 1
    mantissa = "".join(map(str, digits))[:4].ljust(4, "0")
    return f"{mantissa}{'+' if adjusted >= 0 else '-'}{abs(adjusted)}"


def _parse_mmmmse(text: str) -> Decimal | None:
    if not re.fullmatch(r"\d{4}[+-]\d", text):
        return None
    mantissa = Decimal(text[0] + "." + text[1:4])
    exponent = int(text[5]) if text[4] == "+" else -int(text[5])
    return mantissa * (Decimal(10) ** exponent)


class RegloSimulator(SimulatorBase):
    """A simulated Reglo ICC on a pty (``.port``) or TCP (``.url``)."""

    name = "reglo"

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        transport: str = "pty",
        address: int = 1,
        max_flow_ml_min: Decimal = Decimal("35"),
        max_volume_ml: Decimal = Decimal("500"),
    ) -> None:
        super().__init__(clock=clock, transport=transport)
        self.address = address
        self.max_flow_ml_min = max_flow_ml_min
        self.max_volume_ml = max_volume_ml
        self.mode = "L"
        self.flow = Decimal("10")
        self.volume = Decimal(0)
        self.running = False
        self.events_enabled = True
        self.liquid_ml = Decimal(0)
        self._run_delivered = Decimal(0)
        self._accrued_at = self._now()
        self._early_stop: Decimal | None = None
        self._vanish_at: Decimal | None = None
        self._failure: tuple[str, str] | None = None
        self._rx = bytearray()
        self.refuse_start = False
        self.readback_override: Decimal | None = None
        self.delivery_factor = Decimal(1)

    # -- knobs ----------------------------------------------------------------------------

    def stop_early_at(self, volume_ml: Decimal) -> None:
        with self._lock:
            self._early_stop = Decimal(volume_ml)

    def vanish_at(self, volume_ml: Decimal) -> None:
        with self._lock:
            self._vanish_at = Decimal(volume_ml)

    @property
    def delivered_ml(self) -> Decimal:
        with self._lock:
            self._advance(self._now())
            return self.liquid_ml

    def count(self, command: str) -> int:
        with self._lock:
            return sum(1 for c in self.commands if c == command)

    # -- time ---------------------------------------------------------------------------

    def _now(self) -> Decimal:
        return Decimal(repr(self.clock.monotonic()))

    def _advance(self, now: Decimal) -> None:
        if not self.running:
            self._accrued_at = now
            return
        rate = self.flow / 60
        stops = [(self.volume, "done")]
        if self._early_stop is not None:
            stops.append((self._early_stop, "early"))
        if self._vanish_at is not None:
            stops.append((self._vanish_at, "vanish"))
        possible = self._run_delivered + rate * (now - self._accrued_at)
        due = sorted(s for s in stops if s[0] <= possible)
        reached = due[0] if due else None
        delivered = reached[0] if reached else possible
        gained = delivered - self._run_delivered
        if gained > 0:
            self.liquid_ml += gained * self.delivery_factor
            self._run_delivered = delivered
        self._accrued_at = now
        if reached is None:
            return
        self.running = False
        if reached[1] == "early":
            self._early_stop = None
        elif reached[1] == "vanish":
            self._vanish_at = None
            self.vanish()

    def _tick(self) -> None:
        self._advance(self._now())

    # -- receive --------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        self._advance(self._now())
        self._rx.extend(data)
        while b"\r" in self._rx:
            line, _, rest = bytes(self._rx).partition(b"\r")
            self._rx = bytearray(rest)
            self._execute(line.decode("ascii", errors="replace"))
            if self.vanished:
                return

    def _execute(self, line: str) -> None:
        match = re.fullmatch(r"(\d)(xE|xe|xD|#|[A-Za-z])(.*)", line)
        if match is None:
            self._reply("?", b"#")
            return
        if int(match[1]) != self.address:
            return
        command, args = match[2], match[3]
        if self._drops_command(command):
            return
        self.commands.append(command + args)
        handler = {
            "#": self._cmd_identify,
            "xE": self._cmd_events,
            "xe": self._cmd_why,
            "O": self._cmd_volume_mode,
            "f": self._cmd_flow,
            "v": self._cmd_volume,
            "H": self._cmd_start,
            "I": self._cmd_stop,
            "E": self._cmd_running,
        }.get(command)
        reply = handler(args) if handler else b"#"
        self._reply(command, reply)

    # -- commands ---------------------------------------------------------------------------

    def _cmd_identify(self, args: str) -> bytes:
        return b"REGLO ICC 0208 404\r\n"

    def _cmd_events(self, args: str) -> bytes:
        if args == "":
            return b"1\r\n" if self.events_enabled else b"0\r\n"
        if args not in ("0", "1"):
            return b"#"
        self.events_enabled = args == "1"
        return b"*"

    def _cmd_why(self, args: str) -> bytes:
        if self._failure is None:
            return b"C 0000+0\r\n"
        cause, limit = self._failure
        return f"{cause} {limit}\r\n".encode("ascii")

    def _cmd_volume_mode(self, args: str) -> bytes:
        if self.running:
            return b"#"
        self.mode = "O"
        return b"*"

    def _cmd_flow(self, args: str) -> bytes:
        if args == "":
            return (_mmmmse(self.flow) + "\r\n").encode("ascii")
        value = _parse_mmmmse(args)
        if value is None:
            return b"#"
        self.flow = value
        return b"*"

    def _cmd_volume(self, args: str) -> bytes:
        if args == "":
            shown = self.readback_override if self.readback_override is not None else self.volume
            return (_mmmmse(shown) + "\r\n").encode("ascii")
        value = _parse_mmmmse(args)
        if value is None or self.running:
            return b"#"
        self.volume = value
        return b"*"

    def _cmd_start(self, args: str) -> bytes:
        if self.refuse_start:
            self._failure = ("R", _mmmmse(self.max_flow_ml_min))
            return b"-"
        if self.mode != "O" or self.flow <= 0 or self.flow > self.max_flow_ml_min:
            self._failure = ("R", _mmmmse(self.max_flow_ml_min))
            return b"-"
        if self.volume <= 0 or self.volume > self.max_volume_ml:
            self._failure = ("V", _mmmmse(self.max_volume_ml))
            return b"-"
        self._failure = None
        if not self.running:
            self.running = True
            self._run_delivered = Decimal(0)
            self._accrued_at = self._now()
        return b"*"

    def _cmd_stop(self, args: str) -> bytes:
        self._advance(self._now())
        self.running = False
        return b"*"

    def _cmd_running(self, args: str) -> bytes:
        self._advance(self._now())
        return b"+" if self.running else b"-"

    def _garbage(self) -> bytes:
        return b"\x00*~"
