"""Driver for Mettler Toledo balances speaking MT-SICS (level 0/1 subset).

9600 8N1, ASCII, commands end CR LF, one command at a time and we wait for each
reply. Only stable readings in grams count: ``stable_weight`` retries ``S`` while
the balance answers ``S I`` (no stable value yet) until a host-side deadline, and
any reply in another unit raises ``WrongUnit`` rather than being converted (a
balance set to another unit is a configuration error somebody must see).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

import structlog

from devices.clock import SYSTEM_CLOCK, Clock
from devices.errors import (
    BalanceOverload,
    BalanceUnderload,
    BalanceUnstable,
    CommandRejected,
    FramingError,
    NoReply,
    ProtocolError,
    WrongUnit,
)
from devices.interfaces import DeviceIdentity, Weighing
from devices.link import SerialLink
from devices.transcript import Transcript

log = structlog.get_logger(__name__)

_WEIGHT = re.compile(
    r"^(?P<cmd>S|T)\s+(?P<status>[SD])\s+(?P<value>-?\d+(?:\.\d+)?)\s+(?P<unit>\S+)$", re.ASCII
)
_STATUS = re.compile(r"^(?P<cmd>S|Z|T|I2|I4|@)\s+(?P<status>[AIL+\-])$", re.ASCII)
_IDENT = re.compile(r'^(?P<cmd>I2|I4)\s+A\s+"(?P<text>[^"]*)"$')
_ERRORS = {"ES": "syntax error", "ET": "transmission error", "EL": "logical error"}
# Replies that do not repeat the command's own name.
_REPLY_COMMAND = {"SI": "S", "@": "I4"}


@dataclass(frozen=True)
class MtSicsReply:
    """One parsed reply line."""

    command: str
    status: str
    value: Decimal | None = None
    unit: str | None = None
    text: str | None = None


def parse_line(line: str) -> MtSicsReply:
    """Return the parsed reply; raises CommandRejected for ES/ET/EL, ProtocolError otherwise."""
    if line in _ERRORS:
        raise CommandRejected(f"balance: {_ERRORS[line]}", code=line)
    if match := _WEIGHT.match(line):
        return MtSicsReply(match["cmd"], match["status"], Decimal(match["value"]), match["unit"])
    if match := _IDENT.match(line):
        return MtSicsReply(match["cmd"], "A", text=match["text"])
    if match := _STATUS.match(line):
        return MtSicsReply(match["cmd"], match["status"])
    raise ProtocolError(f"unrecognised balance reply {line!r}")


@dataclass(frozen=True)
class MtSicsSettings:
    baudrate: int = 9600
    reply_timeout_s: float = 2.0
    stable_timeout_s: float = 10.0
    retry_interval_s: float = 0.25
    query_retries: int = 1


class MtSicsBalance:
    """A balance on a serial link."""

    def __init__(
        self,
        link: SerialLink,
        settings: MtSicsSettings,
        *,
        device_id: str = "balance",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._link = link
        self.settings = settings
        self.device_id = device_id
        self._clock = clock
        self._lock = threading.RLock()
        self.identity: DeviceIdentity | None = None

    @classmethod
    def connect(
        cls,
        url: str,
        settings: MtSicsSettings | None = None,
        *,
        device_id: str = "balance",
        clock: Clock = SYSTEM_CLOCK,
    ) -> MtSicsBalance:
        """Return an identified balance; raises PortUnavailable or a DeviceError."""
        settings = settings or MtSicsSettings()
        link = SerialLink.open(url, name=device_id, baudrate=settings.baudrate)
        balance = cls(link, settings, device_id=device_id, clock=clock)
        try:
            balance.identity = balance.identify()
        except BaseException:
            balance.close()
            raise
        return balance

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> MtSicsBalance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recording(self, transcript: Transcript) -> contextlib.AbstractContextManager[Transcript]:
        return self._link.recording(transcript)

    # -- balance interface -------------------------------------------------------------

    def identify(self) -> DeviceIdentity:
        """Return type/capacity (``I2``) and serial number (``I4``)."""
        model = self._ident("I2")
        serial_number = self._ident("I4")
        return DeviceIdentity(model=model, serial_number=serial_number)

    def serial_number(self) -> str:
        return self._ident("I4")

    def stable_weight(self, timeout_s: float | None = None) -> Weighing:
        """Return a stable net weight in grams.

        Raises BalanceUnstable if none within ``timeout_s`` (clock seconds),
        WrongUnit, BalanceOverload or BalanceUnderload.
        """
        timeout = self.settings.stable_timeout_s if timeout_s is None else timeout_s
        deadline = self._clock.monotonic() + timeout
        while True:
            reply = self._query("S")
            if reply.command == "S" and reply.value is not None:
                if reply.status != "S":
                    raise ProtocolError("S answered with a dynamic value")
                return self._weighing(reply, stable=True)
            self._raise_for_status(reply)
            if self._clock.monotonic() >= deadline:
                raise BalanceUnstable(f"no stable reading within {timeout} s")
            self._clock.sleep(self.settings.retry_interval_s)

    def immediate_weight(self) -> Weighing:
        """Return the current net weight in grams; ``stable`` says whether it settled."""
        reply = self._query("SI")
        if reply.command == "S" and reply.value is not None:
            return self._weighing(reply, stable=reply.status == "S")
        self._raise_for_status(reply)
        raise BalanceUnstable("balance cannot give a reading now")

    def zero(self) -> None:
        """Zero the balance; raises BalanceUnstable if it never settles."""
        self._set("Z")

    def tare(self) -> Decimal:
        """Tare and return the tare weight in grams."""
        reply = self._set("T")
        assert reply.value is not None
        if reply.unit != "g":
            raise WrongUnit(f"balance tared in {reply.unit!r}, grams required")
        return reply.value

    def reset(self) -> str:
        """Reset the balance (``@``) and return its serial number."""
        reply = self._query("@")
        if reply.command != "I4" or reply.text is None:
            raise ProtocolError("unexpected reply to @")
        return reply.text

    # -- wire ------------------------------------------------------------------------------

    def _ident(self, command: str) -> str:
        reply = self._query(command)
        if reply.command != command or reply.text is None:
            raise ProtocolError(f"unexpected reply to {command}")
        return reply.text

    def _set(self, command: str) -> MtSicsReply:
        deadline = self._clock.monotonic() + self.settings.stable_timeout_s
        while True:
            reply = self._query(command)
            if reply.command == command and (reply.status == "A" or reply.value is not None):
                return reply
            self._raise_for_status(reply)
            if self._clock.monotonic() >= deadline:
                raise BalanceUnstable(f"{command} not executed: balance did not settle")
            self._clock.sleep(self.settings.retry_interval_s)

    @staticmethod
    def _raise_for_status(reply: MtSicsReply) -> None:
        """Raise for overload/underload/logic; return quietly for 'I' (try again)."""
        if reply.status == "+":
            raise BalanceOverload("balance overload", code="+")
        if reply.status == "-":
            raise BalanceUnderload("balance underload", code="-")
        if reply.status == "L":
            raise CommandRejected("balance: wrong parameter", code="L")
        if reply.status != "I":
            raise ProtocolError(f"unexpected status {reply.status!r}")

    def _weighing(self, reply: MtSicsReply, *, stable: bool) -> Weighing:
        assert reply.value is not None and reply.unit is not None
        if reply.unit != "g":
            raise WrongUnit(f"balance answered in {reply.unit!r}, grams required")
        return Weighing(grams=reply.value, stable=stable, unit="g", at=self._clock.now())

    def _query(self, command: str) -> MtSicsReply:
        with self._lock:
            attempt = 0
            while True:
                try:
                    stale = self._link.read_available()
                    if stale:
                        log.info(
                            "mtsics.stale_bytes_discarded", device=self.device_id, count=len(stale)
                        )
                    self._link.write(f"{command}\r\n".encode("ascii"))
                    reply = parse_line(self._read_line())
                    if reply.command != _REPLY_COMMAND.get(command, command):
                        raise ProtocolError(f"reply to {reply.command}, sent {command}")
                    return reply
                except CommandRejected as exc:
                    # ET: the balance got a garbled command; sending it again is safe.
                    if exc.code != "ET" or attempt >= self.settings.query_retries:
                        raise
                    attempt += 1
                except (NoReply, FramingError, ProtocolError) as exc:
                    if attempt >= self.settings.query_retries:
                        raise
                    attempt += 1
                    log.info(
                        "mtsics.retry", device=self.device_id, command=command, reason=exc.reason
                    )
                    self._settle()

    def _read_line(self) -> str:
        buffer = self._link.read_until(b"\r\n", time.monotonic() + self.settings.reply_timeout_s, limit=256)
        line, _, rest = buffer.partition(b"\r\n")
        if rest:
            raise ProtocolError("extra bytes after the reply line")
        try:
            return line.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise ProtocolError("reply is not ASCII") from exc

    def _settle(self) -> None:
        self._link.drain(min(0.05, self.settings.reply_timeout_s / 4))
