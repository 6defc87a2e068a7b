"""§1 Product and units: mg → ml from the lot's concentration, with explicit, recorded rounding.

volume_ml = dose_mg ÷ concentration, rounded to the device resolution with the table's rounding
mode (default ROUND_HALF_EVEN: unbiased, so rounding does not drift the daily reconciliation).
The concentration belongs to the lot; a lot without a verified concentration is never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext

from dispensing.rules.decisions import Decision, Outcome, decision
from dispensing.rules.history import Lot, Order
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet

_PRECISION = 28  # significant digits of intermediate quotients (10 mg/ml needs 4)


@dataclass(frozen=True)
class VolumeConversion:
    """How a dose in mg became a volume in ml; stored with the dose as the rounding record."""

    dose_mg: Decimal
    concentration_mg_per_ml: Decimal
    exact_ml: Decimal
    volume_ml: Decimal  # what the device delivers
    resolution_ml: Decimal
    rounding: str
    delivered_mg: Decimal  # volume_ml × concentration


@dataclass(frozen=True)
class PlannedPart:
    number: int  # 1-based, as on the order
    dose_mg: Decimal
    volume: VolumeConversion | None  # None when the lot cannot be used


@dataclass(frozen=True)
class PartsPlan:
    parts: tuple[PlannedPart, ...]
    decisions: tuple[Decision, ...]


def round_to(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    """Round ``value`` to a whole multiple of ``step`` (any positive step, e.g. 0.01 or 0.05)."""
    if step <= 0:
        raise ValueError("step must be positive")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        # quantize: keep the step's decimal places (20 → 20.00 ml for a 0.01 ml device)
        return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)


def floor_dose(rule_set: RuleSet, mg: Decimal) -> Decimal:
    """Round a computed dose (e.g. 50 % of the usual dose) down to the dose resolution."""
    return round_to(mg, rule_set.core.units.dose_resolution_mg, ROUND_FLOOR)


def dose_volume(
    rule_set: RuleSet,
    dose_mg: Decimal,
    concentration_mg_per_ml: Decimal,
    resolution_ml: Decimal | None = None,
) -> VolumeConversion:
    """Return the volume for ``dose_mg``, rounded to ``resolution_ml`` (default: the table's).

    Raises ValueError for a concentration or resolution that is not positive.
    """
    if concentration_mg_per_ml <= 0:
        raise ValueError("concentration must be positive")
    units = rule_set.core.units
    resolution = units.volume_resolution_ml if resolution_ml is None else resolution_ml
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        exact = dose_mg / concentration_mg_per_ml
    volume = round_to(exact, resolution, units.volume_rounding)
    return VolumeConversion(
        dose_mg=dose_mg,
        concentration_mg_per_ml=concentration_mg_per_ml,
        exact_ml=exact,
        volume_ml=volume,
        resolution_ml=resolution,
        rounding=units.volume_rounding,
        delivered_mg=volume_dose(volume, concentration_mg_per_ml),
    )


def volume_dose(volume_ml: Decimal, concentration_mg_per_ml: Decimal) -> Decimal:
    """Return the mg in ``volume_ml`` (exact: a product of two decimals)."""
    return volume_ml * concentration_mg_per_ml


def check_lot(rule_set: RuleSet, lot: Lot) -> list[Decision]:
    """BLOCK a lot without a verified, positive concentration."""
    if (
        lot.concentration_verified
        and lot.concentration_mg_per_ml is not None
        and lot.concentration_mg_per_ml > 0
    ):
        return []
    return [
        decision(
            rule_set.messages,
            Outcome.BLOCK,
            Reason.LOT_CONCENTRATION_UNVERIFIED,
            rule_set.core.version,
            lot=lot.code,
        )
    ]


def check_dose_resolution(rule_set: RuleSet, dose_mg: Decimal) -> list[Decision]:
    """BLOCK a dose that is not a whole multiple of the dose resolution (0.1 mg)."""
    resolution = rule_set.core.units.dose_resolution_mg
    if dose_mg % resolution == 0:
        return []
    return [
        decision(
            rule_set.messages,
            Outcome.BLOCK,
            Reason.DOSE_RESOLUTION_INVALID,
            rule_set.core.version,
            dose_mg=dose_mg,
            resolution_mg=resolution,
        )
    ]


def check_volume(rule_set: RuleSet, conversion: VolumeConversion) -> list[Decision]:
    """WARN when the device's resolution moves the delivered dose away from the ordered one."""
    deviation = abs(conversion.delivered_mg - conversion.dose_mg)
    if deviation <= rule_set.core.units.max_rounding_deviation_mg:
        return []
    return [
        decision(
            rule_set.messages,
            Outcome.WARN,
            Reason.VOLUME_ROUNDED,
            rule_set.core.version,
            dose_mg=conversion.dose_mg,
            delivered_mg=conversion.delivered_mg,
            volume_ml=conversion.volume_ml,
            resolution_ml=conversion.resolution_ml,
        )
    ]


def plan_parts(
    rule_set: RuleSet, order: Order, lot: Lot | None, resolution_ml: Decimal | None = None
) -> PartsPlan:
    """Return mg and ml for each part of ``order`` from ``lot``; volumes are None without a
    usable lot (no lot chosen yet, or a BLOCK on the lot)."""
    decisions = check_lot(rule_set, lot) if lot is not None else []
    parts = []
    for number, mg in enumerate(order.parts, start=1):
        volume = None
        if lot is not None and not decisions and lot.concentration_mg_per_ml is not None:
            volume = dose_volume(rule_set, mg, lot.concentration_mg_per_ml, resolution_ml)
        parts.append(PlannedPart(number, mg, volume))
    for part in parts:
        if part.volume is not None:
            decisions += check_volume(rule_set, part.volume)
    return PartsPlan(tuple(parts), tuple(decisions))
