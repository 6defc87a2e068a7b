"""New Era NE-1000 family: safe-mode frames, replies and number formats (pure).

Safe-mode frame, both directions::

    STX  len  payload...  CRC-hi  CRC-lo  ETX

``len`` counts the bytes after STX (itself, payload, CRC, ETX) = len(payload) + 4;
the CRC is CRC-CCITT (XModem: poly 0x1021, init 0) over the payload, big-endian.
Payload to the pump: ``<address><command><args>``; from the pump:
``<2-digit address><prompt><data>`` or ``<address>A?<alarm>``.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from decimal import Decimal

from devices.errors import OutOfRange, ProtocolError

STX = 0x02
ETX = 0x03
CR = 0x0D
MAX_PAYLOAD = 255 - 4

PROMPTS = frozenset("IWSPTUX")
ALARMS = frozenset("RSTEO")
ERRORS = frozenset({"", "NA", "OOR", "COM", "IGN"})


def crc_ccitt(payload: bytes) -> int:
    """Return the 16-bit CRC-CCITT (XModem) of ``payload``."""
    return binascii.crc_hqx(payload, 0)


def encode_frame(payload: bytes) -> bytes:
    """Return the safe-mode frame for ``payload``; raises ValueError if too long."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long for a safe-mode frame")
    return (
        bytes((STX, len(payload) + 4))
        + payload
        + crc_ccitt(payload).to_bytes(2, "big")
        + bytes((ETX,))
    )


def encode_basic(command: str) -> bytes:
    """Return a basic-mode command (used only to switch a pump into safe mode)."""
    return command.encode("ascii") + b"\r"


@dataclass(frozen=True)
class Frame:
    """A complete frame whose CRC matched."""

    payload: bytes


@dataclass(frozen=True)
class BadCrcFrame:
    """A complete, well-delimited frame whose CRC did not match."""

    payload: bytes
    received_crc: int
    computed_crc: int


@dataclass(frozen=True)
class Discarded:
    """Bytes that are not part of any frame (line noise, stray ETX, torn frames)."""

    data: bytes


Decoded = Frame | BadCrcFrame | Discarded


class FrameDecoder:
    """Incremental safe-mode frame decoder; never raises on any input bytes.

    An STX whose announced length does not end on ETX is treated as noise and the
    search resumes at the next byte, so a torn frame followed by a good one still
    yields the good one.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> bytes:
        """Bytes of a frame that has started but not finished."""
        return bytes(self._buffer)

    def reset(self) -> bytes:
        """Drop and return any partial frame."""
        dropped = bytes(self._buffer)
        self._buffer.clear()
        return dropped

    def feed(self, data: bytes) -> list[Decoded]:
        """Add ``data`` and return everything that can now be decoded, in order."""
        self._buffer.extend(data)
        out: list[Decoded] = []
        buf = self._buffer
        while buf:
            start = buf.find(STX)
            if start < 0:
                out.append(Discarded(bytes(buf)))
                buf.clear()
                break
            if start > 0:
                out.append(Discarded(bytes(buf[:start])))
                del buf[:start]
            if len(buf) < 2:
                break
            length = buf[1]
            if length < 4:
                out.append(Discarded(bytes(buf[:1])))
                del buf[:1]
                continue
            total = length + 1
            if len(buf) < total:
                # Either the frame is still arriving or this STX was noise (a torn
                # frame, a stray 0x02) and a real frame follows: take a later
                # complete frame with a matching CRC if there is one.
                later = _find_valid_frame(buf, 1)
                if later is None:
                    break
                out.append(Discarded(bytes(buf[:later])))
                del buf[:later]
                continue
            if buf[total - 1] != ETX:
                out.append(Discarded(bytes(buf[:1])))
                del buf[:1]
                continue
            payload = bytes(buf[2 : total - 3])
            received = int.from_bytes(buf[total - 3 : total - 1], "big")
            computed = crc_ccitt(payload)
            if received == computed:
                out.append(Frame(payload))
            else:
                out.append(BadCrcFrame(payload, received, computed))
            del buf[:total]
        return out


def _find_valid_frame(buf: bytearray, start: int) -> int | None:
    """Return the index of the first complete CRC-valid frame at or after ``start``."""
    index = buf.find(STX, start)
    while index >= 0:
        if index + 1 < len(buf):
            length = buf[index + 1]
            end = index + length + 1
            if length >= 4 and end <= len(buf) and buf[end - 1] == ETX:
                payload = bytes(buf[index + 2 : end - 3])
                if int.from_bytes(buf[end - 3 : end - 1], "big") == crc_ccitt(payload):
                    return index
        index = buf.find(STX, index + 1)
    return None


@dataclass(frozen=True)
class Reply:
    """A parsed pump reply payload."""

    address: int
    prompt: str | None
    alarm: str | None
    error: str | None
    data: str


_REPLY = re.compile(
    r"^(?P<addr>\d{2})(?:A\?(?P<alarm>.)|(?P<prompt>[IWSPTUX]))(?P<data>.*)$", re.S | re.ASCII
)


def parse_reply(payload: bytes) -> Reply:
    """Return the parsed reply; raises ProtocolError if it is not a pump reply."""
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProtocolError("reply is not ASCII") from exc
    match = _REPLY.match(text)
    if match is None:
        raise ProtocolError(f"unrecognised reply {text!r}")
    alarm = match["alarm"]
    if alarm is not None and alarm not in ALARMS:
        raise ProtocolError(f"unknown alarm code {alarm!r}")
    data = match["data"]
    error = None
    if data.startswith("?"):
        error = data[1:]
        if error not in ERRORS:
            raise ProtocolError(f"unknown error reply {data!r}")
        data = ""
    return Reply(int(match["addr"]), match["prompt"], alarm, error, data)


def format_number(value: Decimal) -> str:
    """Return ``value`` as the pump writes numbers: at most 4 digits and a point.

    Raises OutOfRange when the value cannot be written exactly that way (never
    rounds: 123.45 ml cannot be programmed and is refused).
    """
    if value < 0 or not value.is_finite():
        raise OutOfRange("negative or non-finite number")
    # Prefer two decimals (ml at 0.01 resolution), then whatever fits exactly.
    for decimals in (2, 3, 1, 0):
        text = f"{value:.{decimals}f}"
        if Decimal(text) == value and len(text.replace(".", "")) <= 4:
            return text
    raise OutOfRange(f"{value} cannot be written with 4 digits")


_VOLUME = re.compile(r"^(\d{1,5}(?:\.\d{1,4})?|\.\d{1,4})(ML|UL)$", re.ASCII)


def parse_volume(data: str) -> Decimal:
    """Return millilitres from a volume reply such as ``5.000ML`` or ``500.0UL``.

    Raises ProtocolError on anything else.
    """
    match = _VOLUME.match(data)
    if match is None:
        raise ProtocolError(f"not a volume: {data!r}")
    number = Decimal(match[1])
    return number / 1000 if match[2] == "UL" else number


_DISPENSED = re.compile(r"^I(\d{0,5}\.?\d{0,4})W(\d{0,5}\.?\d{0,4})(ML|UL)$", re.ASCII)


def parse_dispensed(data: str) -> tuple[Decimal, Decimal]:
    """Return (infused, withdrawn) ml from a DIS reply such as ``I5.000W0.000ML``.

    Raises ProtocolError on anything else.
    """
    match = _DISPENSED.match(data)
    if match is None or match[1] in ("", ".") or match[2] in ("", "."):
        raise ProtocolError(f"not a dispensed-volume reply: {data!r}")
    infused, withdrawn = Decimal(match[1]), Decimal(match[2])
    if match[3] == "UL":
        return infused / 1000, withdrawn / 1000
    return infused, withdrawn


_RATE = re.compile(r"^(\d{1,5}(?:\.\d{1,4})?|\.\d{1,4})(MM|MH|UM|UH)$", re.ASCII)
_PER_MINUTE = {
    "MM": Decimal(1),
    "MH": Decimal(1) / 60,
    "UM": Decimal("0.001"),
    "UH": Decimal("0.001") / 60,
}


def parse_rate(data: str) -> Decimal:
    """Return ml/min from a RAT reply such as ``30.00MM``; raises ProtocolError."""
    match = _RATE.match(data)
    if match is None:
        raise ProtocolError(f"not a rate: {data!r}")
    return Decimal(match[1]) * _PER_MINUTE[match[2]]


def parse_decimal(data: str) -> Decimal:
    """Return a bare number reply (``DIA``); raises ProtocolError."""
    if not re.fullmatch(r"\d{1,5}(?:\.\d{1,4})?|\.\d{1,4}", data, re.ASCII):
        raise ProtocolError(f"not a number: {data!r}")
    return Decimal(data)
