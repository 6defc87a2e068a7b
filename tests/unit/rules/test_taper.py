"""§8 Taper: after ≥ 1 year (before: WARN with reason), steps ≤ 10 % (BLOCK above), ≥ 14 days
apart (BLOCK), slower below 20 mg/day (WARN); a taper order never raises the dose."""

from __future__ import annotations

import pytest

from dispensing.rules import Outcome, Phase, evaluate_order

from .builders import TODAY, codes, day, history, only, order, rules

M, P = Phase.MAINTENANCE, Phase.TAPER


def _taper(previous: str, new: str, *, last_step_days_ago: int | None = None, years: int = 2):
    orders = [order(M, "100" if last_step_days_ago else previous, start=day(-120))]
    if last_step_days_ago is not None:
        orders.append(order(P, previous, start=day(-last_step_days_ago)))
    return evaluate_order(
        rules(), order(P, new), history(started=day(-365 * years), orders=orders), TODAY
    )


@pytest.mark.parametrize(
    ("previous", "new", "expected"),
    [
        pytest.param("100", "90", [], id="10pct-step"),
        pytest.param("100", "89.9", ["TAPER_STEP_TOO_LARGE"], id="10.1pct-step-blocked"),
        pytest.param("100", "89", ["TAPER_STEP_TOO_LARGE"], id="11pct-step-blocked"),
        pytest.param("65", "58.5", [], id="exactly-10pct-of-65mg"),
        pytest.param("60", "40", ["TAPER_STEP_TOO_LARGE"], id="one-third-cut-blocked"),
    ],
)
def test_each_step_at_most_10_percent(previous, new, expected):
    found = _taper(previous, new)
    assert codes(found) == expected
    for d in found:
        assert d.outcome is Outcome.BLOCK and d.lift_role is None


def test_step_message_gives_the_lowest_allowed_dose():
    found = only(_taper("100", "89"), "TAPER_STEP_TOO_LARGE")
    assert (
        found.message_vi
        == "Mức giảm 11% vượt mức tối đa 10% mỗi lần (liều thấp nhất cho phép 90 mg)."
    )


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [
        pytest.param(13, ["TAPER_STEPS_TOO_CLOSE"], id="13-days-after-last-step-blocked"),
        pytest.param(14, [], id="14-days-after-last-step"),
        pytest.param(28, [], id="28-days-after-last-step"),
    ],
)
def test_steps_at_least_14_days_apart(days_ago, expected):
    found = _taper("90", "81", last_step_days_ago=days_ago)
    assert codes(found) == expected


@pytest.mark.parametrize(
    ("treatment_days", "expected"),
    [
        pytest.param(364, ["TAPER_BEFORE_ONE_YEAR"], id="364-days-in-treatment-needs-reason"),
        pytest.param(365, [], id="one-year-in-treatment"),
    ],
)
def test_taper_before_one_year_warns_with_reason(treatment_days, expected):
    orders = [order(M, "80", start=day(-60))]
    found = evaluate_order(
        rules(), order(P, "72"), history(started=day(-treatment_days), orders=orders), TODAY
    )
    assert codes(found) == expected
    for d in found:
        assert d.outcome is Outcome.WARN and d.needs_reason


@pytest.mark.parametrize(
    ("previous", "new", "expected"),
    [
        pytest.param("22", "20", [], id="down-to-20mg"),
        pytest.param("21", "19.9", ["TAPER_LOW_DOSE_SLOWER"], id="below-20mg-taper-slower"),
        pytest.param("10", "9", ["TAPER_LOW_DOSE_SLOWER"], id="10-to-9mg-taper-slower"),
    ],
)
def test_below_20mg_warns_to_taper_more_slowly(previous, new, expected):
    found = _taper(previous, new)
    assert codes(found) == expected
    for d in found:
        assert d.outcome is Outcome.WARN and not d.needs_reason


def test_taper_order_cannot_raise_the_dose():
    found = _taper("80", "85")
    assert codes(found) == ["TAPER_PHASE_INCREASE"]
    assert found[0].outcome is Outcome.BLOCK


def test_reduction_outside_taper_phase_is_not_a_taper_step():
    orders = [order(M, "100", start=day(-60))]
    found = evaluate_order(
        rules(), order(M, "60"), history(started=day(-100), orders=orders), TODAY
    )
    assert codes(found) == []
