"""§6 Missed doses: counting consecutive calendar days with no dose taken, the decision table and
the suggested dose under the selected table (Australia 2003 default, METAPHI alternative)."""

from __future__ import annotations

import pytest

from dispensing.rules import (
    DoseKind,
    DoseRange,
    Lift,
    Outcome,
    Reason,
    Role,
    apply_lifts,
    assess_missed_doses,
    count_missed_days,
)

from .builders import TODAY, D, day, every_day, rules, taken

TAKE_HOME = DoseKind.TAKE_HOME


@pytest.mark.parametrize(
    ("doses", "missed"),
    [
        pytest.param(taken(day(-1)), 0, id="dosed-yesterday"),
        pytest.param(taken(day(-2)), 1, id="last-dose-2-days-ago-1-missed"),
        pytest.param(taken(day(-3)), 2, id="last-dose-3-days-ago-2-missed"),
        pytest.param(taken(day(-4)), 3, id="last-dose-4-days-ago-3-missed"),
        pytest.param(taken(day(-4), day(-2)), 1, id="only-consecutive-days-count"),
        pytest.param(
            taken(day(-5)) + taken(day(-4), day(-3), day(-2), day(-1), kind=TAKE_HOME),
            0,
            id="take-home-days-count-as-dosed",
        ),
        pytest.param(
            taken(day(-3)) + taken(day(-1), vomited=True), 0, id="vomited-dose-counts-as-dosed"
        ),
        pytest.param(
            taken(day(-3)) + taken(day(-1), kind=DoseKind.REPLACEMENT),
            0,
            id="replacement-counts-as-dosed",
        ),
        pytest.param(taken(day(-10), TODAY), 0, id="already-dosed-today"),
        pytest.param((), 0, id="never-dosed-new-patient"),
        pytest.param(taken(day(-31)), 30, id="31-days-since-last-dose"),
    ],
)
def test_missed_days_are_consecutive_calendar_days_without_a_dose(doses, missed):
    assert count_missed_days(doses, TODAY) == missed


def _assess(missed: int, usual: str = "100", table: str = "australia-2003"):
    return assess_missed_doses(rules(missed_dose=table), taken(day(-(missed + 1))), TODAY, D(usual))


@pytest.mark.parametrize(
    ("missed", "outcome", "code", "suggested"),
    [
        pytest.param(0, None, None, None, id="no-missed-day"),
        pytest.param(1, Outcome.ALLOW, "MISSED_DOSES_SHORT", ("100", "100"), id="1-day-usual-dose"),
        pytest.param(
            2, Outcome.ALLOW, "MISSED_DOSES_SHORT", ("100", "100"), id="2-days-usual-dose"
        ),
        pytest.param(
            3,
            Outcome.BLOCK,
            "MISSED_DOSES_REVIEW",
            ("50", "50"),
            id="3-days-physician-review-50pct",
        ),
        pytest.param(
            4,
            Outcome.BLOCK,
            "MISSED_DOSES_SEE_PATIENT",
            ("40", "40"),
            id="4-days-min-40mg-or-50pct",
        ),
        pytest.param(
            5,
            Outcome.BLOCK,
            "MISSED_DOSES_RESTART_INDUCTION",
            ("15", "30"),
            id="5-days-restart-induction",
        ),
        pytest.param(
            29,
            Outcome.BLOCK,
            "MISSED_DOSES_RESTART_INDUCTION",
            ("15", "30"),
            id="29-days-restart-induction",
        ),
    ],
)
def test_default_australia_2003_table(missed, outcome, code, suggested):
    result = _assess(missed)
    assert result.missed_days == missed
    if outcome is None:
        assert (result.decision, result.suggested, result.flags) == (None, None, ())
        return
    assert result.decision.outcome is outcome
    assert result.decision.code == code
    assert result.decision.table_version == "australia-2003@2003.1"
    assert result.suggested == DoseRange(D(suggested[0]), D(suggested[1]))
    assert result.decision.lift_role is (Role.PHYSICIAN if outcome is Outcome.BLOCK else None)


@pytest.mark.parametrize(
    ("usual", "table", "suggested"),
    [
        pytest.param("100", "australia-2003", "40", id="100mg-australia-40mg"),
        pytest.param("100", "metaphi", "50", id="100mg-metaphi-50mg"),
        pytest.param("60", "australia-2003", "30", id="60mg-australia-half"),
        pytest.param("40", "australia-2003", "20", id="40mg-australia-half"),
        pytest.param("40", "metaphi", "30", id="40mg-metaphi-30mg-floor"),
        pytest.param("20", "metaphi", "20", id="20mg-metaphi-never-above-usual"),
        pytest.param("75.5", "australia-2003", "37.7", id="half-of-75.5mg-rounded-down-to-0.1"),
    ],
)
def test_four_missed_days_suggestion_depends_on_the_selected_table(usual, table, suggested):
    result = _assess(4, usual, table)
    assert result.suggested == DoseRange(D(suggested), D(suggested))
    assert result.decision.table_version.startswith(table + "@")


def test_restart_suggestion_never_above_the_usual_dose():
    assert _assess(7, usual="20").suggested == DoseRange(D("15"), D("20"))


def test_suggestion_is_shown_in_the_message():
    result = _assess(4)
    assert result.decision.message_vi == (
        "Bỏ liều 4 ngày: bác sĩ phải khám người bệnh trước khi cho uống. Liều gợi ý 40 mg."
    )
    assert "15–30 mg" in _assess(6).decision.message_en


@pytest.mark.parametrize(
    ("missed", "flagged"),
    [
        pytest.param(29, False, id="29-days-no-interruption-review"),
        pytest.param(30, True, id="30-days-interruption-review"),
        pytest.param(90, True, id="90-days-interruption-review"),
    ],
)
def test_30_days_flags_interruption_review(missed, flagged):
    result = _assess(missed)
    assert [f.code for f in result.flags] == (
        [Reason.TREATMENT_INTERRUPTION_REVIEW] if flagged else []
    )
    if flagged:
        assert result.flags[0].starts_on == TODAY and result.flags[0].ends_on is None


def test_physician_review_lifts_only_that_absence():
    result = _assess(3)
    assert result.decision.subject == f"missed-after:{day(-4).isoformat()}"
    review = Lift(Reason.MISSED_DOSES_REVIEW, Role.PHYSICIAN, result.decision.subject)
    old_review = Lift(Reason.MISSED_DOSES_REVIEW, Role.PHYSICIAN, "missed-after:2025-01-01")
    assert apply_lifts([result.decision], [review])[0].outcome is Outcome.ALLOW
    assert apply_lifts([result.decision], [old_review])[0].outcome is Outcome.BLOCK


def test_steady_attendance_has_no_decision():
    result = assess_missed_doses(rules(), every_day(day(-60), day(-1)), TODAY, D("80"))
    assert result.decision is None and result.missed_days == 0
