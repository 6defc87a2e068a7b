"""After the dose: vomiting and replacement, voids, take-home doses with labels and returns, and
unit-dose medicines identified by their GS1 pack."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from devices.labels import ContainerLabel, render_pdf
from devices.scan import classify_scan
from dispensing import counter, stock
from dispensing.counter import AlreadyDosed, DoseBlocked
from dispensing.errors import Conflict, ReauthenticationFailed, ValidationFailed
from dispensing.history import dose_records
from dispensing.models import (
    AuditEvent,
    ClinicalTask,
    Dose,
    DoseKind,
    DoseState,
    DoseVoid,
    MovementKind,
    StockMovement,
    TakeHomeReturn,
)
from tests import counter_world

PASSWORD = counter_world.PASSWORD


def given(world, harness, mg="60", **patient_values):
    patient = world.patient(mg, **patient_values)
    world.assess(patient)
    dose = world.authorize(patient).dose
    harness.deliver()
    world.session.expire_all()
    return patient, world.session.get(Dose, dose.id)


# -- vomiting and replacement -----------------------------------------------------------------


def test_witnessed_vomiting_within_30_minutes_lets_a_physician_order_a_replacement(world, harness):
    patient, dose = given(world, harness)
    vomited_at = dose.finished_at + timedelta(minutes=12)

    vomit, evaluation = counter.record_vomit(world.session, world.nurse, world.rule_set, dose_id=dose.id,
                                             observed_at=vomited_at, now=vomited_at + timedelta(minutes=1))

    assert vomit.witness_id == world.nurse.id
    assert (evaluation.min_mg, evaluation.max_mg) == (Decimal("15.0"), Decimal("45.0"))
    task = world.session.scalar(select(ClinicalTask).where(ClinicalTask.patient_id == patient.id))
    assert task.code == "VOMIT_REPLACEMENT_ALLOWED" and task.subject == f"dose:{dose.id}"

    with pytest.raises(DoseBlocked) as caught:
        counter.order_replacement(world.session, world.physician, world.rule_set, dose_id=dose.id,
                                  mg=Decimal("50"), password=PASSWORD, now=world.now)
    assert caught.value.decisions[0].code.value == "VOMIT_REPLACEMENT_TOO_LARGE"
    order = counter.order_replacement(world.session, world.physician, world.rule_set, dose_id=dose.id,
                                      mg=Decimal("30"), password=PASSWORD, now=world.now)
    replacement = counter.authorize_replacement(world.session, world.nurse, world.rule_set, order_id=order.id,
                                                counter_id=world.counters[0].id, idempotency_key="replace-0001",
                                                now=world.now).dose
    assert (replacement.kind, replacement.linked_dose_id, replacement.part_no, replacement.planned_ml) == (
        DoseKind.REPLACEMENT, dose.id, None, Decimal("3.000"))
    harness.deliver()
    line = world.session.scalar(select(StockMovement).where(StockMovement.dose_id == replacement.id))
    assert (line.kind, line.quantity) == (MovementKind.REPLACEMENT, Decimal("3.000"))
    with pytest.raises(Conflict) as again:
        counter.authorize_replacement(world.session, world.nurse, world.rule_set, order_id=order.id,
                                      counter_id=world.counters[0].id, idempotency_key="replace-0002", now=world.now)
    assert again.value.params["code"] == "REPLACEMENT_ALREADY_GIVEN"


def test_vomiting_after_30_minutes_gets_no_replacement(world, harness):
    _patient, dose = given(world, harness)
    late = dose.finished_at + timedelta(minutes=40)
    counter.record_vomit(world.session, world.nurse, world.rule_set, dose_id=dose.id, observed_at=late,
                         now=late + timedelta(minutes=1))

    with pytest.raises(DoseBlocked) as caught:
        counter.order_replacement(world.session, world.physician, world.rule_set, dose_id=dose.id,
                                  mg=Decimal("20"), password=PASSWORD, now=world.now)
    assert caught.value.decisions[0].code.value == "VOMIT_REPLACEMENT_TOO_LATE"


def test_unwitnessed_vomiting_and_a_nurse_ordering_are_refused(world, harness):
    from dispensing.errors import PermissionDenied

    _patient, dose = given(world, harness)
    at = dose.finished_at + timedelta(minutes=5)
    _vomit, evaluation = counter.record_vomit(world.session, world.nurse, world.rule_set, dose_id=dose.id,
                                              observed_at=at, seen_by_recorder=False, now=at)
    assert evaluation.decisions[0].code.value == "VOMIT_NOT_WITNESSED"
    with pytest.raises(PermissionDenied):
        counter.order_replacement(world.session, world.nurse, world.rule_set, dose_id=dose.id, mg=Decimal("20"),
                                  password=PASSWORD, now=world.now)
    with pytest.raises(ValidationFailed):
        counter.record_vomit(world.session, world.nurse, world.rule_set, dose_id=dose.id,
                             observed_at=dose.finished_at - timedelta(minutes=1), now=at)


# -- voids ------------------------------------------------------------------------------------


def test_a_void_is_a_new_witnessed_record_and_the_original_stays(world, harness):
    patient, dose = given(world, harness)
    before = world.pump_balance()
    assert len(dose_records(world.session, patient.id, world.today)) == 1

    void = counter.void_dose(world.session, world.nurse, dose_id=dose.id, reason="wrong patient scanned",
                             password=PASSWORD, witness=world.witness_signature(), now=world.now)

    world.session.expire_all()
    original = world.session.get(Dose, dose.id)
    assert (original.state, original.delivered_ml) == (DoseState.COMPLETED, Decimal("6.000"))
    assert (void.voided_by_id, void.witness_id) == (world.nurse.id, world.witness.id)
    assert world.pump_balance() == before  # the liquid did leave the pump
    assert dose_records(world.session, patient.id, world.today) == ()  # not in the history any more
    signers = set(world.session.scalars(select(AuditEvent.actor_id).where(AuditEvent.action == "dose.voided")))
    assert signers == {world.nurse.id, world.witness.id}
    with pytest.raises(Conflict):
        counter.void_dose(world.session, world.nurse, dose_id=dose.id, reason="again", password=PASSWORD,
                          witness=world.witness_signature(), now=world.now)
    # The slot stays taken: giving the part again needs a physician's replacement order.
    with pytest.raises(AlreadyDosed):
        world.authorize(patient)
    order = counter.order_replacement(world.session, world.physician, world.rule_set, dose_id=dose.id,
                                      mg=Decimal("60"), password=PASSWORD, now=world.now)
    assert order.reason == "void"


def test_a_void_needs_a_reason_a_password_and_another_witness(world, harness):
    _patient, dose = given(world, harness)

    def void(**values):
        arguments = {"dose_id": dose.id, "reason": "typo", "password": PASSWORD,
                     "witness": world.witness_signature(), "now": world.now, **values}
        return counter.void_dose(world.session, world.nurse, **arguments)

    with pytest.raises(ValidationFailed):
        void(reason=" ")
    with pytest.raises(ReauthenticationFailed):
        void(password="not-the-password")
    with pytest.raises(ValidationFailed):
        void(witness=world.witness_signature(world.nurse))
    with pytest.raises(ReauthenticationFailed):
        void(witness=counter_world.stock.Cosigner(world.witness.username, "wrong-password"))
    assert world.session.scalar(select(func.count()).select_from(DoseVoid)) == 0


def test_void_rows_refuse_update_and_delete(world, harness):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    _patient, dose = given(world, harness)
    void = counter.void_dose(world.session, world.nurse, dose_id=dose.id, reason="typo", password=PASSWORD,
                             witness=world.witness_signature(), now=world.now)
    for sql in ("UPDATE dose_void SET reason = 'x' WHERE id = :id", "DELETE FROM dose_void WHERE id = :id"):
        with pytest.raises(DBAPIError), world.session.begin_nested():
            world.session.execute(text(sql), {"id": void.id})


# -- take-home ----------------------------------------------------------------------------------


def take_home_world(world, *, commitment=True, plan=None):
    world.clinic.take_home_enabled = True
    world.clinic.rules_take_home = "us-2024"
    world.session.commit()
    world.rule_set = world.rulebook.for_clinic(world.clinic)
    patient = world.patient(treatment_start_date=date(2024, 1, 10),
                            take_home_commitment_on=date(2025, 1, 5) if commitment else None)
    world.order(patient).take_home_plan = plan if plan is not None else {"max_days": 2}
    world.session.commit()
    world.assess(patient)
    return patient


def prepare(world, patient, days=2, key="take-home-0001", first_day=None):
    return counter.prepare_take_home(world.session, world.nurse, world.rule_set, patient_id=patient.id,
                                     counter_id=world.counters[0].id, first_day=first_day or world.today
                                     + timedelta(days=1), days=days, idempotency_key=key, now=world.now)


def test_take_home_doses_are_filled_labelled_booked_and_returned(world, harness):
    patient = take_home_world(world)

    result = prepare(world, patient)

    doses = result.doses
    assert [d.business_date for d in doses] == [world.today + timedelta(days=1), world.today + timedelta(days=2)]
    assert all(d.kind is DoseKind.TAKE_HOME and d.state is DoseState.REQUESTED for d in doses)
    assert prepare(world, patient).doses == doses  # the same request again
    assert harness.deliver() and harness.deliver()
    world.session.expire_all()
    lines = world.session.scalars(select(StockMovement).where(StockMovement.dose_id.in_([d.id for d in doses]))).all()
    assert sorted(line.quantity for line in lines) == [Decimal("6.000"), Decimal("6.000")]
    assert {line.kind for line in lines} == {MovementKind.TAKE_HOME}

    data = counter.take_home_label(world.session, world.nurse, doses[0].id)
    label = ContainerLabel(**data.__dict__)
    label.validate()
    assert render_pdf(label).startswith(b"%PDF")
    scan = classify_scan(data.label_id)
    assert scan.value == data.label_id and data.patient_code == patient.card_barcode

    returned = counter.record_take_home_return(world.session, world.nurse, dose_id=doses[0].id, empty=True,
                                               now=world.now + timedelta(days=2))
    assert returned.empty and world.session.scalar(select(TakeHomeReturn.id)) == returned.id
    with pytest.raises(Conflict):
        counter.record_take_home_return(world.session, world.nurse, dose_id=doses[0].id, empty=True, now=world.now)
    left = counter.record_take_home_return(world.session, world.nurse, dose_id=doses[1].id, empty=False,
                                           remaining_ml=Decimal("2.50"), witness=world.witness_signature(),
                                           now=world.now + timedelta(days=3))
    assert (left.remaining_ml, left.witness_id) == (Decimal("2.500"), world.witness.id)
    # A take-home day counts as dosed for that day.
    assert {r.on for r in dose_records(world.session, patient.id, world.today + timedelta(days=2))} >= {
        world.today + timedelta(days=1), world.today + timedelta(days=2)}


def test_take_home_lines_are_booked_on_the_day_the_liquid_leaves_the_pump(world, harness):
    patient = take_home_world(world)
    pump, methadone = world.pumps[0], world.methadone
    opening = world.pump_balance()
    doses = prepare(world, patient, days=2).doses
    assert {d.business_date for d in doses} == {world.today + timedelta(days=1), world.today + timedelta(days=2)}

    # Still in the pump's queue: today's close must wait for them, though they cover later days.
    with pytest.raises(ValidationFailed) as waiting:
        stock.close_day(world.session, world.pharmacist, location_id=pump.id, product_id=methadone.id,
                        day=world.today, measurement=stock.Measurement("pump", value=opening), password=PASSWORD,
                        now=world.now)
    assert waiting.value.params["code"] == "DOSES_IN_FLIGHT"

    assert harness.deliver() and harness.deliver()
    world.session.expire_all()
    lines = world.session.scalars(select(StockMovement).where(StockMovement.dose_id.in_([d.id for d in doses]))).all()
    assert [line.business_date for line in lines] == [world.today, world.today]
    sheet = stock.worksheet(world.session, location_id=pump.id, product_id=methadone.id, day=world.today)
    assert sheet.issued_by_kind[MovementKind.TAKE_HOME.value] == sheet.issued == Decimal("12.000")
    later = stock.worksheet(world.session, location_id=pump.id, product_id=methadone.id,
                            day=world.today + timedelta(days=1))
    assert later.issued == 0
    # The pump's day balances: what the pump holds is what the ledger expects.
    closed = stock.close_day(world.session, world.pharmacist, location_id=pump.id, product_id=methadone.id,
                             day=world.today, measurement=stock.Measurement("pump", value=world.pump_balance()),
                             password=PASSWORD, now=world.now)
    assert closed.expected_close == opening - Decimal("12.000") == closed.measured_close
    assert closed.variance == 0 and closed.issued == Decimal("12.000")


def test_take_home_is_refused_when_the_clinic_the_order_or_the_rules_do_not_allow_it(world):
    patient = world.patient()
    world.assess(patient)
    with pytest.raises(Conflict) as caught:
        prepare(world, patient)
    assert caught.value.params["code"] == "TAKE_HOME_NOT_ENABLED"

    no_plan = take_home_world(world, plan={})
    with pytest.raises(Conflict) as caught:
        prepare(world, no_plan, key="take-home-0002")
    assert caught.value.params["code"] == "ORDER_NO_TAKE_HOME"

    no_commitment = take_home_world(world, commitment=False)
    with pytest.raises(DoseBlocked) as caught:
        prepare(world, no_commitment, key="take-home-0003")
    assert caught.value.params["code"] == "TAKE_HOME_BLOCKED"
    assert [d.code.value for d in caught.value.decisions] == ["TAKE_HOME_COMMITMENT_MISSING"]

    too_many = take_home_world(world)
    with pytest.raises(Conflict):
        prepare(world, too_many, days=3, key="take-home-0004")


def test_take_home_days_prepared_earlier_count_towards_the_weekly_limit(world):
    # South Australia: at most 2 take-home days per calendar week. Days prepared by an earlier
    # request lie after today, outside the dose history the rules read, and must still count.
    patient = take_home_world(world, plan={"max_days": 4})
    world.clinic.rules_take_home = "south-australia"
    world.session.commit()
    world.rule_set = world.rulebook.for_clinic(world.clinic)
    monday = world.today + timedelta(days=7 - world.today.weekday())
    first = prepare(world, patient, days=2, first_day=monday, key="take-home-week-1")
    assert [d.business_date for d in first.doses] == [monday, monday + timedelta(days=1)]

    with pytest.raises(DoseBlocked) as caught:
        prepare(world, patient, days=1, first_day=monday + timedelta(days=2), key="take-home-week-2")
    assert [d.code.value for d in caught.value.decisions] == ["TAKE_HOME_WEEKLY_LIMIT"]
    assert dict(caught.value.decisions[0].params)["count"] == "3"
    # The next calendar week is free again.
    assert prepare(world, patient, days=1, first_day=monday + timedelta(days=7), key="take-home-week-3").doses


def test_a_positive_check_today_refuses_take_home(world):
    patient = take_home_world(world)
    world.assess(patient, alcohol_smell=True)
    with pytest.raises(DoseBlocked) as caught:
        prepare(world, patient)
    assert "TAKE_HOME_PREDOSE_BLOCKED" in [d.code.value for d in caught.value.decisions]


# -- unit-dose medicines ------------------------------------------------------------------------

GTIN = "08936014580011"


def unit_dose_world(world):
    world.bup.gtin = GTIN
    world.session.commit()
    delivery = stock.DeliveryIn(location_id=world.safe.id, supplier="CTCP Dược", delivery_note_no="PN-BUP-1",
                                deliverer_name="Nguyễn Văn Giao", lots=(stock.LotIn(
                                    product_id=world.bup.id, lot_number="BUP-L1", expiry_date=date(2027, 6, 30),
                                    loose_quantity=Decimal("100"), gtin=GTIN),))
    received = stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD,
                                      now=world.now - timedelta(days=1))
    lot_id = received.receipt.lines[0].lot_id
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.shelf.id, lot_id=lot_id, quantity=Decimal("30"),
                         now=world.now - timedelta(hours=2))
    patient = world.patient()
    order = counter.sign_medication_order(world.session, world.physician, patient_id=patient.id,
                                          product_id=world.bup.id, units_per_administration=Decimal("2"),
                                          administrations_per_day=1, valid_from=world.today - timedelta(days=3),
                                          valid_until=world.today + timedelta(days=10), password=PASSWORD,
                                          now=world.now)
    return patient, order


def pack(expiry="270630", lot="BUP-L1", gtin=GTIN):
    scan = classify_scan(f"]d201{gtin}17{expiry}10{lot}")
    return counter.PackScan(gtin=scan.gtin, lot=scan.lot, expiry=scan.expiry) if scan.accepted else scan


def give_unit(world, patient, order, *, scan=None, units="2", key="unit-dose-0001"):
    return counter.dispense_unit_dose(world.session, world.nurse, world.rule_set, patient_id=patient.id,
                                      medication_order_id=order.id, administration_no=1,
                                      counter_id=world.counters[0].id, scan=scan or pack(), units=Decimal(units),
                                      idempotency_key=key, now=world.now)


def test_a_unit_dose_medicine_is_given_from_its_pack_and_booked_out_of_the_shelf(world):
    patient, order = unit_dose_world(world)
    world.assess(patient)  # buprenorphine is controlled: the pre-dose check applies
    shelf_before = stock.balance(world.session, location_id=world.shelf.id, product_id=world.bup.id)

    result = give_unit(world, patient, order)

    dose = result.dose
    assert (dose.state, dose.kind, dose.order_id, dose.medication_order_id) == (
        DoseState.COMPLETED, DoseKind.OBSERVED, None, order.id)
    assert (dose.planned_units, dose.delivered_units, dose.device_id) == (Decimal("2.000"), Decimal("2.000"), None)
    assert stock.balance(world.session, location_id=world.shelf.id, product_id=world.bup.id) == shelf_before - 2
    assert give_unit(world, patient, order).dose.id == dose.id  # the same request again
    with pytest.raises(AlreadyDosed):
        give_unit(world, patient, order, key="unit-dose-0002")
    # The tablet and the methadone part of the same day do not collide.
    methadone = world.authorize(patient)
    assert methadone.created
    # …and a tablet is not a methadone dose in the patient's history.
    assert dose_records(world.session, patient.id, world.today) == ()


@pytest.mark.parametrize(
    ("scan", "units", "code"),
    [
        (lambda: pack(gtin="08904159100012"), "2", "PACK_WRONG_PRODUCT"),
        (lambda: pack(lot="BUP-L9"), "2", "PACK_LOT_UNKNOWN"),
        (lambda: pack(expiry="270531"), "2", "PACK_EXPIRY_MISMATCH"),
        (lambda: pack(), "3", "UNITS_MISMATCH"),
    ],
)
def test_a_wrong_pack_or_count_is_refused(world, scan, units, code):
    patient, order = unit_dose_world(world)
    world.assess(patient)
    with pytest.raises(ValidationFailed) as caught:
        give_unit(world, patient, order, scan=scan(), units=units)
    assert caught.value.params["code"] == code


def test_a_controlled_unit_dose_needs_the_pre_dose_check(world):
    patient, order = unit_dose_world(world)
    with pytest.raises(DoseBlocked):
        give_unit(world, patient, order)


def test_a_stopped_medication_order_is_not_given(world):
    patient, order = unit_dose_world(world)
    world.assess(patient)
    counter.stop_medication_order(world.session, world.physician, order.id, stopped_on=world.today,
                                  password=PASSWORD, now=world.now)
    with pytest.raises(Conflict) as caught:
        give_unit(world, patient, order)
    assert caught.value.params["code"] == "MEDICATION_ORDER_NOT_IN_FORCE"
