"""Serial (or USB-CDC) barcode scanner: CR/LF-framed scans with AIM identifiers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from devices.link import SerialLink
from devices.scan import Scan, classify_scan, validate_separator

log = structlog.get_logger(__name__)

MAX_SCAN_LENGTH = 512


@dataclass(frozen=True)
class ScannerSettings:
    baudrate: int = 9600
    separator: str | None = None

    def __post_init__(self) -> None:
        if self.separator is not None:
            validate_separator(self.separator)


class SerialScanner:
    """Reads scans from a serial scanner and classifies them."""

    def __init__(
        self, link: SerialLink, settings: ScannerSettings, *, device_id: str = "scanner"
    ) -> None:
        self._link = link
        self.settings = settings
        self.device_id = device_id
        self._buffer = b""
        self._closed = False
        self._iterating = False
        # Closing a port under a thread blocked reading it breaks in pyserial
        # internals; the reading thread closes it instead.
        self._state_lock = threading.Lock()

    @classmethod
    def connect(
        cls, url: str, settings: ScannerSettings | None = None, *, device_id: str = "scanner"
    ) -> SerialScanner:
        """Return an open scanner; raises PortUnavailable."""
        settings = settings or ScannerSettings()
        return cls(
            SerialLink.open(url, name=device_id, baudrate=settings.baudrate),
            settings,
            device_id=device_id,
        )

    def read_scan(self, timeout_s: float) -> Scan | None:
        """Return the next classified scan, or None if none within ``timeout_s``.

        Raises PortLost if the scanner is unplugged.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._take_line()
            if line is not None:
                if not line:
                    continue
                # Scan contents identify patients: log the kind, never the value.
                scan = classify_scan(line.decode("latin-1"), separator=self.settings.separator)
                log.info(
                    "scanner.scan",
                    device=self.device_id,
                    kind=str(scan.kind),
                    accepted=scan.accepted,
                )
                return scan
            chunk = self._link.read_some(deadline)
            if not chunk:
                return None
            self._buffer += chunk
            if len(self._buffer) > MAX_SCAN_LENGTH and not any(c in self._buffer for c in b"\r\n"):
                log.warning("scanner.overlong_scan_discarded", device=self.device_id)
                self._buffer = b""

    def _take_line(self) -> bytes | None:
        for index, byte in enumerate(self._buffer):
            if byte in (0x0D, 0x0A):
                line, self._buffer = self._buffer[:index], self._buffer[index + 1 :]
                return line
        return None

    def scans(self) -> Iterator[Scan]:
        """Yield scans until ``close()`` is called (from any thread) or the port is lost."""
        with self._state_lock:
            self._iterating = True
        try:
            while not self._closed:
                scan = self.read_scan(0.25)
                if scan is not None:
                    yield scan
        finally:
            with self._state_lock:
                self._iterating = False
                if self._closed:
                    # close() was called while we were reading: the port is ours to close.
                    self._link.close()

    def close(self) -> None:
        """Stop ``scans()`` within a quarter second and close the port."""
        with self._state_lock:
            self._closed = True
            if self._iterating:
                return
        self._link.close()
