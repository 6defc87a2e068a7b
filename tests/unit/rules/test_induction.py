"""§3 Induction (dò liều): first dose, COWS, day-1 top-up and total, early increases,
observation after the first dose."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispensing.rules import (
    CounterContext,
    DoseKind,
    Lot,
    Outcome,
    Phase,
    TopUpRequest,
    check_first_dose,
    evaluate_counter,
    evaluate_order,
    evaluate_top_up,
    first_dose_observation,
)

from .builders import TODAY, D, assessment, at, codes, day, history, only, order, rules, taken

IND = Phase.INDUCTION


@pytest.mark.parametrize(
    ("dose_mg", "expected", "outcome"),
    [
        pytest.param(
            "10", ["INDUCTION_FIRST_DOSE_BELOW_RANGE"], Outcome.WARN, id="10mg-below-usual-range"
        ),
        pytest.param(
            "14.9", ["INDUCTION_FIRST_DOSE_BELOW_RANGE"], Outcome.WARN, id="14.9mg-just-below-range"
        ),
        pytest.param("15", [], Outcome.ALLOW, id="15mg-bottom-of-range"),
        pytest.param("20", [], Outcome.ALLOW, id="20mg-mean-dose"),
        pytest.param("24.9", [], Outcome.ALLOW, id="24.9mg-below-caution"),
        pytest.param(
            "25", ["INDUCTION_FIRST_DOSE_CAUTION"], Outcome.WARN, id="25mg-caution-than-trong"
        ),
        pytest.param(
            "30", ["INDUCTION_FIRST_DOSE_CAUTION"], Outcome.WARN, id="30mg-maximum-with-caution"
        ),
        pytest.param(
            "30.1", ["INDUCTION_FIRST_DOSE_TOO_HIGH"], Outcome.BLOCK, id="30.1mg-above-maximum"
        ),
        pytest.param(
            "40", ["INDUCTION_FIRST_DOSE_TOO_HIGH"], Outcome.BLOCK, id="40mg-far-above-maximum"
        ),
    ],
)
def test_first_dose_range(dose_mg, expected, outcome):
    found = check_first_dose(rules(), D(dose_mg))
    assert codes(found) == expected
    assert all(d.outcome is outcome for d in found)
    assert all(d.lift_role is None and not d.needs_reason for d in found)


def test_first_induction_order_is_checked_as_first_dose_with_its_version():
    found = evaluate_order(rules(), order(IND, "35"), history(started=None), TODAY)
    blocked = only(found, "INDUCTION_FIRST_DOSE_TOO_HIGH")
    assert blocked.table_version == "vn-3140@2010.1"
    assert blocked.message_vi == "Liều khởi đầu 35 mg vượt mức tối đa 30 mg."


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        pytest.param(["30", "10"], ["INDUCTION_FIRST_DOSE_CAUTION"], id="30+10-is-40mg-day-1"),
        pytest.param(
            ["30", "10.1"],
            ["INDUCTION_FIRST_DOSE_CAUTION", "INDUCTION_DAY1_TOTAL_EXCEEDED"],
            id="30+10.1-exceeds-40mg",
        ),
        pytest.param(["20", "20.1"], ["INDUCTION_DAY1_TOTAL_EXCEEDED"], id="20+20.1-exceeds-40mg"),
    ],
)
def test_day1_total_at_most_40mg(parts, expected):
    total = str(sum(D(p) for p in parts))
    found = evaluate_order(rules(), order(IND, total, parts=parts), history(started=None), TODAY)
    assert codes(found) == expected
    if "INDUCTION_DAY1_TOTAL_EXCEEDED" in expected:
        assert only(found, "INDUCTION_DAY1_TOTAL_EXCEEDED").outcome is Outcome.BLOCK


def _topup(
    after: int | timedelta, cows: int | None, proposed: str | None = None, given: str = "30"
) -> TopUpRequest:
    first = at(TODAY, 7, 0)
    elapsed = after if isinstance(after, timedelta) else timedelta(minutes=after)
    return TopUpRequest(first, first + elapsed, cows, D(given), D(proposed) if proposed else None)


@pytest.mark.parametrize(
    ("minutes", "expected", "allowed"),
    [
        pytest.param(179, ["INDUCTION_TOPUP_TOO_EARLY"], "0", id="2h59-too-early"),
        pytest.param(
            timedelta(minutes=179, seconds=59),
            ["INDUCTION_TOPUP_TOO_EARLY"],
            "0",
            id="seconds-before-3h-too-early",
        ),
        pytest.param(180, ["INDUCTION_TOPUP_ALLOWED"], "10", id="exactly-3h"),
        pytest.param(240, ["INDUCTION_TOPUP_ALLOWED"], "10", id="exactly-4h-end-of-window"),
        pytest.param(
            241,
            ["INDUCTION_TOPUP_LATE", "INDUCTION_TOPUP_ALLOWED"],
            "10",
            id="4h01-after-window-needs-reason",
        ),
    ],
)
def test_topup_only_3_to_4_hours_after_first_dose(minutes, expected, allowed):
    result = evaluate_top_up(rules(), _topup(minutes, cows=25))
    assert codes(result.decisions) == expected
    assert result.allowed_mg == D(allowed)
    if "INDUCTION_TOPUP_LATE" in expected:
        late = only(result.decisions, "INDUCTION_TOPUP_LATE")
        assert late.outcome is Outcome.WARN and late.needs_reason


@pytest.mark.parametrize(
    ("cows", "expected", "allowed"),
    [
        pytest.param(None, ["INDUCTION_TOPUP_NO_WITHDRAWAL_SCORE"], "0", id="no-cows-recorded"),
        pytest.param(12, ["INDUCTION_TOPUP_NOT_INDICATED"], "0", id="cows-12-no-topup"),
        pytest.param(13, ["INDUCTION_TOPUP_ALLOWED"], "5", id="cows-13-plus-5mg"),
        pytest.param(24, ["INDUCTION_TOPUP_ALLOWED"], "5", id="cows-24-plus-5mg"),
        pytest.param(25, ["INDUCTION_TOPUP_ALLOWED"], "10", id="cows-25-plus-10mg"),
    ],
)
def test_topup_size_follows_cows(cows, expected, allowed):
    result = evaluate_top_up(rules(), _topup(200, cows))
    assert codes(result.decisions) == expected
    assert result.allowed_mg == D(allowed)
    if allowed == "0":
        assert result.decisions[0].outcome is Outcome.BLOCK


@pytest.mark.parametrize(
    ("cows", "given", "proposed", "expected"),
    [
        pytest.param(20, "30", "5", ["INDUCTION_TOPUP_ALLOWED"], id="cows-20-gives-5mg"),
        pytest.param(20, "30", "10", ["INDUCTION_TOPUP_TOO_LARGE"], id="cows-20-10mg-too-large"),
        pytest.param(30, "30", "10", ["INDUCTION_TOPUP_ALLOWED"], id="30+10-reaches-40mg"),
        pytest.param(30, "35", "10", ["INDUCTION_DAY1_TOTAL_EXCEEDED"], id="35+10-exceeds-40mg"),
    ],
)
def test_topup_never_past_the_day1_total(cows, given, proposed, expected):
    result = evaluate_top_up(rules(), _topup(200, cows, proposed, given))
    assert codes(result.decisions) == expected


def test_topup_allowance_shrinks_to_what_day1_total_leaves():
    assert evaluate_top_up(rules(), _topup(200, cows=30, given="35")).allowed_mg == D("5")


def test_topup_refuses_naive_times():
    with pytest.raises(ValueError, match="naive"):
        evaluate_top_up(
            rules(), TopUpRequest(at(TODAY).replace(tzinfo=None), at(TODAY), 20, D("30"))
        )


def _induction_history(day1_taken: str = "30"):
    day1 = order(IND, "30", start=day(-1))
    return history(started=day(-1), orders=[day1], doses=taken(day(-1), mg=day1_taken))


@pytest.mark.parametrize(
    ("induction_day", "total", "expected"),
    [
        pytest.param(2, "30", [], id="day-2-same-dose"),
        pytest.param(2, "35", ["INDUCTION_EARLY_INCREASE"], id="day-2-increase-needs-reason"),
        pytest.param(3, "35", ["INDUCTION_EARLY_INCREASE"], id="day-3-increase-needs-reason"),
        pytest.param(4, "35", [], id="day-4-increase-allowed"),
    ],
)
def test_no_increase_on_days_2_and_3_without_reason(induction_day, total, expected):
    start = day(-(induction_day - 1))
    orders = [order(IND, "30", start=start + timedelta(days=i)) for i in range(induction_day - 1)]
    found = evaluate_order(rules(), order(IND, total), history(started=start, orders=orders), TODAY)
    assert codes(found) == expected
    for d in found:
        assert d.outcome is Outcome.WARN and d.needs_reason


def test_day2_may_repeat_day1_total_including_topup():
    """30 mg ordered + 10 mg top-up taken on day 1: 40 mg on day 2 is not an increase."""
    found = evaluate_order(rules(), order(IND, "40"), _induction_history(day1_taken="40"), TODAY)
    assert codes(found) == []


def test_restart_after_a_gap_is_a_new_first_dose():
    old = order(IND, "30", start=day(-60))
    found = evaluate_order(
        rules(), order(IND, "35"), history(started=day(-60), orders=[old]), TODAY
    )
    assert codes(found) == ["INDUCTION_FIRST_DOSE_TOO_HIGH"]


def _counter(hist, cows):
    return CounterContext(
        today=TODAY,
        now=at(TODAY, 7, 45),
        history=hist,
        order=order(IND, "20", start=TODAY) if not hist.orders else order(IND, "30"),
        lot=Lot("L1", D("10"), True),
        assessment=assessment(cows=cows),
    )


@pytest.mark.parametrize(
    ("cows", "expected"),
    [
        pytest.param(None, ["INDUCTION_COWS_MISSING"], id="cows-not-recorded-blocks"),
        pytest.param(8, [], id="cows-recorded"),
    ],
)
def test_induction_dose_needs_cows_recorded(cows, expected):
    evaluation = evaluate_counter(rules(), _counter(history(started=None), cows))
    assert codes(evaluation.decisions) == expected


@pytest.mark.parametrize(
    ("hist", "observe"),
    [
        pytest.param(history(started=None), True, id="first-dose-opens-3-4h-observation"),
        pytest.param(_induction_history(), False, id="day-2-no-observation"),
    ],
)
def test_observation_task_after_first_induction_dose(hist, observe):
    evaluation = evaluate_counter(rules(), _counter(hist, cows=10))
    assert [o.code.value for o in evaluation.after_dose] == (
        ["INDUCTION_OBSERVATION"] if observe else []
    )


def test_first_dose_observation_lasts_3_to_4_hours():
    given = at(TODAY, 7, 50)
    watch = first_dose_observation(rules(), given)
    assert (watch.start_at, watch.min_end_at, watch.max_end_at) == (
        given,
        given + timedelta(hours=3),
        given + timedelta(hours=4),
    )
    assert "180–240 phút" in watch.message_vi


def test_vomited_day1_dose_still_counts_as_taken():
    hist = history(
        started=day(-1),
        orders=[order(IND, "30", start=day(-1))],
        doses=taken(day(-1), kind=DoseKind.OBSERVED, vomited=True),
    )
    evaluation = evaluate_counter(rules(), _counter(hist, cows=10))
    assert evaluation.after_dose == ()
    assert evaluation.missed_days == 0
