"""Classify barcode scans: patient card, container label, medicine pack, unknown.

The same classifier serves serial scanners (``devices.scanner``) and USB
keyboard-wedge scanners typing into the counter page (the web layer calls
``classify_scan`` on the typed string).

Routing is decided before any parsing:

* an AIM symbology identifier (``]C0`` Code 128, ``]C1`` GS1-128, ``]d2`` GS1
  DataMatrix, ``]Q3`` GS1 QR, ``]E0`` EAN-13, ...) says whether the data is GS1;
* our own identifiers are a letter prefix and digits: ``P`` patient card (``P`` +
  letters/digits), ``C`` container/bottle label, ``T`` take-home label;
* only GS1 data goes to ``biip``; the GTIN check digit must be valid and lot and
  expiry must be present. Anything else is a rejection with a reason code, never a
  guess.

Keyboard wedges cannot type GS (0x1D); configure the scanner to send a visible
separator and pass it as ``separator`` (it must not be a character GS1 allows in
data, so it can never be confused with part of a lot number).
"""

from __future__ import annotations

import enum
import re
import string
from dataclasses import dataclass
from datetime import date

from biip import ParseConfig, ParseError, parse
from biip.gs1_messages import GS1Message

GS = "\x1d"

# GS1 AI encodable character set 82; a wedge separator must not be one of these.
_GS1_CSET82 = frozenset(string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_")

_AIM = re.compile(r"^\][A-Za-z][0-9A-Za-z]")

SYMBOLOGY_NAMES = {
    "]C0": "Code 128",
    "]C1": "GS1-128",
    "]E0": "EAN-13",
    "]E4": "EAN-8",
    "]e0": "GS1 DataBar",
    "]d1": "Data Matrix",
    "]d2": "GS1 DataMatrix",
    "]Q1": "QR Code",
    "]Q3": "GS1 QR Code",
    "]A0": "Code 39",
    "]I0": "Interleaved 2 of 5",
}
_GS1_SYMBOLOGIES = frozenset({"]C1", "]d2", "]Q3", "]e0", "]E0", "]E4", "]E3"})
# Symbologies our own labels may come in (we print Code 128; cards may carry QR).
_INTERNAL_SYMBOLOGIES = frozenset({"]C0", "]Q1", "]d1", "]A0"})

# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits.
_PATIENT = re.compile(r"^P[0-9A-Z]{1,19}$")
_CONTAINER = re.compile(r"^C[0-9]{1,18}$")
_TAKE_HOME = re.compile(r"^T[0-9]{1,18}$")


class ScanKind(enum.StrEnum):
    PATIENT_CARD = "PATIENT_CARD"
    CONTAINER_LABEL = "CONTAINER_LABEL"
    MEDICINE_PACK = "MEDICINE_PACK"
    UNKNOWN = "UNKNOWN"


class LabelType(enum.StrEnum):
    BOTTLE = "BOTTLE"  # C...: stock/container bottle at the counter
    TAKE_HOME = "TAKE_HOME"  # T...: take-home dose container


class ScanRejection(enum.StrEnum):
    EMPTY = "EMPTY"
    UNRECOGNISED = "UNRECOGNISED"
    INVALID_GTIN_CHECK_DIGIT = "INVALID_GTIN_CHECK_DIGIT"
    INVALID_GTIN = "INVALID_GTIN"
    GS1_PARSE_ERROR = "GS1_PARSE_ERROR"
    MISSING_GTIN = "MISSING_GTIN"
    MISSING_LOT = "MISSING_LOT"
    MISSING_EXPIRY = "MISSING_EXPIRY"
    INVALID_EXPIRY = "INVALID_EXPIRY"
    SYMBOLOGY_MISMATCH = "SYMBOLOGY_MISMATCH"


class ScanRejected(ValueError):
    """Raised by ``Scan.require_accepted`` for a rejected scan."""

    def __init__(self, scan: Scan) -> None:
        super().__init__(f"scan rejected: {scan.rejection}")
        self.scan = scan
        self.reason = str(scan.rejection)


@dataclass(frozen=True)
class Scan:
    """A classified scan. ``value`` is the data without AIM prefix, GS restored."""

    kind: ScanKind
    value: str
    symbology: str | None = None
    label_type: LabelType | None = None
    gtin: str | None = None
    lot: str | None = None
    expiry: date | None = None
    serial: str | None = None
    rejection: ScanRejection | None = None
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return self.rejection is None

    @property
    def symbology_name(self) -> str:
        if self.symbology is None:
            return "unknown (no AIM identifier)"
        return SYMBOLOGY_NAMES.get(self.symbology, self.symbology)

    def require_accepted(self) -> Scan:
        """Return self; raises ScanRejected if the scan was rejected."""
        if self.rejection is not None:
            raise ScanRejected(self)
        return self


def validate_separator(separator: str) -> str:
    """Return ``separator``; raises ValueError if GS1 data could contain it."""
    if not separator or any(ch in _GS1_CSET82 for ch in separator) or separator.isspace():
        raise ValueError("separator must be non-empty and outside the GS1 character set")
    return separator


def classify_scan(raw: str, *, separator: str | None = None) -> Scan:
    """Return the classified scan for ``raw`` as read or typed.

    ``separator`` is the visible stand-in a keyboard-wedge scanner types for GS.
    Never raises for bad scan data (the result carries ``rejection``); raises
    ValueError only for an unusable ``separator``.
    """
    if separator is not None:
        validate_separator(separator)
    text = raw.strip("\r\n\t ")
    symbology = None
    if _AIM.match(text):
        symbology, text = text[:3], text[3:]
    if separator is not None:
        text = text.replace(separator, GS)
    if not text:
        return Scan(ScanKind.UNKNOWN, "", symbology, rejection=ScanRejection.EMPTY)

    internal = _internal(text, symbology)
    if symbology in _GS1_SYMBOLOGIES:
        if internal is not None:
            return Scan(
                internal.kind,
                internal.value,
                symbology,
                label_type=internal.label_type,
                rejection=ScanRejection.SYMBOLOGY_MISMATCH,
            )
        return _pack(text, symbology)
    if internal is not None:
        return internal
    if symbology in _INTERNAL_SYMBOLOGIES:
        return Scan(ScanKind.UNKNOWN, text, symbology, rejection=ScanRejection.UNRECOGNISED)
    if _looks_gs1(text):
        return _pack(text, symbology)
    return Scan(ScanKind.UNKNOWN, text, symbology, rejection=ScanRejection.UNRECOGNISED)


def _internal(text: str, symbology: str | None) -> Scan | None:
    if not text.isascii():
        # Our codes are ASCII; folding non-ASCII case (e.g. "ſ" -> "S") would be a guess.
        return None
    # Scanners with caps lock or odd keyboard layouts type lower case; our codes
    # are upper case only, so folding ASCII case cannot change which code is meant.
    value = text.upper()
    if _PATIENT.match(value):
        return Scan(ScanKind.PATIENT_CARD, value, symbology)
    if _CONTAINER.match(value):
        return Scan(ScanKind.CONTAINER_LABEL, value, symbology, label_type=LabelType.BOTTLE)
    if _TAKE_HOME.match(value):
        return Scan(ScanKind.CONTAINER_LABEL, value, symbology, label_type=LabelType.TAKE_HOME)
    return None


def _looks_gs1(text: str) -> bool:
    """Element string starting with an AI we care about, or GS1 HRI "(01)..."."""
    return bool(re.match(r"^(\(01\)|01[0-9]{14}|[0-9]{8}$|[0-9]{12,14}$)", text))


def _pack(text: str, symbology: str | None) -> Scan:
    def reject(why: ScanRejection, detail: str | None = None, **found: object) -> Scan:
        return Scan(
            ScanKind.MEDICINE_PACK,
            text,
            symbology,
            rejection=why,
            detail=detail,
            **found,  # type: ignore[arg-type]
        )

    message: GS1Message | None
    if text.startswith("("):
        # Human-readable form "(01)...(17)...", as typed by hand or some wedges.
        try:
            message = GS1Message.parse_hri(text)
        except ParseError as exc:
            return reject(ScanRejection.GS1_PARSE_ERROR, str(exc))
    else:
        result = parse((symbology or "") + text, config=ParseConfig(separator_chars=[GS]))
        message = result.gs1_message
        if message is None:
            if result.gtin is not None:
                # A bare EAN-13/GTIN on a carton: no lot, no expiry.
                return reject(ScanRejection.MISSING_LOT, gtin=result.gtin.value)
            if (
                text.isascii()
                and text.isdigit()
                and result.gtin_error
                and "check digit" in result.gtin_error
            ):
                return reject(ScanRejection.INVALID_GTIN_CHECK_DIGIT, result.gtin_error)
            detail = result.gs1_message_error or result.gtin_error
            if detail and "date" in detail:
                return reject(ScanRejection.INVALID_EXPIRY, detail)
            if detail and "check digit" in detail:
                return reject(ScanRejection.INVALID_GTIN_CHECK_DIGIT, detail)
            return reject(ScanRejection.GS1_PARSE_ERROR, detail)

    fields: dict[str, object] = {}
    for element in message.element_strings:
        ai = element.ai.ai
        if ai in ("01", "02"):
            if element.gtin is None:
                detail = element.gtin_error or ""
                why = (
                    ScanRejection.INVALID_GTIN_CHECK_DIGIT
                    if "check digit" in detail
                    else ScanRejection.INVALID_GTIN
                )
                return reject(why, detail)
            fields["gtin"] = element.gtin.value
        elif ai == "17":
            if element.date is None:
                return reject(ScanRejection.INVALID_EXPIRY)
            fields["expiry"] = element.date
        elif ai == "10":
            fields["lot"] = element.value
        elif ai == "21":
            fields["serial"] = element.value
    if "gtin" not in fields:
        return reject(ScanRejection.MISSING_GTIN, **fields)
    if "expiry" not in fields:
        return reject(ScanRejection.MISSING_EXPIRY, **fields)
    if "lot" not in fields:
        return reject(ScanRejection.MISSING_LOT, **fields)
    return Scan(ScanKind.MEDICINE_PACK, text, symbology, **fields)  # type: ignore[arg-type]
