"""The order form's live decisions: a draft-less evaluation that never writes."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dispensing import orders, rules
from dispensing.errors import PermissionDenied, ValidationFailed
from dispensing.models import AuditEvent, Order, OrderPart, Phase, Role
from dispensing.rulebook import RuleBook
from dispensing.settings import PROJECT_ROOT
from tests import factories

TODAY = date(2026, 1, 20)


@pytest.fixture
def rule_set():
    return RuleBook(PROJECT_ROOT / "config" / "rules").load(rules.RuleSelection())


def _draft(mg, phase=Phase.INDUCTION):
    return orders.OrderDraft(phase=phase, parts=(Decimal(mg),), valid_from=TODAY, valid_until=TODAY)


def test_decisions_match_signing_and_nothing_is_written(session, rule_set):
    clinic = factories.clinic(session)
    physician = factories.user(session, clinic, Role.PHYSICIAN)
    patient = factories.patient(session, clinic, treatment_start_date=TODAY)
    counts = [session.scalar(select(func.count()).select_from(model)) for model in (Order, OrderPart, AuditEvent)]

    too_high = orders.evaluate_draft(session, physician, rule_set, patient.id, _draft("35"), TODAY)
    assert rules.Reason.INDUCTION_FIRST_DOSE_TOO_HIGH in {d.code for d in rules.blocking(too_high)}
    fine = orders.evaluate_draft(session, physician, rule_set, patient.id, _draft("20"), TODAY)
    assert not rules.blocking(fine)
    session.flush()
    assert [session.scalar(select(func.count()).select_from(model)) for model in (Order, OrderPart, AuditEvent)] == counts
    assert not session.new and not session.dirty


def test_invalid_input_and_roles(session, rule_set):
    clinic = factories.clinic(session)
    physician = factories.user(session, clinic, Role.PHYSICIAN)
    nurse = factories.user(session, clinic, Role.NURSE)
    patient = factories.patient(session, clinic)
    with pytest.raises(ValidationFailed):
        orders.evaluate_draft(session, physician, rule_set, patient.id, _draft("20.25"), TODAY)
    with pytest.raises(PermissionDenied):
        orders.evaluate_draft(session, nurse, rule_set, patient.id, _draft("20"), TODAY)
