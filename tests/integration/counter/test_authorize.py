"""Authorising a dose: one transaction, the rules re-checked, never twice."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dispensing import counter
from dispensing.counter import AlreadyDosed, DoseBlocked
from dispensing.errors import Conflict, PermissionDenied, ValidationFailed
from dispensing.models import (
    AuditEvent,
    ClinicalTask,
    ContainerAttachment,
    Dose,
    DoseEvent,
    DoseKind,
    DoseState,
)
from dispensing.orders import AcknowledgementRequired
from tests import counter_world


def test_authorised_dose_is_requested_with_mg_and_ml_from_the_pump_lot(world):
    patient = world.patient("60")
    assessment = world.assess(patient)

    result = world.authorize(patient, key="key-0001-abcdef")

    dose = result.dose
    assert result.created
    assert (dose.state, dose.kind, dose.part_no) == (DoseState.REQUESTED, DoseKind.OBSERVED, 1)
    assert (dose.planned_mg, dose.planned_ml) == (Decimal("60.000"), Decimal("6.000"))
    assert dose.business_date == world.today and dose.assessment_id == assessment.id
    assert (dose.counter_id, dose.device_id) == (world.counters[0].id, world.devices[0].id)
    attachment = world.session.scalar(select(ContainerAttachment).where(
        ContainerAttachment.location_id == world.pumps[0].id))
    assert dose.container_id == attachment.container_id
    event = world.session.scalar(select(DoseEvent).where(DoseEvent.dose_id == dose.id))
    assert event.state is DoseState.REQUESTED
    assert event.detail["conversion"]["volume_ml"] == "6.00"
    assert world.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "dose.requested", AuditEvent.entity_id == str(dose.id))) is not None


def test_a_repeated_request_returns_the_same_dose(world):
    patient = world.patient()
    world.assess(patient)
    first = world.authorize(patient, key="same-key-1234")

    again = world.authorize(patient, key="same-key-1234")

    assert not again.created and again.dose.id == first.dose.id
    assert world.session.scalar(select(Dose.id).where(Dose.patient_id == patient.id, Dose.id != first.dose.id)) is None


def test_the_same_key_for_another_request_is_refused(world):
    one, other = world.patient(), world.patient()
    world.assess(one)
    world.assess(other)
    world.authorize(one, key="shared-key-1234")

    with pytest.raises(Conflict) as caught:
        world.authorize(other, key="shared-key-1234")
    assert caught.value.params["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_a_second_counter_is_refused_already_dosed(world):
    patient = world.patient()
    world.assess(patient)
    first = world.authorize(patient, counter_index=0)

    with pytest.raises(AlreadyDosed) as caught:
        world.authorize(patient, counter_index=1)

    assert caught.value.dose_id == first.dose.id and caught.value.status == 409


def test_the_database_refuses_a_second_regular_dose_even_past_the_service(world):
    patient = world.patient()
    world.assess(patient)
    first = world.authorize(patient).dose
    copy = Dose(**{c.key: getattr(first, c.key) for c in Dose.__mapper__.column_attrs
                   if c.key not in ("id", "idempotency_key", "created_at")}, idempotency_key="other-key-9999")
    with pytest.raises(IntegrityError), world.session.begin_nested():
        world.session.add(copy)
        world.session.flush()


def test_without_a_pre_dose_check_the_dose_is_blocked(world):
    patient = world.patient()

    with pytest.raises(DoseBlocked) as caught:
        world.authorize(patient)

    assert [d.code.value for d in caught.value.decisions] == ["PREDOSE_CHECK_MISSING"]
    assert world.session.scalar(select(Dose.id).where(Dose.patient_id == patient.id)) is None


def test_a_positive_check_blocks_and_raises_a_physician_task(world):
    patient = world.patient()
    assessment = world.assess(patient, drowsy=True, pinpoint_pupils=True)

    with pytest.raises(DoseBlocked) as caught:
        world.authorize(patient)

    blocked = caught.value.decisions[0]
    assert blocked.code.value == "PREDOSE_CHECK_POSITIVE" and blocked.lift_role.value == "physician"
    task = world.session.scalar(select(ClinicalTask).where(ClinicalTask.patient_id == patient.id))
    assert task.code == "PREDOSE_CHECK_POSITIVE" and task.subject == f"assessment:{assessment.id}"


def test_missed_days_block_until_a_physician_reviews(world):
    from tests import factories

    patient = world.patient()
    order = world.order(patient)
    # Last dose four days before today: 3 missed days → BLOCK until physician review.
    factories.dose(world.session, world.clinic, patient, order, world.methadone, world.nurse,
                   business_date=world.today - timedelta(days=4))
    world.session.commit()
    world.assess(patient)

    with pytest.raises(DoseBlocked) as caught:
        world.authorize(patient)
    assert caught.value.decisions[0].code.value == "MISSED_DOSES_REVIEW"


def test_a_volume_rounded_by_the_device_needs_acknowledgement(world):
    patient = world.patient("60.3")  # 6.03 ml: exact, no WARN
    world.assess(patient)
    world.devices[0].settings = {"resolution_ml": "0.05"}  # 6.03 → 6.05 ml = 60.5 mg: WARN
    world.session.commit()

    with pytest.raises(AcknowledgementRequired) as caught:
        world.authorize(patient)
    assert [d.code.value for d in caught.value.decisions] == ["VOLUME_ROUNDED"]

    result = world.authorize(patient, acks={"VOLUME_ROUNDED": None})
    assert result.dose.planned_ml == Decimal("6.05")


def test_a_pump_without_valid_calibration_cannot_be_used(world):
    patient = world.patient()
    world.assess(patient)
    world.stock.now = counter_world.T0 + timedelta(hours=13)  # the calibration ran out at T0 + 12 h

    with pytest.raises(Conflict) as caught:
        world.authorize(patient)
    assert caught.value.params["code"] == "CALIBRATION_EXPIRED"


def test_a_failed_calibration_is_not_valid(world):
    patient = world.patient()
    world.assess(patient)
    counter_world.calibrate(world.session, world.devices[0].id, world.pharmacist, at=counter_world.T0 - timedelta(
        minutes=30), passed=False)
    world.session.commit()

    with pytest.raises(Conflict) as caught:
        world.authorize(patient)
    assert caught.value.params["code"] == "CALIBRATION_NOT_PASSED"


def test_the_application_ceiling_refuses_a_volume_above_it(world):
    patient = world.patient("120")
    world.assess(patient)
    world.devices[0].settings = {"ceiling_ml": "10.00"}
    world.session.commit()

    with pytest.raises(ValidationFailed) as caught:
        world.authorize(patient)
    assert caught.value.params["code"] == "OVER_CEILING"


def test_a_pump_without_an_open_bottle_cannot_be_used(world):
    from dispensing import stock

    patient = world.patient()
    world.assess(patient)
    stock.detach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                           remaining=Decimal("1000"), return_to_location_id=world.safe.id, now=world.now)

    with pytest.raises(ValidationFailed) as caught:
        world.authorize(patient)
    assert caught.value.params["code"] == "NO_OPEN_BOTTLE"


def test_only_nurses_authorise(world):
    patient = world.patient()
    world.assess(patient)
    with pytest.raises(PermissionDenied):
        world.authorize(patient, user=world.pharmacist)


def test_split_dose_parts_are_separate_slots_and_a_part_can_be_due_later(world):
    patient = world.patient(parts=("36", "24"))
    order = world.order(patient)
    order.parts[1].not_before = "14:00"  # T0 is 08:00 in Hà Nội
    world.session.commit()
    world.assess(patient)

    first = world.authorize(patient, part_no=1)
    assert first.dose.planned_ml == Decimal("3.60")
    with pytest.raises(ValidationFailed) as caught:
        world.authorize(patient, part_no=2)
    assert caught.value.params["code"] == "PART_NOT_YET_DUE"
    world.stock.now = counter_world.T0 + timedelta(hours=6, minutes=1)
    second = world.authorize(patient, part_no=2)
    assert second.dose.planned_ml == Decimal("2.40") and second.dose.id != first.dose.id
    with pytest.raises(ValidationFailed):
        world.authorize(patient, part_no=3)


def test_a_cancelled_request_frees_the_slot_and_the_pump_never_starts_it(world):
    patient = world.patient()
    world.assess(patient)
    first = world.authorize(patient).dose

    cancelled = counter.cancel_request(world.session, world.nurse, first.id, "patient left", now=world.now)

    assert (cancelled.state, cancelled.failure_reason) == (DoseState.FAILED, "CANCELLED")
    with pytest.raises(Conflict) as caught:
        counter.record_progress(world.session, world.counters[0].id, first.id, "programmed", now=world.now)
    assert caught.value.params["code"] == "DOSE_STATE_CONFLICT"
    again = world.authorize(patient)
    assert again.created and again.dose.id != first.id
