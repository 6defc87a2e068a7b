"""§9 Take-home (multi-day) dispensing under the clinic's selected regime table: never during
induction or titration, never when today's pre-dose check blocked, only with the signed commitment
and within the regime's limits for the patient's time in treatment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from dispensing.rules.decisions import Decision, Outcome, decision
from dispensing.rules.history import (
    DoseKind,
    Order,
    PatientHistory,
    Phase,
    dose_changes,
    dosed_days,
)
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import DAYS_PER_WEEK, RuleSet, WeekKind

NEVER_IN_PHASES = (Phase.INDUCTION, Phase.TITRATION)  # CLINICAL_RULES §9: "never"


@dataclass(frozen=True)
class TakeHomeRequest:
    """Doses to take home for ``days`` consecutive days from ``first_day``. ``booked``: the days
    after today already covered by take-home doses prepared (or being prepared) earlier; they
    count towards the weekly and consecutive-day limits like past take-home days."""

    first_day: date
    days: int
    booked: frozenset[date] = frozenset()

    @property
    def dates(self) -> list[date]:
        return [self.first_day + timedelta(days=i) for i in range(self.days)]


def evaluate_take_home(
    rule_set: RuleSet,
    request: TakeHomeRequest,
    *,
    order: Order,
    history: PatientHistory,
    today: date,
    predose_blocked: bool,
    dose_blocked: bool,
) -> list[Decision]:
    """Return BLOCKs for every reason the request is refused, or one ALLOW.

    ``predose_blocked``: today's pre-dose check found a sign (even if a physician then lifted the
    dose block, take-home stays refused). ``dose_blocked``: today's dose has an unlifted BLOCK.
    """
    table, messages, version = rule_set.take_home, rule_set.messages, rule_set.take_home.version

    def block(code: Reason, **params: object) -> Decision:
        return decision(messages, Outcome.BLOCK, code, version, **params)

    if not table.enabled:
        return [block(Reason.TAKE_HOME_DISABLED)]
    if request.days < 1 or request.first_day < today:
        return [block(Reason.TAKE_HOME_REQUEST_INVALID)]
    found: list[Decision] = []
    if order.phase in NEVER_IN_PHASES:
        found.append(block(Reason.TAKE_HOME_PHASE_NOT_ALLOWED, phase=order.phase))
    if predose_blocked:
        found.append(block(Reason.TAKE_HOME_PREDOSE_BLOCKED))
    if dose_blocked:
        found.append(block(Reason.TAKE_HOME_DOSE_BLOCKED))
    if table.requires_commitment and not history.take_home_commitment_signed:
        found.append(block(Reason.TAKE_HOME_COMMITMENT_MISSING))
    last_day = request.dates[-1]
    if order.valid_until is None or last_day > order.valid_until:
        found.append(
            block(
                Reason.TAKE_HOME_BEYOND_ORDER,
                last_day=last_day,
                valid_until=order.valid_until or order.valid_from,
            )
        )

    start = history.treatment_started_on
    treatment_days = 0 if start is None else max((today - start).days, 0)
    criteria = table.criteria
    if (
        criteria.min_days_in_treatment is not None
        and treatment_days < criteria.min_days_in_treatment
    ):
        found.append(
            block(
                Reason.TAKE_HOME_TOO_EARLY_IN_TREATMENT,
                days=treatment_days,
                min_days=criteria.min_days_in_treatment,
            )
        )
    if criteria.min_days_on_current_dose is not None:
        changes = [c for c in dose_changes((*history.orders, order), until=today)]
        since = changes[-1].on if changes else (start or order.valid_from)
        on_dose = max((today - since).days, 0)
        if on_dose < criteria.min_days_on_current_dose:
            found.append(
                block(
                    Reason.TAKE_HOME_DOSE_NOT_STABLE,
                    days=on_dose,
                    min_days=criteria.min_days_on_current_dose,
                )
            )
    if criteria.max_missed_days is not None and criteria.missed_lookback_days is not None:
        dosed = dosed_days(history.doses)
        first = today - timedelta(days=criteria.missed_lookback_days)
        if start is not None:
            first = max(first, start)
        missed = sum(
            1 for i in range((today - first).days) if first + timedelta(days=i) not in dosed
        )
        if missed > criteria.max_missed_days:
            found.append(
                block(
                    Reason.TAKE_HOME_RECENT_MISSED_DOSES,
                    missed=missed,
                    max_missed=criteria.max_missed_days,
                    lookback_days=criteria.missed_lookback_days,
                )
            )

    band = table.band_for(treatment_days)
    if band is not None:
        if request.days > band.max_supply_days:
            found.append(
                block(
                    Reason.TAKE_HOME_SUPPLY_EXCEEDS_REGIME,
                    days=request.days,
                    max_days=band.max_supply_days,
                    treatment_days=treatment_days,
                )
            )
        take_home_days = (
            {d.on for d in history.doses if d.kind is DoseKind.TAKE_HOME}
            | set(request.booked)
            | set(request.dates)
        )
        if band.max_per_week is not None:
            count = _busiest_week(take_home_days, request.dates, table.week)
            if count > band.max_per_week:
                found.append(
                    block(
                        Reason.TAKE_HOME_WEEKLY_LIMIT, count=count, max_per_week=band.max_per_week
                    )
                )
        if band.max_consecutive_days is not None:
            count = _longest_run(take_home_days, request.dates)
            if count > band.max_consecutive_days:
                found.append(
                    block(
                        Reason.TAKE_HOME_CONSECUTIVE_LIMIT,
                        count=count,
                        max_consecutive=band.max_consecutive_days,
                    )
                )
    if found:
        return found
    return [decision(messages, Outcome.ALLOW, Reason.TAKE_HOME_ALLOWED, version, days=request.days)]


def _busiest_week(take_home_days: set[date], requested: list[date], week: WeekKind) -> int:
    """The most take-home days in one week touching a requested day."""
    if week is WeekKind.CALENDAR:
        weeks = {day - timedelta(days=day.weekday()) for day in requested}
        return max(
            sum(1 for i in range(DAYS_PER_WEEK) if monday + timedelta(days=i) in take_home_days)
            for monday in weeks
        )
    starts = {day - timedelta(days=offset) for day in requested for offset in range(DAYS_PER_WEEK)}
    return max(
        sum(1 for i in range(DAYS_PER_WEEK) if first + timedelta(days=i) in take_home_days) for first in starts
    )


def _longest_run(take_home_days: set[date], requested: list[date]) -> int:
    """The longest run of consecutive take-home days through the requested ones."""
    first, last = requested[0], requested[-1]
    while first - timedelta(days=1) in take_home_days:
        first -= timedelta(days=1)
    while last + timedelta(days=1) in take_home_days:
        last += timedelta(days=1)
    return (last - first).days + 1
