"""§4 Titration and maintenance: spacing, step, rolling weekly cap (and the UK alternative),
ECG above 100 mg, high-dose review above 120 mg, co-signature above the 200 mg ceiling."""

from __future__ import annotations

import pytest

from dispensing.rules import Outcome, Phase, evaluate_order

from .builders import TODAY, codes, day, ecg, history, only, order, rules

T, M = Phase.TITRATION, Phase.MAINTENANCE


def _after(*steps: tuple[int, str], recent_ecg: bool = True, started: int = -400):
    """History of orders: (start offset, daily total) pairs."""
    orders = [order(T, mg, start=day(offset), days=3) for offset, mg in steps]
    return history(started=day(started), orders=orders, ecgs=[ecg(-5)] if recent_ecg else [])


@pytest.mark.parametrize(
    ("days_since_increase", "expected"),
    [
        pytest.param(2, ["TITRATION_INCREASE_TOO_SOON"], id="increase-2-days-after-last-blocked"),
        pytest.param(3, [], id="increase-3-days-after-last"),
        pytest.param(5, [], id="increase-5-days-after-last"),
    ],
)
def test_increases_at_least_3_days_apart(days_since_increase, expected):
    hist = _after((-20, "50"), (-days_since_increase, "55"))
    found = evaluate_order(rules(), order(T, "60"), hist, TODAY)
    assert codes(found) == expected
    for d in found:
        assert d.outcome is Outcome.BLOCK and d.lift_role is None


@pytest.mark.parametrize(
    ("new_total", "expected"),
    [
        pytest.param("70", [], id="step-10mg"),
        pytest.param("70.1", ["TITRATION_STEP_TOO_LARGE"], id="step-10.1mg-blocked"),
        pytest.param("80", ["TITRATION_STEP_TOO_LARGE"], id="step-20mg-blocked"),
    ],
)
def test_step_at_most_10mg(new_total, expected):
    found = evaluate_order(rules(), order(T, new_total), _after((-20, "60")), TODAY)
    assert codes(found) == expected


@pytest.mark.parametrize(
    ("steps", "new_total", "expected"),
    [
        pytest.param(
            [(-10, "60"), (-6, "70"), (-3, "80")],
            "90",
            ["TITRATION_WEEKLY_CAP_EXCEEDED"],
            id="10+10+10-in-7-days-warns",
        ),
        pytest.param(
            [(-10, "60"), (-7, "70"), (-4, "80")],
            "90",
            [],
            id="first-step-8-days-ago-outside-window",
        ),
        pytest.param(
            [(-10, "60"), (-6, "70"), (-3, "70.1")], "80", [], id="10+0.1+9.9-is-exactly-20mg"
        ),
        pytest.param(
            [(-10, "60"), (-6, "70"), (-3, "70.1")],
            "80.1",
            ["TITRATION_WEEKLY_CAP_EXCEEDED"],
            id="10+0.1+10-is-20.1mg-warns",
        ),
    ],
)
def test_rolling_7_day_cap_20mg_warns_with_reason(steps, new_total, expected):
    found = evaluate_order(rules(), order(T, new_total), _after(*steps), TODAY)
    assert codes(found) == expected
    if expected:
        cap = only(found, "TITRATION_WEEKLY_CAP_EXCEEDED")
        assert cap.outcome is Outcome.WARN and cap.needs_reason
        assert cap.table_version == "vn-3140@2010.1"


@pytest.mark.parametrize(
    ("cap_table", "started", "expected"),
    [
        pytest.param(
            "vn-3140", -10, ["TITRATION_WEEKLY_CAP_EXCEEDED"], id="default-20mg-in-first-weeks"
        ),
        pytest.param("uk-2007", -10, [], id="uk-30mg-per-week-in-first-two-weeks"),
        pytest.param(
            "uk-2007", -14, ["TITRATION_WEEKLY_CAP_EXCEEDED"], id="uk-back-to-20mg-from-day-14"
        ),
    ],
)
def test_uk_alternative_allows_30mg_a_week_in_first_two_weeks(cap_table, started, expected):
    hist = _after((-10, "40"), (-6, "50"), (-3, "60"), started=started)
    found = evaluate_order(rules(titration_cap=cap_table), order(T, "70"), hist, TODAY)
    assert codes(found) == expected
    if expected:
        assert (
            found[0].table_version
            == f"{cap_table}@{'2010.1' if cap_table == 'vn-3140' else '2007.1'}"
        )


@pytest.mark.parametrize(
    ("new_total", "ecg_days_ago", "expected"),
    [
        pytest.param("100", None, [], id="100mg-no-ecg-needed"),
        pytest.param("100.1", None, ["ECG_REQUIRED_HIGH_DOSE"], id="100.1mg-without-ecg-blocked"),
        pytest.param("100.1", 30, [], id="100.1mg-ecg-30-days-old"),
        pytest.param("100.1", 31, ["ECG_REQUIRED_HIGH_DOSE"], id="100.1mg-ecg-31-days-old-blocked"),
    ],
)
def test_above_100mg_needs_ecg_within_30_days(new_total, ecg_days_ago, expected):
    hist = _after((-20, "95"), recent_ecg=False)
    if ecg_days_ago is not None:
        hist = history(orders=hist.orders, ecgs=[ecg(-ecg_days_ago)])
    found = evaluate_order(rules(), order(T, new_total), hist, TODAY)
    assert codes(found) == expected
    for d in found:
        assert d.outcome is Outcome.BLOCK and d.lift_role is None


def test_renewal_above_100mg_is_not_blocked_for_ecg_by_default():
    hist = history(orders=[order(M, "110", start=day(-30))])
    assert codes(evaluate_order(rules(), order(M, "110"), hist, TODAY)) == []


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        pytest.param("120", [], id="120mg-typical-maintenance-top"),
        pytest.param("120.1", ["HIGH_DOSE_REVIEW"], id="120.1mg-high-dose-review"),
    ],
)
def test_above_120mg_warns_high_dose_review(total, expected):
    hist = history(orders=[order(M, total, start=day(-30))])
    found = evaluate_order(rules(), order(M, total), hist, TODAY)
    assert codes(found) == expected
    assert all(d.outcome is Outcome.WARN and not d.needs_reason for d in found)


@pytest.mark.parametrize(
    ("total", "signed_by", "cosigned_by", "outcome"),
    [
        pytest.param("200", "dr-an", None, None, id="200mg-ceiling-itself"),
        pytest.param("200.1", "dr-an", None, Outcome.BLOCK, id="above-ceiling-without-cosignature"),
        pytest.param(
            "200.1", "dr-an", "dr-an", Outcome.BLOCK, id="self-cosignature-does-not-count"
        ),
        pytest.param(
            "200.1",
            "dr-an",
            "dr-binh",
            Outcome.ALLOW,
            id="above-ceiling-cosigned-by-second-physician",
        ),
    ],
)
def test_ceiling_200mg_needs_a_second_physician(total, signed_by, cosigned_by, outcome):
    hist = history(orders=[order(M, total, start=day(-30))])
    proposal = order(M, total, signed_by=signed_by, cosigned_by=cosigned_by)
    found = [
        d for d in evaluate_order(rules(), proposal, hist, TODAY) if d.code != "HIGH_DOSE_REVIEW"
    ]
    if outcome is None:
        assert found == []
        return
    (ceiling,) = found
    assert ceiling.outcome is outcome
    assert ceiling.code == (
        "DOSE_ABOVE_CEILING_COSIGNED"
        if outcome is Outcome.ALLOW
        else "DOSE_ABOVE_CEILING_COSIGN_REQUIRED"
    )
    assert ceiling.lift_role is None  # nobody lifts it: the order needs the co-signature
