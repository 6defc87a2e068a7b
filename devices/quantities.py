"""Exact quantities: millilitres and grams as ``Decimal``, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ML_STEP = Decimal("0.01")
GRAM_STEP = Decimal("0.001")
ZERO_ML = Decimal("0.00")


def as_decimal(value: object, *, what: str = "quantity") -> Decimal:
    """Return ``value`` as a finite Decimal.

    Raises ``TypeError`` for floats (binary fractions cannot hold 0.01 ml exactly)
    and booleans, ``ValueError`` for NaN, infinities and unparseable strings.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what} must be Decimal, int or str, not {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"{what} is not a number") from exc
    else:
        raise TypeError(f"{what} must be Decimal, int or str, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{what} must be finite")
    return result


def ml(value: object) -> Decimal:
    """Return ``value`` as millilitres at 0.01 ml resolution.

    Raises ``ValueError`` when the value has finer resolution than 0.01 ml: a volume
    is never rounded silently on its way to a pump.
    """
    volume = as_decimal(value, what="volume")
    quantized = volume.quantize(ML_STEP)
    if quantized != volume:
        raise ValueError("volume has more than two decimals (0.01 ml resolution)")
    return quantized


def round_ml(value: Decimal) -> Decimal:
    """Return ``value`` rounded half-up to 0.01 ml (for computed volumes)."""
    return value.quantize(ML_STEP, rounding=ROUND_HALF_UP)


def grams(value: object) -> Decimal:
    """Return ``value`` as a Decimal number of grams (resolution kept as given)."""
    return as_decimal(value, what="mass")
