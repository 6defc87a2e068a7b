"""A report as data: headings, columns, rows and totals, rendered the same way to PDF and Excel.

Legal registers and reports are Vietnamese documents, so their headings are Vietnamese text here
(not translated); figures are exact Decimals, shown with Vietnamese separators (1.234,50).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

NATIONAL_HEADER = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc")


class ColumnKind(enum.StrEnum):
    TEXT = "text"
    QUANTITY = "quantity"
    INTEGER = "integer"
    DATE = "date"
    TIME = "time"


@dataclass(frozen=True)
class Column:
    key: str
    heading: str
    kind: ColumnKind = ColumnKind.TEXT
    width: int = 12  # Excel column width (characters)


@dataclass
class ReportDocument:
    code: str  # file name stem, e.g. "so-cap-phat-2026-03-02"
    title: str
    subtitle: list[str]
    columns: list[Column]
    rows: list[dict]
    totals: dict | None = None
    totals_label: str = "Tổng cộng"
    notes: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    organisation: list[str] = field(default_factory=list)
    place_and_date: str | None = None
    landscape: bool = True
    # Figures that must agree with the ledger (kept for the API and the tests).
    summary: dict = field(default_factory=dict)


def format_quantity(value: Decimal | None) -> str:
    """Return ``value`` with '.' thousands and ',' decimals: 2 decimals, 3 when needed.

    >>> format_quantity(Decimal("12345.5"))
    '12.345,50'
    >>> format_quantity(Decimal("-0.125"))
    '-0,125'
    """
    if value is None:
        return ""
    value = Decimal(value)
    places = Decimal("0.01") if value == value.quantize(Decimal("0.01")) else Decimal("0.001")
    text = f"{value.quantize(places):,}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def format_integer(value: int | None) -> str:
    return "" if value is None else f"{value:,}".replace(",", ".")


def format_date(value: date | None) -> str:
    return "" if value is None else value.strftime("%d/%m/%Y")


def format_time(value: datetime | None, timezone: str) -> str:
    return "" if value is None else value.astimezone(ZoneInfo(timezone)).strftime("%H:%M")


def format_cell(column: Column, value) -> str:
    if value is None:
        return ""
    if column.kind is ColumnKind.QUANTITY:
        return format_quantity(value)
    if column.kind is ColumnKind.INTEGER:
        return format_integer(value)
    if column.kind is ColumnKind.DATE:
        return format_date(value)
    return str(value)


def place_and_date(place: str, day: date) -> str:
    return f"{place}, ngày {day.day:02d} tháng {day.month:02d} năm {day.year}"
