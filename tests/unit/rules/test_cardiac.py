"""§10 Heart: QTc thresholds on dose increases and the ECG schedule."""

from __future__ import annotations

import pytest

from dispensing.rules import (
    Lift,
    Outcome,
    Phase,
    Reason,
    Role,
    apply_lifts,
    ecg_due,
    evaluate_order,
)

from .builders import TODAY, D, codes, day, ecg, history, order, rules

M, T = Phase.MAINTENANCE, Phase.TITRATION


def _increase(qtc: int, new_total: str = "70", ecg_id: str = "e7"):
    hist = history(orders=[order(M, "60", start=day(-30))], ecgs=[ecg(-10, qtc, ecg_id)])
    return evaluate_order(rules(), order(T, new_total), hist, TODAY)


@pytest.mark.parametrize(
    ("qtc", "expected", "outcome"),
    [
        pytest.param(449, [], None, id="qtc-449-normal"),
        pytest.param(450, ["QTC_ELEVATED_INCREASE"], Outcome.WARN, id="qtc-450-warn-monitor-more"),
        pytest.param(500, ["QTC_ELEVATED_INCREASE"], Outcome.WARN, id="qtc-500-warn-monitor-more"),
        pytest.param(
            501, ["QTC_CRITICAL_INCREASE_BLOCKED"], Outcome.BLOCK, id="qtc-501-increase-blocked"
        ),
    ],
)
def test_qtc_thresholds_on_dose_increase(qtc, expected, outcome):
    found = _increase(qtc)
    assert codes(found) == expected
    for d in found:
        assert d.outcome is outcome
        assert d.lift_role is (Role.PHYSICIAN if outcome is Outcome.BLOCK else None)


def test_qtc_above_500_lifted_by_physician_review_of_that_ecg():
    (blocked,) = _increase(520)
    assert blocked.subject == "ecg:e7"
    review = Lift(Reason.QTC_CRITICAL_INCREASE_BLOCKED, Role.PHYSICIAN, "ecg:e7", "review-1")
    assert apply_lifts([blocked], [review])[0].outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("new_total", "expected"),
    [
        pytest.param("60", [], id="renewal-same-dose-no-qtc-check"),
        pytest.param("50", [], id="reduction-no-qtc-check"),
    ],
)
def test_qtc_only_checked_on_increase(new_total, expected):
    assert codes(_increase(520, new_total)) == expected


def test_latest_ecg_decides():
    hist = history(orders=[order(M, "60", start=day(-30))], ecgs=[ecg(-200, 520), ecg(-10, 430)])
    assert codes(evaluate_order(rules(), order(T, "70"), hist, TODAY)) == []


def _due(started: int | None, ecg_days: list[int], dose: str | None = "60"):
    hist = history(
        started=day(started) if started is not None else None, ecgs=[ecg(d) for d in ecg_days]
    )
    return {
        item.code.value: item for item in ecg_due(rules(), hist, D(dose) if dose else None, TODAY)
    }


@pytest.mark.parametrize(
    ("started", "ecg_days", "dose", "expected"),
    [
        pytest.param(None, [], "30", {"ECG_BASELINE_DUE"}, id="new-patient-baseline-due"),
        pytest.param(
            -5, [], "30", {"ECG_BASELINE_DUE", "ECG_FOLLOW_UP_DUE"}, id="started-without-any-ecg"
        ),
        pytest.param(-5, [-6], "30", {"ECG_FOLLOW_UP_DUE"}, id="baseline-done-follow-up-due"),
        pytest.param(-40, [-41, -20], "60", set(), id="baseline-and-30-day-done"),
        pytest.param(-800, [-364], "60", set(), id="ecg-364-days-old"),
        pytest.param(-800, [-365], "60", {"ECG_YEARLY_DUE"}, id="ecg-365-days-old-yearly-due"),
        pytest.param(-800, [-60], "100", set(), id="100mg-no-extra-ecg"),
        pytest.param(-800, [-60], "100.1", {"ECG_HIGH_DOSE_DUE"}, id="100.1mg-ecg-60-days-old"),
        pytest.param(-800, [-30], "100.1", set(), id="100.1mg-ecg-30-days-old"),
    ],
)
def test_ecg_schedule(started, ecg_days, dose, expected):
    assert set(_due(started, ecg_days, dose)) == expected


def test_follow_up_due_30_days_after_start_and_overdue_after():
    assert _due(-5, [-6])["ECG_FOLLOW_UP_DUE"].due_on == day(25)
    late = _due(-31, [-40])["ECG_FOLLOW_UP_DUE"]
    assert (late.due_on, late.overdue) == (day(-1), True)
    assert "Cần làm điện tâm đồ" in late.message_vi
