"""§11 Dosing errors (Australia 2003 §4.4): a recorded dose larger than ordered (any excess in
the first 2 weeks of treatment, more than 50 % afterwards) opens an incident: observation for at
least 4 h and a physician alert."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from dispensing.rules.decisions import Incident, observation, physician_task
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet


def check_recorded_dose(
    rule_set: RuleSet,
    *,
    ordered_mg: Decimal,
    recorded_mg: Decimal,
    given_at: datetime,
    given_on: date,
    treatment_started_on: date | None,
) -> Incident | None:
    """Return the incident to open for this administration, or None.

    ``ordered_mg`` is what the order planned for this administration (the part, or the ordered
    replacement). An unknown treatment start counts as the first two weeks.
    """
    if given_at.tzinfo is None or given_at.utcoffset() is None:
        raise ValueError("naive datetime refused: pass a timezone-aware value")
    rules = rule_set.core.dosing_errors
    excess = recorded_mg - ordered_mg
    if excess <= 0:
        return None
    early = (
        treatment_started_on is None
        or (given_on - treatment_started_on).days < rules.early_period_days
    )
    if (
        not early
        and ordered_mg > 0
        and excess * 100 <= ordered_mg * rules.excess_percent_after_early
    ):
        return None
    messages, version = rule_set.messages, rule_set.core.version
    watch = observation(
        messages,
        Reason.DOSING_ERROR_OBSERVATION,
        version,
        start_at=given_at,
        min_end_at=given_at + timedelta(minutes=rules.observation_min_minutes),
        max_end_at=None,
        min_minutes=rules.observation_min_minutes,
    )
    alert = physician_task(
        messages,
        Reason.DOSING_ERROR_PHYSICIAN_ALERT,
        version,
        given_on,
        recorded_mg=recorded_mg,
        ordered_mg=ordered_mg,
    )
    vi, en = messages.render(
        Reason.DOSING_ERROR_INCIDENT,
        {"recorded_mg": recorded_mg, "ordered_mg": ordered_mg, "excess_mg": excess},
    )
    return Incident(
        Reason.DOSING_ERROR_INCIDENT, version, ordered_mg, recorded_mg, excess, watch, alert, vi, en
    )
