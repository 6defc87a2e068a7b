"""Decisions and their messages: reading helpers, lifts, and every message in both languages."""

from __future__ import annotations

from datetime import date

import pytest

from dispensing.rules import (
    ChecklistSign,
    DoseRange,
    Lift,
    MedicationChangeKind,
    Outcome,
    Phase,
    Reason,
    Role,
    apply_lifts,
    blocking,
    is_blocked,
    needing_acknowledgement,
    needing_reason,
    unacknowledged,
    worst,
)
from dispensing.rules.decisions import decision
from dispensing.rules.reasons import PLACEHOLDERS

from .builders import D, rules


def _sample(name: str) -> object:
    if name.endswith("_mg"):
        return D("30.5")
    if name in {
        "date",
        "valid_from",
        "valid_until",
        "last_day",
        "taken_on",
        "due_on",
        "until",
        "last_increase_on",
        "last_step_on",
    }:
        return date(2025, 6, 16)
    return {
        "phase": Phase.INDUCTION,
        "signs": (ChecklistSign.DROWSY, ChecklistSign.UNSTEADY_GAIT),
        "change": MedicationChangeKind.STARTED,
        "suggested": DoseRange(D("15"), D("30")),
        "lot": "HT-2501",
        "drug": "efavirenz",
        "resolution_ml": D("0.01"),
        "volume_ml": D("3.05"),
        "percent": D("10.5"),
        "max_percent": D("75"),
        "min_percent": D("25"),
    }.get(name, 7)


def _d(outcome: Outcome, code: Reason, **kw):
    params = {name: _sample(name) for name in PLACEHOLDERS[code]}
    return decision(rules().messages, outcome, code, "t@1", **kw, **params)


ALLOW = _d(Outcome.ALLOW, Reason.TAKE_HOME_ALLOWED)
WARN = _d(Outcome.WARN, Reason.HIGH_DOSE_REVIEW)
WARN_REASON = _d(Outcome.WARN, Reason.TAPER_BEFORE_ONE_YEAR, needs_reason=True)
BLOCK = _d(
    Outcome.BLOCK, Reason.MISSED_DOSES_REVIEW, lift_role=Role.PHYSICIAN, subject="missed-after:x"
)


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        pytest.param([], Outcome.ALLOW, id="nothing-to-say-is-allow"),
        pytest.param([ALLOW], Outcome.ALLOW, id="allow"),
        pytest.param([ALLOW, WARN], Outcome.WARN, id="warn-beats-allow"),
        pytest.param([WARN, BLOCK, ALLOW], Outcome.BLOCK, id="block-beats-all"),
    ],
)
def test_worst_outcome(decisions, expected):
    assert worst(decisions) is expected
    assert is_blocked(decisions) is (expected is Outcome.BLOCK)


def test_reading_helpers():
    decisions = [ALLOW, WARN, WARN_REASON, BLOCK]
    assert blocking(decisions) == [BLOCK]
    assert needing_acknowledgement(decisions) == [WARN, WARN_REASON]
    assert needing_reason(decisions) == [WARN_REASON]


@pytest.mark.parametrize(
    ("acknowledged", "missing"),
    [
        pytest.param({}, [WARN, WARN_REASON], id="nothing-acknowledged"),
        pytest.param({"HIGH_DOSE_REVIEW": None}, [WARN_REASON], id="plain-warn-acknowledged"),
        pytest.param(
            {"HIGH_DOSE_REVIEW": None, "TAPER_BEFORE_ONE_YEAR": "  "},
            [WARN_REASON],
            id="blank-reason-does-not-count",
        ),
        pytest.param(
            {"HIGH_DOSE_REVIEW": None, "TAPER_BEFORE_ONE_YEAR": "patient request"},
            [],
            id="all-acknowledged-with-reason",
        ),
    ],
)
def test_unacknowledged_warnings(acknowledged, missing):
    assert unacknowledged([ALLOW, WARN, WARN_REASON, BLOCK], acknowledged) == missing


def test_lifts_never_touch_warnings_or_unliftable_blocks():
    unliftable = _d(Outcome.BLOCK, Reason.TAPER_STEP_TOO_LARGE)
    lifts = [
        Lift(Reason.HIGH_DOSE_REVIEW, Role.PHYSICIAN),
        Lift(Reason.TAPER_STEP_TOO_LARGE, Role.PHYSICIAN),
    ]
    assert apply_lifts([WARN, unliftable], lifts) == [WARN, unliftable]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        pytest.param(
            {"outcome": Outcome.BLOCK, "needs_reason": True}, "only a WARN", id="reason-on-block"
        ),
        pytest.param(
            {"outcome": Outcome.WARN, "lift_role": Role.PHYSICIAN},
            "only a BLOCK",
            id="lift-role-on-warn",
        ),
    ],
)
def test_decision_shape_is_checked(kwargs, problem):
    outcome = kwargs.pop("outcome")
    with pytest.raises(ValueError, match=problem):
        decision(
            rules().messages,
            outcome,
            Reason.HIGH_DOSE_REVIEW,
            "t@1",
            dose_mg=D(1),
            threshold_mg=D(1),
            **kwargs,
        )


def test_missing_message_parameter_is_a_programming_error():
    with pytest.raises(ValueError, match="parameters missing"):
        decision(rules().messages, Outcome.WARN, Reason.HIGH_DOSE_REVIEW, "t@1", dose_mg=D(1))


VIETNAMESE_LETTERS = set("ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ")


@pytest.mark.parametrize("code", list(Reason), ids=[r.value for r in Reason])
def test_every_reason_has_vietnamese_and_english_text(code):
    params = {name: _sample(name) for name in PLACEHOLDERS[code]}
    vi, en = rules().messages.render(code, params)
    assert "{" not in vi and "{" not in en
    assert VIETNAMESE_LETTERS & set(vi.lower()), "Vietnamese text without diacritics"
    if any(name.endswith("_mg") for name in params):
        assert "30,5" in vi and "30.5" in en  # decimal comma in Vietnamese
    if "date" in params or "due_on" in params:
        assert "16/06/2025" in vi and "2025-06-16" in en
