"""§5 Pre-dose assessment (every dose): any sign found blocks the dose and any take-home; only a
physician order linked to that assessment lifts it (``Lift(code, physician, subject)``)."""

from __future__ import annotations

from dispensing.rules.decisions import Decision, Outcome, Role, decision
from dispensing.rules.history import PreDoseAssessment
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet


def assessment_subject(assessment: PreDoseAssessment) -> str:
    """What a lifting physician order must be linked to."""
    return f"assessment:{assessment.id}"


def check_predose(rule_set: RuleSet, assessment: PreDoseAssessment | None) -> list[Decision]:
    messages, version = rule_set.messages, rule_set.core.version
    if assessment is None:
        return [decision(messages, Outcome.BLOCK, Reason.PREDOSE_CHECK_MISSING, version)]
    signs = assessment.positive_signs(rule_set.core.predose.signs)
    if not signs:
        return []
    return [
        decision(
            messages,
            Outcome.BLOCK,
            Reason.PREDOSE_CHECK_POSITIVE,
            version,
            lift_role=Role.PHYSICIAN,
            subject=assessment_subject(assessment),
            signs=signs,
        )
    ]
