"""§9 Take-home / multi-day dispensing under each selectable regime."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispensing.rules import DoseKind, Outcome, Phase, TakeHomeRequest, evaluate_take_home

from .builders import TODAY, codes, day, every_day, history, order, rules, taken

M = Phase.MAINTENANCE
TAKE_HOME = DoseKind.TAKE_HOME


def _evaluate(
    table: str = "us-2024",
    *,
    days: int = 1,
    first_day=None,
    phase: Phase = M,
    treatment_days: int = 800,
    doses=(),
    orders=(),
    commitment: bool = True,
    predose_blocked: bool = False,
    dose_blocked: bool = False,
    valid_until=None,
    booked=(),
):
    current = order(phase, "60", start=day(-1), valid_until=valid_until or day(60))
    return evaluate_take_home(
        rules(take_home=table),
        TakeHomeRequest(first_day or day(1), days, booked=frozenset(booked)),
        order=current,
        history=history(
            started=day(-treatment_days), orders=orders, doses=doses, commitment=commitment
        ),
        today=TODAY,
        predose_blocked=predose_blocked,
        dose_blocked=dose_blocked,
    )


def test_disabled_by_default_every_dose_observed():
    (found,) = _evaluate("disabled")
    assert (found.code, found.outcome, found.table_version) == (
        "TAKE_HOME_DISABLED",
        Outcome.BLOCK,
        "disabled@2024.1",
    )


@pytest.mark.parametrize(
    ("phase", "allowed"),
    [
        pytest.param(Phase.INDUCTION, False, id="never-in-induction"),
        pytest.param(Phase.TITRATION, False, id="never-in-titration"),
        pytest.param(Phase.MAINTENANCE, True, id="maintenance"),
        pytest.param(Phase.TAPER, True, id="taper"),
    ],
)
def test_never_during_induction_or_titration(phase, allowed):
    assert codes(_evaluate(phase=phase)) == (
        ["TAKE_HOME_ALLOWED"] if allowed else ["TAKE_HOME_PHASE_NOT_ALLOWED"]
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {"predose_blocked": True},
            "TAKE_HOME_PREDOSE_BLOCKED",
            id="todays-predose-check-blocked",
        ),
        pytest.param({"dose_blocked": True}, "TAKE_HOME_DOSE_BLOCKED", id="todays-dose-blocked"),
        pytest.param(
            {"commitment": False}, "TAKE_HOME_COMMITMENT_MISSING", id="commitment-not-signed"
        ),
        pytest.param(
            {"days": 3, "valid_until": day(2)},
            "TAKE_HOME_BEYOND_ORDER",
            id="last-day-after-order-end",
        ),
        pytest.param({"days": 0}, "TAKE_HOME_REQUEST_INVALID", id="zero-days"),
        pytest.param(
            {"first_day": day(-1)}, "TAKE_HOME_REQUEST_INVALID", id="first-day-in-the-past"
        ),
    ],
)
def test_refused_whatever_the_regime(kwargs, expected):
    found = _evaluate(**kwargs)
    assert codes(found) == [expected]
    assert found[0].outcome is Outcome.BLOCK and found[0].lift_role is None


def test_order_end_day_itself_may_be_taken_home():
    assert codes(_evaluate(days=2, valid_until=day(2))) == ["TAKE_HOME_ALLOWED"]


@pytest.mark.parametrize(
    ("treatment_days", "days", "allowed"),
    [
        pytest.param(13, 7, True, id="day-13-7-days"),
        pytest.param(13, 8, False, id="day-13-8-days-over-first-14-day-limit"),
        pytest.param(14, 14, True, id="day-14-14-days"),
        pytest.param(14, 15, False, id="day-14-15-days"),
        pytest.param(30, 28, True, id="after-one-month-28-days"),
        pytest.param(30, 29, False, id="after-one-month-29-days"),
    ],
)
def test_us_2024_limits_by_time_in_treatment(treatment_days, days, allowed):
    found = _evaluate("us-2024", treatment_days=treatment_days, days=days)
    assert codes(found) == (
        ["TAKE_HOME_ALLOWED"] if allowed else ["TAKE_HOME_SUPPLY_EXCEEDS_REGIME"]
    )
    assert found[0].table_version == "us-2024@2024.1"


@pytest.mark.parametrize(
    ("treatment_days", "days", "allowed"),
    [
        pytest.param(89, 1, True, id="first-90-days-1-dose"),
        pytest.param(89, 2, False, id="first-90-days-2-doses"),
        pytest.param(90, 2, True, id="second-90-days-2-doses"),
        pytest.param(180, 3, True, id="third-90-days-3-doses"),
        pytest.param(180, 4, False, id="third-90-days-4-doses"),
        pytest.param(300, 6, True, id="rest-of-year-1-6-days"),
        pytest.param(300, 7, False, id="rest-of-year-1-7-days"),
        pytest.param(365, 14, True, id="year-2-two-weeks"),
        pytest.param(365, 15, False, id="year-2-15-days"),
        pytest.param(730, 30, True, id="after-2-years-one-month"),
    ],
)
def test_us_2001_limits_by_time_in_treatment(treatment_days, days, allowed):
    found = _evaluate("us-2001", treatment_days=treatment_days, days=days)
    assert ("TAKE_HOME_ALLOWED" in codes(found)) is allowed
    if not allowed:
        assert "TAKE_HOME_SUPPLY_EXCEEDS_REGIME" in codes(found)


@pytest.mark.parametrize(
    ("previous_take_home", "allowed"),
    [
        pytest.param(day(-5), False, id="second-dose-within-7-days-blocked"),
        pytest.param(day(-6), True, id="one-dose-a-week"),
    ],
)
def test_us_2001_one_take_home_a_week_in_first_90_days(previous_take_home, allowed):
    found = _evaluate("us-2001", treatment_days=60, doses=taken(previous_take_home, kind=TAKE_HOME))
    assert codes(found) == (["TAKE_HOME_ALLOWED"] if allowed else ["TAKE_HOME_WEEKLY_LIMIT"])


@pytest.mark.parametrize(
    ("history_days", "first", "days", "expected"),
    [
        pytest.param((), day(5), 2, ["TAKE_HOME_ALLOWED"], id="sat-sun-2-in-a-week"),
        pytest.param((), day(4), 3, ["TAKE_HOME_WEEKLY_LIMIT"], id="fri-sat-sun-3-in-a-week"),
        pytest.param(
            (day(-2), day(-1)),
            TODAY,
            2,
            ["TAKE_HOME_ALLOWED"],
            id="sat-to-tue-4-consecutive-across-weeks",
        ),
        pytest.param(
            (day(-2), day(-1)),
            TODAY,
            3,
            ["TAKE_HOME_WEEKLY_LIMIT", "TAKE_HOME_CONSECUTIVE_LIMIT"],
            id="sat-to-wed-5-consecutive",
        ),
        pytest.param(
            (),
            day(5),
            5,
            [
                "TAKE_HOME_SUPPLY_EXCEEDS_REGIME",
                "TAKE_HOME_WEEKLY_LIMIT",
                "TAKE_HOME_CONSECUTIVE_LIMIT",
            ],
            id="5-days-at-once",
        ),
    ],
)
def test_south_australia_two_a_week_four_consecutive(history_days, first, days, expected):
    assert TODAY.weekday() == 0  # the scenarios are written for a Monday
    found = _evaluate(
        "south-australia", first_day=first, days=days, doses=taken(*history_days, kind=TAKE_HOME)
    )
    assert codes(found) == expected


def _vn(
    *, treatment_days: int = 400, dose_changed_days_ago: int = 60, missed_day=None, days: int = 7
):
    attended = [d for d in every_day(day(-90), day(-1)) if d.on != missed_day]
    orders = [
        order(M, "50", start=day(-120)),
        order(
            M, "60", start=day(-dose_changed_days_ago), valid_until=day(-dose_changed_days_ago + 29)
        ),
    ]
    return _evaluate(
        "vn-multiday", treatment_days=treatment_days, orders=orders, doses=attended, days=days
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, ["TAKE_HOME_ALLOWED"], id="stable-patient-7-days"),
        pytest.param(
            {"days": 8}, ["TAKE_HOME_SUPPLY_EXCEEDS_REGIME"], id="8-days-over-programme-limit"
        ),
        pytest.param(
            {"treatment_days": 179},
            ["TAKE_HOME_TOO_EARLY_IN_TREATMENT"],
            id="179-days-in-treatment",
        ),
        pytest.param({"treatment_days": 180}, ["TAKE_HOME_ALLOWED"], id="180-days-in-treatment"),
        pytest.param(
            {"dose_changed_days_ago": 29},
            ["TAKE_HOME_DOSE_NOT_STABLE"],
            id="dose-changed-29-days-ago",
        ),
        pytest.param(
            {"dose_changed_days_ago": 30}, ["TAKE_HOME_ALLOWED"], id="dose-unchanged-30-days"
        ),
        pytest.param(
            {"missed_day": day(-10)},
            ["TAKE_HOME_RECENT_MISSED_DOSES"],
            id="missed-a-day-last-month",
        ),
        pytest.param(
            {"missed_day": day(-31)}, ["TAKE_HOME_ALLOWED"], id="missed-a-day-31-days-ago"
        ),
    ],
)
def test_vietnamese_multiday_programme_criteria(kwargs, expected):
    assert codes(_vn(**kwargs)) == expected


def test_take_home_request_covers_consecutive_days():
    assert TakeHomeRequest(TODAY, 3).dates == [TODAY + timedelta(days=i) for i in range(3)]


@pytest.mark.parametrize(
    ("booked", "first", "days", "expected"),
    [
        pytest.param((day(1), day(2)), day(3), 1, ["TAKE_HOME_WEEKLY_LIMIT"], id="3rd-day-of-the-week-booked-earlier"),
        pytest.param((day(1),), day(3), 1, ["TAKE_HOME_ALLOWED"], id="2nd-day-of-the-week"),
        pytest.param((day(5), day(6)), day(7), 2, ["TAKE_HOME_ALLOWED"], id="next-week-free"),
        pytest.param((day(5), day(6), day(7), day(8)), day(9), 1,
                     ["TAKE_HOME_WEEKLY_LIMIT", "TAKE_HOME_CONSECUTIVE_LIMIT"], id="5th-consecutive-day"),
    ],
)
def test_take_home_days_already_booked_ahead_count_like_past_ones(booked, first, days, expected):
    assert TODAY.weekday() == 0
    assert codes(_evaluate("south-australia", first_day=first, days=days, booked=booked)) == expected
