"""§6 Missed doses (bỏ liều): consecutive calendar days with no dose taken, and the decision and
suggested dose of the selected missed-dose table (Australia 2003 by default, or METAPHI)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from dispensing.rules.decisions import Decision, Flag, decision, flag
from dispensing.rules.history import DoseRecord
from dispensing.rules.messages import DoseRange
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import MissedDoseBand, RuleSet, SuggestionKind
from dispensing.rules.units import floor_dose


def last_dosed_before(doses: Iterable[DoseRecord], day: date) -> date | None:
    return max((d.on for d in doses if d.on < day), default=None)


def count_missed_days(doses: Iterable[DoseRecord], today: date) -> int:
    """Return the consecutive calendar days before ``today`` on which no dose was taken.

    Any dose taken counts (observed, take-home on each day it covers, replacement, and a dose
    later vomited). 0 when a dose is recorded for today, and 0 for a patient who never took a
    dose (nothing to miss: the induction rules apply). ``doses`` must include the last dose taken.
    """
    doses = tuple(doses)
    if any(d.on == today for d in doses):
        return 0
    last = last_dosed_before(doses, today)
    return 0 if last is None else (today - last).days - 1


@dataclass(frozen=True)
class MissedDoseAssessment:
    missed_days: int
    decision: Decision | None  # None when no day was missed
    suggested: DoseRange | None  # shown to the physician
    flags: tuple[Flag, ...]


def suggested_dose(rule_set: RuleSet, band: MissedDoseBand, usual_mg: Decimal) -> DoseRange:
    """The dose a band suggests, never above the usual dose, rounded down to 0.1 mg."""
    if band.suggestion is SuggestionKind.USUAL:
        return DoseRange(usual_mg, usual_mg)
    if band.suggestion is SuggestionKind.INDUCTION:
        induction = rule_set.core.induction
        return DoseRange(
            min(induction.first_dose_min_mg, usual_mg), min(induction.first_dose_max_mg, usual_mg)
        )
    assert band.percent is not None
    mg = usual_mg * band.percent / 100
    if band.cap_mg is not None:
        mg = min(mg, band.cap_mg)
    if band.floor_mg is not None:
        mg = max(mg, band.floor_mg)
    mg = floor_dose(rule_set, min(mg, usual_mg))
    return DoseRange(mg, mg)


def assess_missed_doses(
    rule_set: RuleSet, doses: Iterable[DoseRecord], today: date, usual_mg: Decimal
) -> MissedDoseAssessment:
    """Count the missed days and apply the selected table. The decision's subject names the
    absence (the last dose before it), so a physician's review lifts only that absence."""
    doses = tuple(doses)
    missed = count_missed_days(doses, today)
    table = rule_set.missed_dose
    band = table.band_for(missed) if missed > 0 else None
    if band is None:
        return MissedDoseAssessment(missed, None, None, ())
    last = last_dosed_before(doses, today)
    subject = f"missed-after:{last.isoformat()}" if last is not None else None
    suggested = suggested_dose(rule_set, band, usual_mg)
    found = decision(
        rule_set.messages,
        band.outcome,
        band.reason,
        table.version,
        lift_role=band.lift_role,
        subject=subject,
        days=missed,
        suggested=suggested,
    )
    flags: tuple[Flag, ...] = ()
    if missed >= table.interruption_review_from_days:
        flags = (
            flag(
                rule_set.messages,
                Reason.TREATMENT_INTERRUPTION_REVIEW,
                table.version,
                starts_on=today,
                ends_on=None,
                subject=subject,
                days=missed,
            ),
        )
    return MissedDoseAssessment(missed, found, suggested, flags)
