"""The physician's work list and marking a task done."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event

from dispensing import orders, rules, tasks
from dispensing.errors import Conflict, PermissionDenied, ValidationFailed
from dispensing.models import ClinicalTask, OrderStatus, PatientFlag, Phase, Role, TaskStatus
from dispensing.rulebook import RuleBook
from dispensing.settings import PROJECT_ROOT
from tests import factories

TODAY = date(2026, 1, 20)
NOW = datetime(2026, 1, 20, 1, 0, tzinfo=UTC)


@pytest.fixture
def rule_set():
    return RuleBook(PROJECT_ROOT / "config" / "rules").load(rules.RuleSelection())


@pytest.fixture
def world(session):
    clinic = factories.clinic(session)
    physician = factories.user(session, clinic, Role.PHYSICIAN)
    nurse = factories.user(session, clinic, Role.NURSE)
    product, _lot, _safe, _pump = factories.methadone(session, clinic)

    def patient_with_history(last_dose: date, *, until=date(2026, 1, 30), first=date(2026, 1, 1)):
        patient = factories.patient(session, clinic, treatment_start_date=date(2025, 6, 1))
        order = factories.signed_order(session, clinic, patient, physician, valid_from=first, valid_until=until)
        day = first
        while day <= last_dose:
            factories.dose(session, clinic, patient, order, product, nurse, business_date=day)
            day += timedelta(days=1)
        return patient, order

    return {"clinic": clinic, "physician": physician, "nurse": nurse, "patient": patient_with_history}


def test_missed_dose_blocks_list_only_patients_the_counter_will_block(session, world, rule_set):
    dosed, _ = world["patient"](TODAY - timedelta(days=1))
    two_missed, _ = world["patient"](TODAY - timedelta(days=3))
    three_missed, _ = world["patient"](TODAY - timedelta(days=4))
    six_missed, _ = world["patient"](TODAY - timedelta(days=7))
    found = tasks.missed_dose_blocks(session, world["clinic"].id, rule_set, TODAY)
    assert [(item.patient.id, item.missed_days) for item in found] == [(six_missed.id, 6), (three_missed.id, 3)]
    assert found[1].decision.code is rules.Reason.MISSED_DOSES_REVIEW
    assert found[1].suggested is not None
    assert dosed.id not in {i.patient.id for i in found} and two_missed.id not in {i.patient.id for i in found}


def test_a_physician_order_that_lifts_the_block_takes_the_patient_off_the_list(session, world, rule_set):
    patient, _ = world["patient"](TODAY - timedelta(days=4))
    [item] = tasks.missed_dose_blocks(session, world["clinic"].id, rule_set, TODAY)
    factories.signed_order(session, world["clinic"], patient, world["physician"], mg="30", valid_from=TODAY,
                           valid_until=TODAY + timedelta(days=2),
                           lifts=[{"code": item.decision.code.value, "subject": item.decision.subject}])
    assert tasks.missed_dose_blocks(session, world["clinic"].id, rule_set, TODAY) == []


def test_a_long_absence_beyond_the_dose_window_is_found(session, world, rule_set):
    patient = factories.patient(session, world["clinic"], treatment_start_date=date(2024, 1, 1))
    product, _lot, _safe, _pump = factories.methadone(session, world["clinic"])
    old = factories.signed_order(session, world["clinic"], patient, world["physician"], valid_from=date(2025, 6, 1),
                                 valid_until=date(2025, 6, 30))
    factories.dose(session, world["clinic"], patient, old, product, world["nurse"], business_date=date(2025, 6, 10))
    factories.signed_order(session, world["clinic"], patient, world["physician"], valid_from=TODAY,
                           valid_until=TODAY + timedelta(days=5))
    [item] = tasks.missed_dose_blocks(session, world["clinic"].id, rule_set, TODAY)
    assert item.patient.id == patient.id and item.missed_days == (TODAY - date(2025, 6, 10)).days - 1
    assert item.decision.code is rules.Reason.MISSED_DOSES_RESTART_INDUCTION


def test_blocks_agree_with_the_counter_evaluation_on_the_demo_clinic(session, rule_set):
    from dispensing import demo
    from dispensing.counter_rules import counter_evaluation
    from dispensing.models import Clinic, Patient

    demo.seed(session, days=12, patients=30, today=TODAY, photos=False)
    clinic = session.query(Clinic).filter_by(code="HN-DD").one()
    blocking = {band.reason for band in rule_set.missed_dose.bands if band.outcome is rules.Outcome.BLOCK}
    expected = set()
    for patient in session.query(Patient).filter_by(clinic_id=clinic.id):
        evaluation, order = counter_evaluation(session, rule_set, patient, TODAY, NOW)
        for found in evaluation.decisions:
            if order is not None and found.code in blocking and found.outcome is rules.Outcome.BLOCK:
                expected.add((patient.id, evaluation.missed_days, found.code, found.subject))
    listed = {(i.patient.id, i.missed_days, i.decision.code, i.decision.subject)
              for i in tasks.missed_dose_blocks(session, clinic.id, rule_set, TODAY)}
    assert listed == expected and len(listed) >= 3


def test_the_list_costs_a_few_queries_whatever_the_number_of_patients(session, world, rule_set):
    for _ in range(6):
        world["patient"](TODAY - timedelta(days=1))
    world["patient"](TODAY - timedelta(days=5))
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(session.get_bind(), "before_cursor_execute", listener)
    try:
        found = tasks.missed_dose_blocks(session, world["clinic"].id, rule_set, TODAY)
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listener)
    assert len(found) == 1
    assert len(statements) <= 6, statements


def test_orders_ending_without_a_follow_up(session, world):
    ending, order = world["patient"](TODAY - timedelta(days=1), until=TODAY)
    followed, _ = world["patient"](TODAY - timedelta(days=1), until=TODAY)
    factories.signed_order(session, world["clinic"], followed, world["physician"], valid_from=TODAY + timedelta(days=1),
                           valid_until=TODAY + timedelta(days=30))
    world["patient"](TODAY - timedelta(days=1), until=TODAY + timedelta(days=10))
    found = tasks.orders_ending(session, world["clinic"].id, TODAY)
    assert [(item.patient.id, item.order.id) for item in found] == [(ending.id, order.id)]


def test_worklist_and_completing_a_task(session, world, rule_set):
    patient, _ = world["patient"](TODAY - timedelta(days=1))
    task = ClinicalTask(clinic_id=world["clinic"].id, patient_id=patient.id, code="INTERACTION_INDUCER_STARTED",
                        due_on=TODAY, message_vi="Xem lại", message_en="Review", rule_table_version="t@1")
    flag = PatientFlag(patient_id=patient.id, code="INTERACTION_WATCH", starts_on=TODAY - timedelta(days=2),
                       ends_on=TODAY + timedelta(days=12), message_vi="Theo dõi", message_en="Watch",
                       rule_table_version="t@1")
    old_flag = PatientFlag(patient_id=patient.id, code="INTERACTION_WATCH", starts_on=date(2025, 1, 1),
                           ends_on=date(2025, 1, 14), message_vi="Cũ", message_en="Old", rule_table_version="t@1")
    session.add_all([task, flag, old_flag])
    session.flush()
    worklist = tasks.physician_worklist(session, world["physician"], rule_set, TODAY)
    assert [t.id for t, _p in worklist.tasks] == [task.id]
    assert [f.id for f, _p in worklist.flags] == [flag.id]

    with pytest.raises(ValidationFailed):
        tasks.complete_task(session, world["physician"], task.id, "   ")
    done = tasks.complete_task(session, world["physician"], task.id, "Đã khám, giữ liều")
    assert done.status is TaskStatus.DONE and done.done_by_id == world["physician"].id
    with pytest.raises(Conflict):
        tasks.complete_task(session, world["physician"], task.id, "again")
    assert tasks.physician_worklist(session, world["physician"], rule_set, TODAY).tasks == []
    with pytest.raises(PermissionDenied):
        tasks.physician_worklist(session, world["nurse"], rule_set, TODAY)


def test_worklist_lists_the_physicians_own_drafts(session, world, rule_set):
    patient, _ = world["patient"](TODAY - timedelta(days=1))
    draft = orders.draft_order(session, world["physician"], patient.id, orders.OrderDraft(
        phase=Phase.MAINTENANCE, parts=(Decimal("60"),), valid_from=TODAY + timedelta(days=11),
        valid_until=TODAY + timedelta(days=40)))
    assert draft.status is OrderStatus.DRAFT
    worklist = tasks.physician_worklist(session, world["physician"], rule_set, TODAY)
    assert [o.id for o, _p in worklist.drafts] == [draft.id]


def test_missed_dose_review_for_one_patient_matches_the_counter(session, world, rule_set):
    from dispensing.counter_rules import counter_evaluation
    from dispensing.history import signed_orders

    for last in (TODAY, TODAY - timedelta(days=1), TODAY - timedelta(days=4), TODAY - timedelta(days=9)):
        patient, _ = world["patient"](last)
        assessment, decision = tasks.missed_dose_review(session, rule_set, patient.id,
                                                        signed_orders(session, patient.id), TODAY)
        evaluation, _order = counter_evaluation(session, rule_set, patient, TODAY, NOW)
        expected = [d for d in evaluation.decisions if d.code.value.startswith("MISSED_DOSES_")]
        assert assessment.missed_days == evaluation.missed_days
        assert assessment.suggested == evaluation.suggested
        assert ([decision] if decision else []) == expected
