"""Serial link shared by all drivers: open by URL, read with deadlines, record bytes.

``serial.serial_for_url`` makes a device path (/dev/ttyUSB0), a pty path from a
simulator and ``socket://host:port`` go through the same code.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

try:
    import termios
except ImportError:  # pragma: no cover - Windows
    termios = None

import serial
import structlog

from devices.errors import FramingError, NoReply, PortLost, PortUnavailable, ProtocolError
from devices.transcript import Transcript

log = structlog.get_logger(__name__)

# termios.error is not an OSError; pyserial lets it through from tcdrain on a dead pty.
_PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError) + (
    (termios.error,) if termios is not None else ()
)

# Short blocking reads: a read returns as soon as one byte is there, so this only
# bounds how often we look at the deadline.
_READ_TICK_S = 0.005


class SerialLink:
    """A byte pipe to one device with deadline-bounded reads and transcripts."""

    def __init__(self, port: serial.SerialBase, *, name: str) -> None:
        self._port = port
        self.name = name
        self._recorders: list[Transcript] = []
        self._recorders_lock = threading.Lock()
        self.closed = False

    @classmethod
    def open(
        cls,
        url: str,
        *,
        name: str,
        baudrate: int = 9600,
        bytesize: int = serial.EIGHTBITS,
        parity: str = serial.PARITY_NONE,
        stopbits: float = serial.STOPBITS_ONE,
    ) -> SerialLink:
        """Return an open link to ``url``; raises PortUnavailable if it cannot open."""
        kwargs: dict[str, object] = {}
        if "://" not in url:
            # A real tty: refuse to share it with another process.
            kwargs["exclusive"] = True
        try:
            port = serial.serial_for_url(
                url,
                baudrate=baudrate,
                bytesize=bytesize,
                parity=parity,
                stopbits=stopbits,
                timeout=_READ_TICK_S,
                write_timeout=2.0,
                **kwargs,
            )
        except (*_PORT_ERRORS, ValueError) as exc:
            raise PortUnavailable(f"{name}: cannot open port: {exc}") from exc
        return cls(port, name=name)

    @contextlib.contextmanager
    def recording(self, transcript: Transcript) -> Iterator[Transcript]:
        """Record every byte sent or received into ``transcript`` inside the block."""
        with self._recorders_lock:
            self._recorders.append(transcript)
        try:
            yield transcript
        finally:
            with self._recorders_lock:
                self._recorders.remove(transcript)

    def _record(self, direction: str, data: bytes) -> None:
        with self._recorders_lock:
            recorders = list(self._recorders)
        for transcript in recorders:
            transcript.record(direction, self.name, data)  # type: ignore[arg-type]

    def write(self, data: bytes) -> None:
        """Send ``data``; raises PortLost if the port is gone."""
        self._record("tx", data)
        try:
            self._port.write(data)
            self._port.flush()
        except _PORT_ERRORS as exc:
            self.closed = True
            raise PortLost(f"{self.name}: write failed: {exc}") from exc

    def read_some(self, deadline: float) -> bytes:
        """Return the bytes that arrive before ``deadline`` (time.monotonic); may be b"".

        Returns as soon as at least one byte is there. Raises PortLost if the port
        is gone.
        """
        while True:
            try:
                first = self._port.read(1)
                if first:
                    waiting = self._port.in_waiting
                    rest = self._port.read(waiting) if waiting else b""
                    data = first + rest
                    self._record("rx", data)
                    return data
            except _PORT_ERRORS as exc:
                self.closed = True
                raise PortLost(f"{self.name}: read failed: {exc}") from exc
            if time.monotonic() >= deadline:
                return b""

    def read_until(self, terminator: bytes, deadline: float, *, limit: int) -> bytes:
        """Return the bytes read until ``terminator`` has arrived (with anything that came in the
        same read after it). Raises NoReply when nothing arrives before ``deadline``, FramingError
        when only part of a reply does, ProtocolError past ``limit`` bytes, PortLost."""
        buffer = b""
        while terminator not in buffer:
            chunk = self.read_some(deadline)
            if not chunk:
                if buffer:
                    raise FramingError("reply line incomplete")
                raise NoReply(f"{self.name}: no reply")
            buffer += chunk
            if len(buffer) > limit:
                raise ProtocolError("reply line too long")
        return buffer

    def drain(self, seconds: float) -> None:
        """Read and drop whatever arrives within ``seconds``: the stragglers of a failed exchange."""
        deadline = time.monotonic() + seconds
        while self.read_some(deadline):
            pass

    def read_available(self) -> bytes:
        """Return whatever is already buffered without waiting."""
        try:
            waiting = self._port.in_waiting
            data = self._port.read(waiting) if waiting else b""
        except _PORT_ERRORS as exc:
            self.closed = True
            raise PortLost(f"{self.name}: read failed: {exc}") from exc
        self._record("rx", data)
        return data

    def close(self) -> None:
        if self.closed and not self._port.is_open:
            return
        self.closed = True
        with contextlib.suppress(*_PORT_ERRORS):
            self._port.close()
