"""Shared plumbing for device simulators: a pty (or TCP) endpoint served by a thread.

A simulator owns the master side of ``pty.openpty()``; the driver opens the slave
path with pyserial exactly as it would open /dev/ttyUSB0. The slave is put in raw
mode right away (a fresh pty echoes in cooked mode) and the simulator keeps its own
slave fd open so the master never sees EIO between driver sessions.

Reply faults are rules matched against the command the simulator's own parser
decoded, e.g. ``sim.inject(ReplyFault.NO_REPLY, on="RUN")``.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import heapq
import itertools
import os
import pty
import select
import socket
import threading
import time
import tty
from dataclasses import dataclass

import structlog

from devices.clock import SYSTEM_CLOCK, Clock

log = structlog.get_logger(__name__)


class ReplyFault(enum.StrEnum):
    NO_REPLY = "NO_REPLY"  # command executed, reply lost
    DROP_COMMAND = "DROP_COMMAND"  # command never arrived: not executed, no reply
    SLOW_REPLY = "SLOW_REPLY"  # reply sent after delay_s (real seconds)
    PARTIAL_FRAME = "PARTIAL_FRAME"  # only the first half of the reply is sent
    GARBAGE = "GARBAGE"  # noise bytes before the reply
    BAD_CRC = "BAD_CRC"  # reply with a corrupted checksum (framed protocols only)


@dataclass
class _FaultRule:
    fault: ReplyFault
    on: str | None
    remaining: int | None
    delay_s: float


class _Endpoint:
    """The device side of the wire."""

    url: str

    def fileno(self) -> int | None: ...
    def read(self) -> bytes | None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _PtyEndpoint(_Endpoint):
    def __init__(self) -> None:
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        self.url = os.ttyname(self._slave)
        os.set_blocking(self._master, False)

    def fileno(self) -> int | None:
        return self._master

    def read(self) -> bytes | None:
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError:
            return None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                select.select([], [self._master], [], 0.05)
                continue
            view = view[written:]

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class _TcpEndpoint(_Endpoint):
    """One client at a time on 127.0.0.1, for ``socket://`` URLs."""

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(1)
        self._server.setblocking(False)
        self._client: socket.socket | None = None
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"

    def fileno(self) -> int | None:
        return (self._client or self._server).fileno()

    def read(self) -> bytes | None:
        if self._client is None:
            with contextlib.suppress(BlockingIOError):
                self._client, _ = self._server.accept()
                self._client.setblocking(False)
            return b""
        try:
            data = self._client.recv(4096)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            # Client went away; wait for the next one.
            self._client.close()
            self._client = None
        return data

    def write(self, data: bytes) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.sendall(data)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._server.close()


class SimulatorBase:
    """A device simulator running in a background thread.

    Subclasses implement ``_on_bytes`` (their own parser) and ``_tick`` (device
    state that changes with time). Knobs are set from other threads under
    ``self._lock``.
    """

    name = "device"
    tick_s = 0.01

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, transport: str = "pty") -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._rules: list[_FaultRule] = []
        self._scheduled: list[tuple[float, int, bytes]] = []
        self._sequence = itertools.count()
        self._stop = threading.Event()
        self._endpoint: _Endpoint = _TcpEndpoint() if transport == "tcp" else _PtyEndpoint()
        self.url = self._endpoint.url
        self.port = self.url
        self.vanished = False
        # Bounded: the demo runs simulators for days.
        self.commands: collections.deque[str] = collections.deque(maxlen=10_000)
        self.errors: list[Exception] = []
        self._thread = threading.Thread(target=self._serve, name=f"sim-{self.name}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> SimulatorBase:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._endpoint.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def serving(self) -> bool:
        return self._thread.is_alive()

    def vanish(self) -> None:
        """Make the port disappear, as when a USB-serial adapter is pulled."""
        with self._lock:
            self.vanished = True
            self._stop.set()
            self._endpoint.close()

    # -- reply faults -----------------------------------------------------------------

    def inject(
        self,
        fault: ReplyFault,
        *,
        on: str | None = None,
        times: int | None = 1,
        delay_s: float = 0.0,
    ) -> None:
        """Apply ``fault`` to the next ``times`` replies to command ``on`` (None: any).

        ``times=None`` keeps the fault forever.
        """
        with self._lock:
            self._rules.append(_FaultRule(ReplyFault(fault), on, times, delay_s))

    def mute(self) -> None:
        """Stop answering anything (commands are still executed)."""
        self.inject(ReplyFault.NO_REPLY, times=None)

    def clear_faults(self) -> None:
        with self._lock:
            self._rules.clear()

    def _drops_command(self, command: str) -> bool:
        """Return True if a DROP_COMMAND rule swallows this command."""
        for rule in self._rules:
            if rule.fault is ReplyFault.DROP_COMMAND and rule.on in (None, command):
                self._take_fault_rule(rule)
                return True
        return False

    def _take_fault_rule(self, rule: _FaultRule) -> None:
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._rules.remove(rule)

    def _reply(self, command: str, data: bytes) -> None:
        """Send ``data`` as the reply to ``command``, through any matching fault."""
        rule = None
        for candidate in self._rules:
            if candidate.fault is ReplyFault.DROP_COMMAND:
                continue
            if candidate.on is None or candidate.on == command:
                rule = candidate
                break
        if rule is None:
            self._send(data)
            return
        self._take_fault_rule(rule)
        fault = rule.fault
        if fault is ReplyFault.NO_REPLY:
            return
        if fault is ReplyFault.SLOW_REPLY:
            self._send_later(data, rule.delay_s)
        elif fault is ReplyFault.PARTIAL_FRAME:
            self._send(data[: max(1, len(data) // 2)])
        elif fault is ReplyFault.GARBAGE:
            self._send(self._garbage() + data)
        elif fault is ReplyFault.BAD_CRC:
            self._send(self._corrupt(data))

    def _garbage(self) -> bytes:
        return b"\xff\x00~noise~"

    def _corrupt(self, data: bytes) -> bytes:
        raise NotImplementedError(f"{self.name} has no checksum to corrupt")

    # -- I/O ------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if not self.vanished:
            self._endpoint.write(data)

    def _send_later(self, data: bytes, delay_s: float) -> None:
        heapq.heappush(self._scheduled, (time.monotonic() + delay_s, next(self._sequence), data))

    def _serve(self) -> None:
        while not self._stop.is_set():
            fd = self._endpoint.fileno()
            try:
                readable, _, _ = select.select([fd], [], [], self.tick_s)
            except (OSError, ValueError):
                if self._stop.is_set():
                    break
                readable = []
                time.sleep(self.tick_s)
            with self._lock:
                if self.vanished:
                    break
                try:
                    if readable:
                        data = self._endpoint.read()
                        if data is None:
                            # Nobody holds the other side right now; keep serving.
                            time.sleep(self.tick_s)
                        elif data:
                            self._on_bytes(data)
                    while self._scheduled and self._scheduled[0][0] <= time.monotonic():
                        _, _, payload = heapq.heappop(self._scheduled)
                        self._send(payload)
                    self._tick()
                except Exception as exc:
                    # A long-running demo simulator must survive its own bugs; tests
                    # check ``errors`` is empty so they cannot hide there.
                    self.errors.append(exc)
                    log.exception("simulator.failed", simulator=self.name)

    # -- device behaviour ----------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def _tick(self) -> None:
        """Advance time-dependent state (delivery, watchdog); default: nothing."""
