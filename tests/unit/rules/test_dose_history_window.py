"""The dose-history window the loader reads (``RuleSet.dose_history_days`` and friends) is enough:
for random treatment histories and every shipped rule-table selection, the counter's evaluation
(decisions, missed-day count, suggested dose, flags, take-home check) and the physician's order
check from the windowed history — as ``dispensing.history`` loads it: the window, or the last day
dosed before it (``rules.windowed``) — equal those from the whole history.

The last tests show the property has teeth: with a window one day shorter than what a table's
rules read, or a loader without the last-day fallback, Hypothesis finds a history that differs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Verbosity, find, given, settings
from hypothesis import Phase as Stage
from hypothesis import strategies as st

from dispensing.rules import (
    CounterContext,
    DoseKind,
    DoseRecord,
    Lot,
    Order,
    PatientHistory,
    Phase,
    PreDoseAssessment,
    RuleSelection,
    TakeHomeRequest,
    evaluate_counter,
    evaluate_order,
    order_dose_history_days,
    windowed,
)
from dispensing.rules.tables import DOSE_HISTORY_MARGIN_DAYS

from .builders import RULES_DIR, TODAY, at, rules


def _table_ids(kind: str) -> list[str]:
    return sorted(p.stem for p in (Path(RULES_DIR) / kind).glob("*.toml"))


# Every shipped selection (core and interactions have one table each).
SELECTIONS = [
    RuleSelection(core=core, missed_dose=missed, take_home=take_home, titration_cap=cap, interactions=drugs)
    for core, missed, take_home, cap, drugs in itertools.product(
        _table_ids("core"), _table_ids("missed_dose"), _table_ids("take_home"), _table_ids("titration_cap"),
        _table_ids("interactions"))
]
LOT = Lot("L1", Decimal("10"), True)
# Hypothesis describes long generated histories (a counterexample's repr); that is only slow.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
NOW = at(TODAY, 9)


def rule_set_for(selection: RuleSelection):
    return rules(**{k: getattr(selection, k) for k in ("core", "missed_dose", "take_home", "titration_cap",
                                                         "interactions")})


# ---- random histories -----------------------------------------------------------------------------

mg = st.integers(5, 1500).map(lambda tenths: Decimal(tenths) / 10)
phases = st.sampled_from(Phase)


@st.composite
def order_chains(draw) -> tuple[Order, ...]:
    """Signed orders through phases: consecutive windows with gaps and overlaps (oldest first)."""
    start = TODAY - timedelta(days=draw(st.integers(0, 420)))
    found = []
    for _ in range(draw(st.integers(0, 8))):
        length = draw(st.integers(1, 45))
        total = draw(mg)
        parts = (total,) if draw(st.booleans()) else (total / 2, total - total / 2)
        until = None if draw(st.integers(0, 9)) == 0 else start + timedelta(days=length - 1)
        found.append(Order(draw(phases), total, parts, start, until, id=str(len(found) + 1)))
        start += timedelta(days=length + draw(st.integers(-3, 10)))
    return tuple(found)


# A block of days with one pattern: nothing taken (a gap), observed, take-home, or a mix with
# replacements, partial doses (a lower mg) and vomited doses.
blocks = st.tuples(st.integers(1, 50), st.sampled_from(["gap", "observed", "take_home", "mixed"]))


@st.composite
def dose_histories(draw) -> tuple[DoseRecord, ...]:
    day = TODAY - timedelta(days=draw(st.integers(0, 500)))
    found: list[DoseRecord] = []
    for length, pattern in draw(st.lists(blocks, max_size=12)):
        for _ in range(length):
            if pattern == "observed":
                found.append(DoseRecord(day, DoseKind.OBSERVED, Decimal(60)))
            elif pattern == "take_home":
                found.append(DoseRecord(day, DoseKind.TAKE_HOME, Decimal(60)))
            elif pattern == "mixed" and draw(st.integers(0, 3)):
                kind = draw(st.sampled_from(DoseKind))
                found.append(DoseRecord(day, kind, draw(mg), draw(st.booleans())))
                if draw(st.integers(0, 4)) == 0:  # a second administration the same day
                    found.append(DoseRecord(day, draw(st.sampled_from(DoseKind)), draw(mg), draw(st.booleans())))
            day += timedelta(days=1)
    return tuple(found)  # may run past today: take-home doses are recorded on the days they cover


assessments = st.none() | st.builds(
    PreDoseAssessment, id=st.just("a1"), assessed_at=st.just(at(TODAY, 7)), drowsy=st.booleans(),
    cows=st.none() | st.integers(0, 40))
requests = st.builds(TakeHomeRequest, first_day=st.integers(0, 3).map(lambda n: TODAY + timedelta(days=n)),
                     days=st.integers(1, 10))


@dataclass(frozen=True)
class Case:
    started: date | None
    orders: tuple[Order, ...]
    doses: tuple[DoseRecord, ...]
    commitment: bool
    assessment: PreDoseAssessment | None
    take_home: TakeHomeRequest
    proposal: Order


proposals = st.builds(
    Order, phase=phases, daily_total_mg=mg, parts=st.just(()),
    valid_from=st.integers(-30, 3).map(lambda n: TODAY + timedelta(days=n)), valid_until=st.just(None),
).map(lambda o: Order(o.phase, o.daily_total_mg, (o.daily_total_mg,), o.valid_from,
                      o.valid_from + timedelta(days=2), id="proposal"))

general_cases = st.builds(
    Case,
    started=st.none() | st.integers(0, 900).map(lambda n: TODAY - timedelta(days=n)),
    orders=order_chains(), doses=dose_histories(), commitment=st.booleans(), assessment=assessments,
    take_home=requests, proposal=proposals,
)


@st.composite
def induction_cases(draw) -> Case:
    """An induction order for day 2 or 3 signed today, possibly starting in the past, after a day
    with a dose taken (the early-increase check compares with what was taken the day before)."""
    start = TODAY - timedelta(days=draw(st.integers(-2, 40)))
    day1 = start - timedelta(days=draw(st.integers(1, 2)))
    first = Order(Phase.INDUCTION, draw(mg), (), day1, start - timedelta(days=1), id="1")
    first = Order(first.phase, first.daily_total_mg, (first.daily_total_mg,), day1, first.valid_until, id="1")
    doses = draw(dose_histories()) + (DoseRecord(start - timedelta(days=1), DoseKind.OBSERVED, draw(mg)),)
    total = draw(mg)
    proposal = Order(Phase.INDUCTION, total, (total,), start, start, id="proposal")
    return Case(day1, (first,), doses, False, draw(assessments), draw(requests), proposal)


@st.composite
def take_home_runs(draw) -> Case:
    """A run of take-home days up to yesterday or today, then a request (weekly and
    consecutive-day limits, recent missed days)."""
    case = draw(general_cases)
    last = TODAY - timedelta(days=draw(st.integers(0, 1)))
    run = tuple(DoseRecord(last - timedelta(days=n), DoseKind.TAKE_HOME, Decimal(60))
                for n in range(draw(st.integers(1, 150))))
    doses = tuple(d for d in case.doses if d.on < run[-1].on) + run
    request = TakeHomeRequest(TODAY + timedelta(days=draw(st.integers(0, 1))), draw(st.integers(1, 7)))
    return Case(case.started, case.orders, doses, case.commitment, case.assessment, request, case.proposal)


cases = st.one_of(general_cases, induction_cases(), take_home_runs())


# ---- what is compared ------------------------------------------------------------------------------


def order_in_force(orders: tuple[Order, ...]) -> Order | None:
    covering = [o for o in orders if o.covers(TODAY)]
    return covering[-1] if covering else None


def evaluations(rule_set, case: Case, doses: tuple[DoseRecord, ...], *, take_home: bool):
    history = PatientHistory(case.started, case.orders, doses, (), case.commitment)
    return evaluate_counter(rule_set, CounterContext(
        today=TODAY, now=NOW, history=history, order=order_in_force(case.orders), lot=LOT,
        assessment=case.assessment, take_home=case.take_home if take_home else None))


def counter_differs(rule_set, case: Case, days: int | None, *, take_home: bool, window=windowed) -> bool:
    full = windowed(case.doses, TODAY, None)
    return evaluations(rule_set, case, full, take_home=take_home) != evaluations(
        rule_set, case, window(case.doses, TODAY, days), take_home=take_home)


def order_check(rule_set, case: Case, doses):
    return evaluate_order(rule_set, case.proposal, PatientHistory(case.started, case.orders, doses, ()), TODAY)


# ---- the property ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases)
def test_the_windowed_history_decides_as_the_whole_history(case):
    full = windowed(case.doses, TODAY, None)
    for selection in SELECTIONS:
        rule_set = rule_set_for(selection)
        # Today's dose: the worklist, the panel, the dose authorisation.
        today_dose = windowed(case.doses, TODAY, rule_set.dose_history_days)
        assert evaluations(rule_set, case, today_dose, take_home=False) == \
            evaluations(rule_set, case, full, take_home=False), selection
        # A take-home request.
        take_home = windowed(case.doses, TODAY, rule_set.take_home_dose_history_days)
        assert evaluations(rule_set, case, take_home, take_home=True) == \
            evaluations(rule_set, case, full, take_home=True), selection
        # A physician's order check (the mg taken the day before an induction order starts).
        order_days = order_dose_history_days(rule_set, case.proposal, TODAY)
        assert order_check(rule_set, case, windowed(case.doses, TODAY, order_days)) == \
            order_check(rule_set, case, full), selection


def test_every_shipped_selection_is_covered():
    assert len(SELECTIONS) == 20  # 1 core × 2 missed-dose × 5 take-home × 2 titration-cap × 1 interactions


# ---- the property can fail ------------------------------------------------------------------------

# Generation only (a counterexample is enough; shrinking one is slow), quietly.
FIND = settings(max_examples=5000, database=None, deadline=None, phases=[Stage.generate], verbosity=Verbosity.quiet,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("take_home", ["vn-multiday", "us-2001"])
def test_a_window_one_day_short_of_the_take_home_table_is_caught(take_home):
    rule_set = rules(take_home=take_home)
    needed = rule_set.take_home.dose_history_days
    assert needed is not None and needed > 0
    assert rule_set.take_home_dose_history_days == needed + DOSE_HISTORY_MARGIN_DAYS
    found = find(cases, lambda case: counter_differs(rule_set, case, needed - 1, take_home=True), settings=FIND)
    assert counter_differs(rule_set, found, needed - 1, take_home=True)
    assert not counter_differs(rule_set, found, needed, take_home=True)  # the derived need, no margin


def test_a_consecutive_day_limit_needs_the_whole_history():
    rule_set = rules(take_home="south-australia")
    assert rule_set.take_home_dose_history_days is None
    # Any fixed window cuts a long enough run of take-home days (the old 120 days did too).
    found = find(take_home_runs(), lambda case: counter_differs(rule_set, case, 30, take_home=True), settings=FIND)
    assert counter_differs(rule_set, found, 30, take_home=True)


def test_a_loader_without_the_last_day_fallback_is_caught():
    def window_only(doses, today, days):
        return tuple(d for d in doses if today - timedelta(days=days) <= d.on <= today)

    rule_set = rules()
    found = find(cases, lambda case: counter_differs(rule_set, case, rule_set.dose_history_days, take_home=False,
                                                     window=window_only), settings=FIND)
    assert counter_differs(rule_set, found, rule_set.dose_history_days, take_home=False, window=window_only)


def test_an_order_check_without_the_days_before_a_backdated_induction_is_caught():
    rule_set = rules()

    def differs(case: Case) -> bool:
        full = windowed(case.doses, TODAY, None)
        return order_check(rule_set, case, windowed(case.doses, TODAY, rule_set.dose_history_days)) != \
            order_check(rule_set, case, full)

    found = find(induction_cases(), differs, settings=FIND)
    assert found.proposal.phase is Phase.INDUCTION and found.proposal.valid_from < TODAY
