"""Instants and business dates. The business day is the calendar day in the clinic's timezone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Return the current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


def business_date(instant: datetime, tz: ZoneInfo | str) -> date:
    """Return the clinic's calendar date at ``instant``. Raises ValueError for a naive instant."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime refused: pass a timezone-aware value")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return instant.astimezone(zone).date()


def day_bounds(day: date, tz: ZoneInfo | str) -> tuple[datetime, datetime]:
    """Return the UTC instants [start, end) of the clinic's business ``day``."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)
