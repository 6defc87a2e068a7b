"""Form pieces shared by the pages: a date field typed and shown as dd/mm/yyyy.

A browser's own date input shows the format of the PC's locale (mm/dd/yyyy on many clinic PCs);
a text field keeps dd/mm/yyyy everywhere and stays quick to type. ISO dates (yyyy-mm-dd) are
accepted too, so scripts and tests can send either.
"""

from __future__ import annotations

from datetime import date, datetime

from wtforms import DateField
from wtforms.widgets import TextInput

DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d")
DATE_PLACEHOLDER = "dd/mm/yyyy"
DATE_PATTERN = r"\d{1,2}/\d{1,2}/\d{4}|\d{4}-\d{2}-\d{2}"


def parse_day(text: str | None) -> date | None:
    """Return the date typed as dd/mm/yyyy (or yyyy-mm-dd); None when empty. Raises ValueError."""
    text = (text or "").strip()
    if not text:
        return None
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date()  # noqa: DTZ007 - a calendar date, no time
        except ValueError:
            continue
    raise ValueError(f"not a date: {text!r}")


def format_day(value: date | None) -> str:
    return "" if value is None else value.strftime(DATE_FORMATS[0])


class DayField(DateField):
    """A DateField typed as dd/mm/yyyy in a text input."""

    widget = TextInput()

    def __init__(self, label=None, validators=None, **kwargs):
        render_kw = {"placeholder": DATE_PLACEHOLDER, "inputmode": "numeric", "pattern": DATE_PATTERN,
                     "size": 10, "autocomplete": "off", **kwargs.pop("render_kw", {})}
        super().__init__(label, validators, format=list(DATE_FORMATS), render_kw=render_kw, **kwargs)
