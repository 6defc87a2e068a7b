"""Serial barcode scanner simulator: emits scans as a scanner in serial mode would.

Each scan is the AIM symbology identifier (if enabled), the data with GS as 0x1D,
and the configured terminator (CR LF by default).
"""

from __future__ import annotations

from devices.clock import SYSTEM_CLOCK, Clock
from devices.simulators.base import SimulatorBase


class ScannerSimulator(SimulatorBase):
    name = "scanner"

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        transport: str = "pty",
        aim_ids: bool = True,
        terminator: bytes = b"\r\n",
    ) -> None:
        super().__init__(clock=clock, transport=transport)
        self.aim_ids = aim_ids
        self.terminator = terminator

    def emit(self, data: str, *, symbology: str = "]C0") -> None:
        """Send one scan of ``data`` (GS as ``\\x1d``) read from a ``symbology`` code."""
        prefix = symbology if self.aim_ids else ""
        with self._lock:
            self._send((prefix + data).encode("latin-1") + self.terminator)

    def emit_raw(self, raw: bytes) -> None:
        """Send bytes as they are (noise, torn scans)."""
        with self._lock:
            self._send(raw)

    def _on_bytes(self, data: bytes) -> None:
        # Scanners in serial mode ignore what the host sends (no command set here).
        return
