"""Template filters for dates, numbers and two-language rule texts.

Dates are always dd/mm/yyyy (the clinics' convention; Babel's Vietnamese "short" format is
d/M/yy). Numbers follow the active locale: Vietnamese writes 1.234,5 and English 1,234.5.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from flask import Flask
from flask_babel import format_datetime, format_decimal, get_locale

DATE_PATTERN = "dd/MM/yyyy"
DATETIME_PATTERN = "dd/MM/yyyy HH:mm"


def date_vn(value: date | datetime | None) -> str:
    """Return ``value`` as dd/mm/yyyy ('' for None); a datetime is shown in the clinic's zone."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_datetime(value, DATE_PATTERN)
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"


def datetime_vn(value: datetime | None) -> str:
    """Return an instant as dd/mm/yyyy HH:mm in the clinic's timezone ('' for None)."""
    return "" if value is None else format_datetime(value, DATETIME_PATTERN)


def number(value: Decimal | int | float | None, places: int | None = None) -> str:
    """Return a number the locale's way: ``places`` fixed decimals, or as many as it has."""
    if value is None:
        return ""
    if places is None:
        return format_decimal(value, format="#,##0.######")
    pattern = "#,##0" + ("." + "0" * places if places else "")
    return format_decimal(value, format=pattern)


def milligrams(value: Decimal | None) -> str:
    return "" if value is None else f"{number(value)} mg"


def is_vietnamese() -> bool:
    return str(get_locale() or "vi").startswith("vi")


def rule_text(item) -> str:
    """Return the Vietnamese or English text of a rule decision, task or flag (object or dict)."""
    field = "message_vi" if is_vietnamese() else "message_en"
    if isinstance(item, dict):
        return item.get(field) or item.get("message_vi") or ""
    return getattr(item, field, None) or getattr(item, "message_vi", "")


def install_filters(app: Flask) -> None:
    app.add_template_filter(date_vn, "date_vn")
    app.add_template_filter(datetime_vn, "datetime_vn")
    app.add_template_filter(number, "number")
    app.add_template_filter(milligrams, "mg")
    app.add_template_filter(rule_text, "rule_text")
