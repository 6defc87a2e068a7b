"""§7 Vomiting after a dose: replacement of 25–75 % only for witnessed vomiting ≤ 30 minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispensing.rules import Outcome, ReplacementRequest, evaluate_replacement

from .builders import TODAY, D, at, codes, rules

DOSED = at(TODAY, 7, 0)


def _request(
    after: timedelta,
    proposed: str | None = None,
    witnessed: bool = True,
    earlier: str = "0",
    dose: str = "60",
):
    return ReplacementRequest(
        D(dose), DOSED, DOSED + after, witnessed, D(proposed) if proposed else None, D(earlier)
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param(
            timedelta(minutes=5), "VOMIT_REPLACEMENT_ALLOWED", id="5-min-replacement-allowed"
        ),
        pytest.param(
            timedelta(minutes=30), "VOMIT_REPLACEMENT_ALLOWED", id="30-min-replacement-allowed"
        ),
        pytest.param(
            timedelta(minutes=30, seconds=30),
            "VOMIT_REPLACEMENT_TOO_LATE",
            id="30-min-30-s-too-late",
        ),
        pytest.param(timedelta(minutes=31), "VOMIT_REPLACEMENT_TOO_LATE", id="31-min-too-late"),
        pytest.param(timedelta(hours=2), "VOMIT_REPLACEMENT_TOO_LATE", id="2-h-too-late"),
    ],
)
def test_replacement_only_within_30_minutes(after, expected):
    result = evaluate_replacement(rules(), _request(after))
    assert codes(result.decisions) == [expected]
    allowed = expected == "VOMIT_REPLACEMENT_ALLOWED"
    assert result.decisions[0].outcome is (Outcome.ALLOW if allowed else Outcome.BLOCK)
    assert (result.min_mg, result.max_mg) == ((D("15"), D("45")) if allowed else (None, None))


def test_too_late_message_says_31_minutes():
    result = evaluate_replacement(rules(), _request(timedelta(minutes=31)))
    assert result.decisions[0].message_vi == "Nôn sau 31 phút (quá 30 phút): không cho liều bù."
    assert result.decisions[0].lift_role is None


@pytest.mark.parametrize(
    ("proposed", "expected", "outcome"),
    [
        pytest.param("14.9", "VOMIT_REPLACEMENT_BELOW_RANGE", Outcome.WARN, id="below-25pct-warns"),
        pytest.param("15", "VOMIT_REPLACEMENT_ALLOWED", Outcome.ALLOW, id="25pct-of-60mg"),
        pytest.param("45", "VOMIT_REPLACEMENT_ALLOWED", Outcome.ALLOW, id="75pct-of-60mg-cap"),
        pytest.param(
            "45.1", "VOMIT_REPLACEMENT_TOO_LARGE", Outcome.BLOCK, id="above-75pct-cap-blocked"
        ),
        pytest.param(
            "60", "VOMIT_REPLACEMENT_TOO_LARGE", Outcome.BLOCK, id="full-dose-again-blocked"
        ),
    ],
)
def test_replacement_between_25_and_75_percent(proposed, expected, outcome):
    result = evaluate_replacement(rules(), _request(timedelta(minutes=10), proposed))
    assert codes(result.decisions) == [expected]
    assert result.decisions[0].outcome is outcome


def test_cap_counts_earlier_replacements_of_the_same_dose():
    result = evaluate_replacement(rules(), _request(timedelta(minutes=10), "20", earlier="30"))
    assert codes(result.decisions) == ["VOMIT_REPLACEMENT_TOO_LARGE"]
    assert result.max_mg == D("15")


def test_range_rounds_inward_to_0_1mg():
    result = evaluate_replacement(rules(), _request(timedelta(minutes=10), dose="33.3"))
    assert (result.min_mg, result.max_mg) == (D("8.4"), D("24.9"))  # 8.325 up, 24.975 down


@pytest.mark.parametrize(
    ("witnessed", "after", "expected"),
    [
        pytest.param(False, timedelta(minutes=10), "VOMIT_NOT_WITNESSED", id="not-witnessed"),
        pytest.param(
            True, timedelta(minutes=-1), "VOMIT_TIME_INVALID", id="vomit-recorded-before-dose"
        ),
    ],
)
def test_unwitnessed_or_impossible_vomiting_is_blocked(witnessed, after, expected):
    result = evaluate_replacement(rules(), _request(after, witnessed=witnessed))
    assert codes(result.decisions) == [expected]
    assert result.decisions[0].outcome is Outcome.BLOCK
