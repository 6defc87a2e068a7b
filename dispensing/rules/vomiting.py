"""§7 Vomiting after a dose: a physician may order a replacement of 25–75 % of the vomited dose
only for witnessed vomiting within 30 minutes of the dose."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from dispensing.rules.decisions import Decision, Outcome, decision
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet
from dispensing.rules.units import floor_dose, round_to


@dataclass(frozen=True)
class ReplacementRequest:
    vomited_dose_mg: Decimal
    dosed_at: datetime
    vomited_at: datetime
    witnessed: bool
    proposed_mg: Decimal | None = None  # None: only ask what is allowed
    earlier_replacements_mg: Decimal = Decimal(0)  # replacements already given for this dose


@dataclass(frozen=True)
class ReplacementEvaluation:
    decisions: tuple[Decision, ...]
    min_mg: Decimal | None  # the allowed range; None when no replacement is allowed
    max_mg: Decimal | None


def evaluate_replacement(rule_set: RuleSet, request: ReplacementRequest) -> ReplacementEvaluation:
    """≤ 30 min (inclusive) and witnessed: ALLOW a replacement in [25 %, 75 %] of the vomited dose
    (less any earlier replacement of it; above: BLOCK, below: WARN). Later: BLOCK."""
    for instant in (request.dosed_at, request.vomited_at):
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError("naive datetime refused: pass a timezone-aware value")
    rules, messages, version = rule_set.core.vomiting, rule_set.messages, rule_set.core.version
    none = ReplacementEvaluation
    if not request.witnessed:
        return none(
            (decision(messages, Outcome.BLOCK, Reason.VOMIT_NOT_WITNESSED, version),), None, None
        )
    elapsed = request.vomited_at - request.dosed_at
    if elapsed < timedelta(0):
        return none(
            (decision(messages, Outcome.BLOCK, Reason.VOMIT_TIME_INVALID, version),), None, None
        )
    if elapsed > timedelta(minutes=rules.max_minutes_after_dose):
        late = decision(
            messages,
            Outcome.BLOCK,
            Reason.VOMIT_REPLACEMENT_TOO_LATE,
            version,
            minutes=math.ceil(elapsed.total_seconds() / 60),
            max_minutes=rules.max_minutes_after_dose,
        )
        return none((late,), None, None)

    dose = request.vomited_dose_mg
    resolution = rule_set.core.units.dose_resolution_mg
    min_mg = round_to(dose * rules.min_percent / 100, resolution, ROUND_CEILING)
    max_mg = max(
        floor_dose(rule_set, dose * rules.max_percent / 100) - request.earlier_replacements_mg,
        Decimal(0),
    )
    proposed = request.proposed_mg
    if proposed is not None and proposed > max_mg:
        found = decision(
            messages,
            Outcome.BLOCK,
            Reason.VOMIT_REPLACEMENT_TOO_LARGE,
            version,
            dose_mg=proposed,
            max_mg=max_mg,
            max_percent=rules.max_percent,
        )
    elif proposed is not None and proposed < min_mg:
        found = decision(
            messages,
            Outcome.WARN,
            Reason.VOMIT_REPLACEMENT_BELOW_RANGE,
            version,
            dose_mg=proposed,
            min_mg=min_mg,
            min_percent=rules.min_percent,
        )
    else:
        found = decision(
            messages,
            Outcome.ALLOW,
            Reason.VOMIT_REPLACEMENT_ALLOWED,
            version,
            min_mg=min(min_mg, max_mg),
            max_mg=max_mg,
        )
    return ReplacementEvaluation((found,), min(min_mg, max_mg), max_mg)
