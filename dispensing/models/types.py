"""Column types used across the model: exact quantities and timezone-aware instants."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """An aware datetime stored as UTC; naive datetimes are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass a timezone-aware value")
        value = value.astimezone(UTC)
        # SQLite has no timezone type; store naive UTC text there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ScaledDecimal(TypeDecorator):
    """A Decimal stored as an integer count of 10**-scale units (e.g. ml as microlitres).

    Exact on every database; a value with more decimal places than the scale is refused, never
    rounded silently. Sums computed in SQL come back as Decimal through the same type.
    """

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        self._factor = Decimal(10) ** scale

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("float refused for an exact quantity: use Decimal")
        scaled = Decimal(value) * self._factor
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        return int(scaled)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        # Exact: moves the decimal point of the stored integer, giving exactly ``scale`` places.
        return Decimal(int(value)).scaleb(-self.scale)

    def coerce_compared_value(self, op, value):
        return self


# ml to the microlitre, mg to the microgram, concentrations to 1/1000 mg/ml, units to 1/1000.
Millilitres = ScaledDecimal(3)
Milligrams = ScaledDecimal(3)
MgPerMl = ScaledDecimal(3)
GramsPerMl = ScaledDecimal(4)
Quantity = ScaledDecimal(3)
Factor = ScaledDecimal(6)
