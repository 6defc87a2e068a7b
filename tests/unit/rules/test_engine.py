"""The entry points: ``evaluate_counter`` (one patient, one day) and ``evaluate_order``."""

from __future__ import annotations

from datetime import datetime

import pytest

from dispensing.rules import (
    CounterContext,
    DoseKind,
    Lift,
    Lot,
    Outcome,
    Phase,
    Reason,
    Role,
    TakeHomeRequest,
    evaluate_counter,
    evaluate_order,
    needing_reason,
)

from .builders import (
    TODAY,
    D,
    assessment,
    at,
    codes,
    day,
    ecg,
    every_day,
    history,
    order,
    rules,
    taken,
)

M = Phase.MAINTENANCE
LOT = Lot("HT-2501", D("10"), True)
CURRENT = order(M, "90", start=day(-5), parts=["60", "30"])


def _ctx(**changes) -> CounterContext:
    values = {
        "today": TODAY,
        "now": at(TODAY, 7, 40),
        "history": history(
            started=day(-500),
            orders=[CURRENT],
            doses=every_day(day(-30), day(-1), "90"),
            ecgs=[ecg(-100)],
        ),
        "order": CURRENT,
        "lot": LOT,
        "assessment": assessment(),
    }
    values.update(changes)
    return CounterContext(**values)


def test_steady_maintenance_patient_is_allowed_with_mg_and_ml_per_part():
    evaluation = evaluate_counter(rules(), _ctx())
    assert evaluation.outcome is Outcome.ALLOW and not evaluation.blocked
    assert evaluation.decisions == ()
    assert evaluation.missed_days == 0 and evaluation.suggested is None
    assert [(p.dose_mg, p.volume.volume_ml) for p in evaluation.planned_parts] == [
        (D("60"), D("6.00")),
        (D("30"), D("3.00")),
    ]
    assert evaluation.rule_set_version == rules().version
    assert evaluation.after_dose == () and evaluation.flags == () and evaluation.ecg_due == ()


def test_three_missed_days_block_until_the_physician_reviews_that_absence():
    hist = history(
        started=day(-500), orders=[CURRENT], doses=taken(day(-4), mg="90"), ecgs=[ecg(-100)]
    )
    evaluation = evaluate_counter(rules(), _ctx(history=hist))
    assert codes(evaluation.decisions) == ["MISSED_DOSES_REVIEW"]
    assert evaluation.blocked and evaluation.missed_days == 3
    assert evaluation.suggested.max_mg == D("45")
    decision = evaluation.decisions[0]
    review = Lift(Reason.MISSED_DOSES_REVIEW, Role.PHYSICIAN, decision.subject, "order-77")
    lifted = evaluate_counter(rules(), _ctx(history=hist, lifts=(review,)))
    assert lifted.outcome is Outcome.ALLOW
    assert lifted.decisions[0].lifted_by == review


def test_thirty_missed_days_flag_the_interruption_review():
    hist = history(started=day(-500), orders=[CURRENT], doses=taken(day(-31)), ecgs=[ecg(-100)])
    evaluation = evaluate_counter(rules(), _ctx(history=hist))
    assert codes(evaluation.decisions) == ["MISSED_DOSES_RESTART_INDUCTION"]
    assert [f.code for f in evaluation.flags] == [Reason.TREATMENT_INTERRUPTION_REVIEW]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"order": None}, ["NO_ACTIVE_ORDER"], id="no-order"),
        pytest.param(
            {"today": day(25)},
            ["ORDER_EXPIRED", "MISSED_DOSES_RESTART_INDUCTION"],
            id="expired-order-after-absence",
        ),
        pytest.param(
            {"assessment": None}, ["PREDOSE_CHECK_MISSING"], id="assessment-not-yet-recorded"
        ),
        pytest.param(
            {"assessment": assessment(pinpoint_pupils=True)},
            ["PREDOSE_CHECK_POSITIVE"],
            id="pinpoint-pupils",
        ),
        pytest.param(
            {"lot": Lot("DN-9", D("10"), False)},
            ["LOT_CONCENTRATION_UNVERIFIED"],
            id="unverified-lot",
        ),
        pytest.param(
            {"device_resolution_ml": D("0.5")}, [], id="0.5ml-device-delivers-60-and-30mg-exactly"
        ),
        pytest.param(
            {
                "order": order(M, "65", start=day(-5), parts=["32.5", "32.5"]),
                "device_resolution_ml": D("0.1"),
            },
            ["VOLUME_ROUNDED", "VOLUME_ROUNDED"],
            id="0.1ml-device-cannot-deliver-32.5mg",
        ),
    ],
)
def test_counter_blocks_and_warnings(changes, expected):
    evaluation = evaluate_counter(rules(), _ctx(**changes))
    assert codes(evaluation.decisions) == expected


def test_planned_volumes_are_absent_when_the_lot_cannot_be_used():
    evaluation = evaluate_counter(rules(), _ctx(lot=Lot("DN-9", None, False)))
    assert [p.volume for p in evaluation.planned_parts] == [None, None]


def test_lifted_predose_block_still_refuses_take_home():
    lift = Lift(
        Reason.PREDOSE_CHECK_POSITIVE, Role.PHYSICIAN, "assessment:a1", "order-reduced-dose"
    )
    ctx = _ctx(
        assessment=assessment(drowsy=True),
        lifts=(lift,),
        take_home=TakeHomeRequest(day(1), 2),
    )
    evaluation = evaluate_counter(rules(take_home="us-2024"), ctx)
    assert evaluation.outcome is Outcome.ALLOW  # the physician's linked order lets today's dose go
    assert codes(evaluation.take_home) == ["TAKE_HOME_PREDOSE_BLOCKED"]


@pytest.mark.parametrize(
    ("table", "changes", "expected"),
    [
        pytest.param("disabled", {}, ["TAKE_HOME_DISABLED"], id="clinic-not-in-programme"),
        pytest.param("us-2024", {}, ["TAKE_HOME_ALLOWED"], id="us-2024-two-days"),
        pytest.param(
            "us-2024", {"order": None}, ["TAKE_HOME_DOSE_BLOCKED"], id="no-order-no-take-home"
        ),
        pytest.param(
            "us-2024",
            {"assessment": None},
            ["TAKE_HOME_DOSE_BLOCKED"],
            id="dose-blocked-no-take-home",
        ),
    ],
)
def test_take_home_at_the_counter(table, changes, expected):
    evaluation = evaluate_counter(
        rules(take_home=table), _ctx(take_home=TakeHomeRequest(day(1), 2), **changes)
    )
    assert codes(evaluation.take_home) == expected


def test_take_home_days_count_as_dosed_at_the_counter():
    doses = taken(day(-5), mg="90") + taken(
        day(-4), day(-3), day(-2), day(-1), mg="90", kind=DoseKind.TAKE_HOME
    )
    hist = history(started=day(-500), orders=[CURRENT], doses=doses, ecgs=[ecg(-100)])
    assert evaluate_counter(rules(), _ctx(history=hist)).missed_days == 0


def test_ecg_reminders_are_shown_at_the_counter():
    hist = history(
        started=day(-500), orders=[CURRENT], doses=every_day(day(-30), day(-1)), ecgs=[ecg(-400)]
    )
    assert [e.code for e in evaluate_counter(rules(), _ctx(history=hist)).ecg_due] == [
        Reason.ECG_YEARLY_DUE
    ]


def test_counter_refuses_naive_now():
    with pytest.raises(ValueError, match="naive"):
        evaluate_counter(rules(), _ctx(now=datetime(2025, 6, 16, 7, 0)))  # noqa: DTZ001


def test_order_decisions_carry_versions_and_reasons_needed():
    hist = history(started=day(-100), orders=[order(M, "60", start=day(-30))], ecgs=[ecg(-10, 470)])
    found = evaluate_order(rules(), order(Phase.TITRATION, "70"), hist, TODAY)
    assert codes(found) == ["QTC_ELEVATED_INCREASE"]
    assert found[0].table_version == "vn-3140@2010.1"
    taper = evaluate_order(rules(), order(Phase.TAPER, "54"), hist, TODAY)
    assert [d.code for d in needing_reason(taper)] == [Reason.TAPER_BEFORE_ONE_YEAR]


def test_clean_order_has_nothing_to_say():
    hist = history(orders=[order(M, "60", start=day(-30))])
    assert evaluate_order(rules(), order(M, "60"), hist, TODAY) == []


@pytest.mark.parametrize(
    ("orders", "suggested"),
    [
        pytest.param([CURRENT], "45", id="no-order-in-force-half-of-latest-order"),
        pytest.param([], "40", id="no-order-at-all-half-of-last-day-taken"),
    ],
)
def test_missed_dose_suggestion_without_an_order_in_force(orders, suggested):
    hist = history(
        started=day(-500), orders=orders, doses=taken(day(-4), mg="80"), ecgs=[ecg(-100)]
    )
    evaluation = evaluate_counter(rules(), _ctx(history=hist, order=None))
    assert codes(evaluation.decisions) == ["NO_ACTIVE_ORDER", "MISSED_DOSES_REVIEW"]
    assert evaluation.suggested.max_mg == D(suggested)
