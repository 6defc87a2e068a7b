"""§3 Induction (dò liều): first dose range, day-1 top-up and total, no early increases, COWS
recorded before each induction dose, observation after the first dose."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from dispensing.rules.decisions import (
    Decision,
    Observation,
    Outcome,
    decision,
    is_blocked,
    observation,
)
from dispensing.rules.history import PreDoseAssessment
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet


def check_first_dose(rule_set: RuleSet, dose_mg: Decimal) -> list[Decision]:
    """First dose of an induction: > max BLOCK, caution range (25–30 mg) WARN, below range WARN."""
    rules, messages, version = rule_set.core.induction, rule_set.messages, rule_set.core.version
    if dose_mg > rules.first_dose_max_mg:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.INDUCTION_FIRST_DOSE_TOO_HIGH,
                version,
                dose_mg=dose_mg,
                max_mg=rules.first_dose_max_mg,
            )
        ]
    if dose_mg >= rules.first_dose_caution_from_mg:
        return [
            decision(
                messages,
                Outcome.WARN,
                Reason.INDUCTION_FIRST_DOSE_CAUTION,
                version,
                dose_mg=dose_mg,
                caution_mg=rules.first_dose_caution_from_mg,
                max_mg=rules.first_dose_max_mg,
            )
        ]
    if dose_mg < rules.first_dose_min_mg:
        return [
            decision(
                messages,
                Outcome.WARN,
                Reason.INDUCTION_FIRST_DOSE_BELOW_RANGE,
                version,
                dose_mg=dose_mg,
                min_mg=rules.first_dose_min_mg,
                max_mg=rules.first_dose_max_mg,
            )
        ]
    return []


def check_day1_total(rule_set: RuleSet, total_mg: Decimal) -> list[Decision]:
    """BLOCK a first induction day totalling more than the day-1 maximum (40 mg)."""
    limit = rule_set.core.induction.day1_max_total_mg
    if total_mg <= limit:
        return []
    return [
        decision(
            rule_set.messages,
            Outcome.BLOCK,
            Reason.INDUCTION_DAY1_TOTAL_EXCEEDED,
            rule_set.core.version,
            total_mg=total_mg,
            max_mg=limit,
        )
    ]


def check_early_increase(
    rule_set: RuleSet, induction_day: int, dose_mg: Decimal, previous_mg: Decimal
) -> list[Decision]:
    """WARN (written reason) on an increase on induction days 2 to ``no_increase_until_day``."""
    if (
        not 2 <= induction_day <= rule_set.core.induction.no_increase_until_day
        or dose_mg <= previous_mg
    ):
        return []
    return [
        decision(
            rule_set.messages,
            Outcome.WARN,
            Reason.INDUCTION_EARLY_INCREASE,
            rule_set.core.version,
            needs_reason=True,
            day=induction_day,
            dose_mg=dose_mg,
            previous_mg=previous_mg,
        )
    ]


def check_cows_recorded(rule_set: RuleSet, assessment: PreDoseAssessment | None) -> list[Decision]:
    """BLOCK an induction dose until the day's COWS score is recorded."""
    if assessment is not None and assessment.cows is not None:
        return []
    return [
        decision(
            rule_set.messages, Outcome.BLOCK, Reason.INDUCTION_COWS_MISSING, rule_set.core.version
        )
    ]


@dataclass(frozen=True)
class TopUpRequest:
    """A proposed day-1 top-up. ``given_today_mg``: everything taken so far on day 1."""

    first_dose_at: datetime
    requested_at: datetime
    cows: int | None
    given_today_mg: Decimal
    proposed_mg: Decimal | None = None  # None: only ask what is allowed


@dataclass(frozen=True)
class TopUpEvaluation:
    decisions: tuple[Decision, ...]
    allowed_mg: Decimal  # the largest top-up allowed now (0 when none)


def _aware(*instants: datetime) -> None:
    for instant in instants:
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError("naive datetime refused: pass a timezone-aware value")


def evaluate_top_up(rule_set: RuleSet, request: TopUpRequest) -> TopUpEvaluation:
    """Day-1 top-up: only ≥ 3 h after the first dose (window 3–4 h; later needs a reason), only
    with withdrawal recorded: +5 mg for COWS 13–24, +10 mg above 24, never past the day-1 total."""
    _aware(request.first_dose_at, request.requested_at)
    rules, messages, version = rule_set.core.induction, rule_set.messages, rule_set.core.version
    elapsed = request.requested_at - request.first_dose_at
    minutes = math.floor(elapsed.total_seconds() / 60)
    found: list[Decision] = []
    if elapsed < timedelta(minutes=rules.topup_min_minutes):
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.INDUCTION_TOPUP_TOO_EARLY,
                version,
                minutes=max(minutes, 0),
                min_minutes=rules.topup_min_minutes,
            )
        )
    elif elapsed > timedelta(minutes=rules.topup_max_minutes):
        found.append(
            decision(
                messages,
                Outcome.WARN,
                Reason.INDUCTION_TOPUP_LATE,
                version,
                needs_reason=True,
                minutes=math.ceil(elapsed.total_seconds() / 60),
                max_minutes=rules.topup_max_minutes,
            )
        )

    cows = request.cows
    if cows is None:
        found.append(
            decision(messages, Outcome.BLOCK, Reason.INDUCTION_TOPUP_NO_WITHDRAWAL_SCORE, version)
        )
        return TopUpEvaluation(tuple(found), Decimal(0))
    if cows < rules.topup_cows_min:
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.INDUCTION_TOPUP_NOT_INDICATED,
                version,
                cows=cows,
                cows_min=rules.topup_cows_min,
            )
        )
        return TopUpEvaluation(tuple(found), Decimal(0))

    by_cows = (
        rules.topup_moderate_mg if cows <= rules.topup_cows_moderate_max else rules.topup_severe_mg
    )
    remaining = max(rules.day1_max_total_mg - request.given_today_mg, Decimal(0))
    allowed = min(by_cows, remaining)
    proposed = request.proposed_mg
    if proposed is not None and proposed > by_cows:
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.INDUCTION_TOPUP_TOO_LARGE,
                version,
                dose_mg=proposed,
                allowed_mg=by_cows,
                cows=cows,
            )
        )
    found += check_day1_total(
        rule_set, request.given_today_mg + (proposed if proposed is not None else allowed)
    )
    if not is_blocked(found):
        found.append(
            decision(
                messages,
                Outcome.ALLOW,
                Reason.INDUCTION_TOPUP_ALLOWED,
                version,
                allowed_mg=allowed,
                cows=cows,
            )
        )
    if elapsed < timedelta(minutes=rules.topup_min_minutes):
        allowed = Decimal(0)
    return TopUpEvaluation(tuple(found), allowed)


def first_dose_observation(rule_set: RuleSet, given_at: datetime) -> Observation:
    """The 3–4 h observation to open after the first dose of an induction."""
    _aware(given_at)
    rules = rule_set.core.induction
    return observation(
        rule_set.messages,
        Reason.INDUCTION_OBSERVATION,
        rule_set.core.version,
        start_at=given_at,
        min_end_at=given_at + timedelta(minutes=rules.observation_min_minutes),
        max_end_at=given_at + timedelta(minutes=rules.observation_max_minutes),
        min_minutes=rules.observation_min_minutes,
        max_minutes=rules.observation_max_minutes,
    )
