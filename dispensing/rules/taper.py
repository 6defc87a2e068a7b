"""§8 Taper (giảm liều tiến tới ngừng), QĐ 3140 §IX: after ≥ 1 year (before: WARN with reason),
each step ≤ 10 % of the current dose (BLOCK), steps ≥ 14 days apart (BLOCK), slower below
20 mg/day (WARN). A taper order never raises the dose: that is titration."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from dispensing.rules.decisions import Decision, Outcome, decision
from dispensing.rules.history import DoseChange
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet
from dispensing.rules.units import round_to


def check_taper_step(
    rule_set: RuleSet, earlier: Sequence[DoseChange], change: DoseChange, treatment_days: int | None
) -> list[Decision]:
    """Check a reduction ``change`` of a taper order after the ``earlier`` dose changes.

    ``treatment_days``: days since the treatment start (None when unknown: treated as 0).
    """
    rules, messages, version = rule_set.core.taper, rule_set.messages, rule_set.core.version
    if change.increase:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.TAPER_PHASE_INCREASE,
                version,
                dose_mg=change.to_mg,
                previous_mg=change.from_mg,
            )
        ]
    if not change.decrease:
        return []
    found: list[Decision] = []
    days_in_treatment = treatment_days or 0
    if days_in_treatment < rules.min_treatment_days:
        found.append(
            decision(
                messages,
                Outcome.WARN,
                Reason.TAPER_BEFORE_ONE_YEAR,
                version,
                needs_reason=True,
                days=days_in_treatment,
                min_days=rules.min_treatment_days,
            )
        )
    reduction = change.from_mg - change.to_mg
    if reduction * 100 > change.from_mg * rules.max_step_percent:
        resolution = rule_set.core.units.dose_resolution_mg
        lowest = round_to(
            change.from_mg * (100 - rules.max_step_percent) / 100, resolution, ROUND_CEILING
        )
        percent = round_to(reduction * 100 / change.from_mg, Decimal("0.1"), ROUND_HALF_UP)
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.TAPER_STEP_TOO_LARGE,
                version,
                percent=percent,
                max_percent=rules.max_step_percent,
                min_mg=lowest,
            )
        )
    last = max((c.on for c in earlier if c.decrease and c.on <= change.on), default=None)
    if last is not None and (change.on - last).days < rules.min_days_between_steps:
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.TAPER_STEPS_TOO_CLOSE,
                version,
                days=(change.on - last).days,
                min_days=rules.min_days_between_steps,
                last_step_on=last,
            )
        )
    if change.to_mg < rules.slow_below_mg:
        found.append(
            decision(
                messages,
                Outcome.WARN,
                Reason.TAPER_LOW_DOSE_SLOWER,
                version,
                dose_mg=change.to_mg,
                threshold_mg=rules.slow_below_mg,
            )
        )
    return found
