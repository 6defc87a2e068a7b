"""§4 Titration and maintenance: spacing and size of increases, the rolling weekly cap (its own
table), the high-dose review and the ceiling that needs a second physician."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from dispensing.rules.decisions import Decision, Outcome, decision
from dispensing.rules.history import DoseChange, Order
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet


def check_increase(
    rule_set: RuleSet, earlier: Sequence[DoseChange], change: DoseChange, treatment_day: int | None
) -> list[Decision]:
    """For an increase ``change`` after the ``earlier`` changes: step ≤ 10 mg (BLOCK), at least
    3 days after the last increase (BLOCK), increases in the rolling window ≤ the cap of the
    titration-cap table for that day of treatment (WARN with a written reason)."""
    if not change.increase:
        return []
    rules, messages, version = rule_set.core.titration, rule_set.messages, rule_set.core.version
    found: list[Decision] = []
    step = change.to_mg - change.from_mg
    if step > rules.max_step_mg:
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.TITRATION_STEP_TOO_LARGE,
                version,
                step_mg=step,
                max_step_mg=rules.max_step_mg,
            )
        )
    last = max((c.on for c in earlier if c.increase and c.on <= change.on), default=None)
    if last is not None and (change.on - last).days < rules.min_days_between_increases:
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.TITRATION_INCREASE_TOO_SOON,
                version,
                days=(change.on - last).days,
                min_days=rules.min_days_between_increases,
                last_increase_on=last,
            )
        )
    caps = rule_set.titration_cap
    window_start = change.on - timedelta(days=caps.window_days - 1)
    in_window = [c for c in earlier if c.increase and window_start <= c.on <= change.on] + [change]
    total = sum((c.to_mg - c.from_mg for c in in_window), Decimal(0))
    cap = caps.cap_for(max(treatment_day or 0, 0))
    if total > cap:
        found.append(
            decision(
                messages,
                Outcome.WARN,
                Reason.TITRATION_WEEKLY_CAP_EXCEEDED,
                caps.version,
                needs_reason=True,
                increase_mg=total,
                cap_mg=cap,
                window_days=caps.window_days,
            )
        )
    return found


def check_dose_level(rule_set: RuleSet, order: Order) -> list[Decision]:
    """Every order: above 120 mg WARN (high-dose review); above the 200 mg ceiling BLOCK unless a
    second, different physician co-signed (then ALLOW, recorded)."""
    rules, messages, version = rule_set.core.titration, rule_set.messages, rule_set.core.version
    dose = order.daily_total_mg
    found: list[Decision] = []
    if dose > rules.high_dose_warn_above_mg:
        found.append(
            decision(
                messages,
                Outcome.WARN,
                Reason.HIGH_DOSE_REVIEW,
                version,
                dose_mg=dose,
                threshold_mg=rules.high_dose_warn_above_mg,
            )
        )
    if dose > rules.ceiling_mg:
        cosigned = order.cosigned_by is not None and order.cosigned_by != order.signed_by
        found.append(
            decision(
                messages,
                Outcome.ALLOW if cosigned else Outcome.BLOCK,
                Reason.DOSE_ABOVE_CEILING_COSIGNED
                if cosigned
                else Reason.DOSE_ABOVE_CEILING_COSIGN_REQUIRED,
                version,
                dose_mg=dose,
                ceiling_mg=rules.ceiling_mg,
            )
        )
    return found
