"""Mettler Toledo MT-SICS balance simulator, written from the MT-SICS reference.

The load on the pan is ``load_g`` plus, if given, ``mass_source()`` (e.g. the
liquid a pump simulator delivered x density), so a simulated pump can be
calibrated on a simulated balance. Knobs: reply faults from ``SimulatorBase``
(no reply, slow reply, partial line, garbage), ``unstable`` (never settles),
``settle_s`` (unstable for that long after every load change), ``unit`` (answers
in another unit), ``capacity_g``, ``vanish()``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal

from devices.clock import SYSTEM_CLOCK, Clock
from devices.simulators.base import SimulatorBase

_UNIT_FACTORS = {"g": Decimal(1), "kg": Decimal("0.001"), "mg": Decimal(1000), "ct": Decimal(5)}


class MtSicsSimulator(SimulatorBase):
    """A simulated MT-SICS balance on a pty (``.port``) or TCP (``.url``)."""

    name = "mt-sics"

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        transport: str = "pty",
        model: str = "XSR204",
        capacity_g: Decimal = Decimal("220"),
        readability_g: Decimal = Decimal("0.001"),
        serial_number: str = "B812345678",
        mass_source: Callable[[], Decimal] | None = None,
    ) -> None:
        super().__init__(clock=clock, transport=transport)
        self.model = model
        self.capacity_g = capacity_g
        self.readability_g = readability_g
        self.serial_number = serial_number
        self.mass_source = mass_source
        self.load_g = Decimal(0)
        self.zero_offset_g = Decimal(0)
        self.tare_g = Decimal(0)
        self.unit = "g"
        self.unstable = False
        self.settle_s = Decimal(0)
        self._last_gross: Decimal | None = None
        self._changed_at = Decimal(repr(clock.monotonic()))
        self._rx = bytearray()

    # -- state ---------------------------------------------------------------------------

    def gross_g(self) -> Decimal:
        with self._lock:
            extra = self.mass_source() if self.mass_source is not None else Decimal(0)
            return self.load_g + extra

    def _now(self) -> Decimal:
        return Decimal(repr(self.clock.monotonic()))

    def _track_changes(self) -> None:
        gross = self.gross_g()
        if gross != self._last_gross:
            self._last_gross = gross
            self._changed_at = self._now()

    def _stable(self) -> bool:
        self._track_changes()
        return not self.unstable and self._now() - self._changed_at >= self.settle_s

    def _tick(self) -> None:
        self._track_changes()

    def _format(self, grams: Decimal) -> str:
        value = (grams * _UNIT_FACTORS[self.unit]).quantize(
            self.readability_g, rounding=ROUND_HALF_EVEN
        )
        return f"{value:>10} {self.unit}"

    # -- receive ---------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        self._rx.extend(data)
        while b"\r\n" in self._rx:
            line, _, rest = bytes(self._rx).partition(b"\r\n")
            self._rx = bytearray(rest)
            self._execute(line.decode("ascii", errors="replace").strip())

    def _execute(self, command: str) -> None:
        if self._drops_command(command):
            return
        self.commands.append(command)
        handler = {
            "S": self._weigh_stable,
            "SI": self._weigh_immediate,
            "Z": self._zero,
            "T": self._tare,
            "I2": lambda: f'I2 A "{self.model} {self.capacity_g} g"',
            "I4": lambda: f'I4 A "{self.serial_number}"',
            "@": self._reset,
        }.get(command)
        reply = handler() if handler else "ES"
        self._reply(command, (reply + "\r\n").encode("ascii"))

    def _range_status(self) -> str | None:
        gross = self.gross_g()
        if gross > self.capacity_g:
            return "+"
        if gross - self.zero_offset_g < -self.readability_g * 10:
            return "-"
        return None

    def _net(self) -> Decimal:
        return self.gross_g() - self.zero_offset_g - self.tare_g

    def _weigh_stable(self) -> str:
        problem = self._range_status()
        if problem:
            return f"S {problem}"
        if not self._stable():
            # A real balance waits for stability, then gives up with "S I".
            return "S I"
        return f"S S {self._format(self._net())}"

    def _weigh_immediate(self) -> str:
        problem = self._range_status()
        if problem:
            return f"S {problem}"
        flag = "S" if self._stable() else "D"
        return f"S {flag} {self._format(self._net())}"

    def _zero(self) -> str:
        problem = self._range_status()
        if problem:
            return f"Z {problem}"
        if not self._stable():
            return "Z I"
        self.zero_offset_g = self.gross_g()
        self.tare_g = Decimal(0)
        return "Z A"

    def _tare(self) -> str:
        problem = self._range_status()
        if problem:
            return f"T {problem}"
        if not self._stable():
            return "T I"
        self.tare_g = self.gross_g() - self.zero_offset_g
        return f"T S {self._format(self.tare_g)}"

    def _reset(self) -> str:
        self.tare_g = Decimal(0)
        return f'I4 A "{self.serial_number}"'
