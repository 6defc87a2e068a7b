"""§5 Pre-dose assessment: any sign blocks the dose; only a physician order linked to that
assessment lifts it."""

from __future__ import annotations

import pytest

from dispensing.rules import Lift, Outcome, Reason, Role, apply_lifts, check_predose

from .builders import assessment, codes, rules

SIGNS = ["drowsy", "slurred_speech", "pinpoint_pupils", "alcohol_smell", "unsteady_gait"]


@pytest.mark.parametrize("sign", SIGNS, ids=[f"{s.replace('_', '-')}-blocks" for s in SIGNS])
def test_any_sign_blocks_the_dose(sign):
    (found,) = check_predose(rules(), assessment(**{sign: True}))
    assert found.code is Reason.PREDOSE_CHECK_POSITIVE
    assert found.outcome is Outcome.BLOCK
    assert found.lift_role is Role.PHYSICIAN
    assert found.subject == "assessment:a1"


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        pytest.param(assessment(), [], id="all-answers-no"),
        pytest.param(None, ["PREDOSE_CHECK_MISSING"], id="assessment-not-recorded"),
    ],
)
def test_clear_assessment_allows_and_missing_one_blocks(recorded, expected):
    found = check_predose(rules(), recorded)
    assert codes(found) == expected
    if expected:
        assert found[0].lift_role is None  # the nurse records the assessment; nobody overrides it


def test_message_names_the_signs_in_each_language():
    (found,) = check_predose(rules(), assessment(drowsy=True, alcohol_smell=True))
    assert "buồn ngủ, lơ mơ, có mùi rượu" in found.message_vi
    assert "drowsy/sedated, smell of alcohol" in found.message_en
    assert ("signs", "drowsy,alcohol_smell") in found.params


@pytest.mark.parametrize(
    ("lift", "lifted"),
    [
        pytest.param(
            Lift(Reason.PREDOSE_CHECK_POSITIVE, Role.PHYSICIAN, "assessment:a1", "order-9"),
            True,
            id="physician-order-linked-to-this-assessment",
        ),
        pytest.param(
            Lift(Reason.PREDOSE_CHECK_POSITIVE, Role.PHYSICIAN, "assessment:a0"),
            False,
            id="physician-order-linked-to-another-assessment",
        ),
        pytest.param(
            Lift(Reason.PREDOSE_CHECK_POSITIVE, Role.NURSE, "assessment:a1"),
            False,
            id="nurse-can-never-lift",
        ),
        pytest.param(
            Lift(Reason.MISSED_DOSES_REVIEW, Role.PHYSICIAN, "assessment:a1"),
            False,
            id="lift-for-another-reason",
        ),
    ],
)
def test_only_a_physician_order_linked_to_that_assessment_lifts_the_block(lift, lifted):
    (found,) = apply_lifts(check_predose(rules(), assessment(slurred_speech=True)), [lift])
    assert found.outcome is (Outcome.ALLOW if lifted else Outcome.BLOCK)
    assert found.lifted_by == (lift if lifted else None)
