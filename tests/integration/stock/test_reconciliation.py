"""The end-of-day close: the §12 formula, tolerance, discrepancy entries and two signatures,
the balance method, locked days, snapshots and the dose path around a close."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from dispensing import stock
from dispensing.errors import Conflict, ReauthenticationFailed, ValidationFailed
from dispensing.models import (
    AuditEvent,
    Calibration,
    CalibrationMethod,
    DiscrepancyReason,
    DoseState,
    MeasureMethod,
    MovementKind,
    ReconciliationStatus,
    Reminder,
    ReminderKind,
    StockMovement,
    StockSnapshot,
)
from tests import factories
from tests.stock_world import PASSWORD

D = Decimal
EVENING = timedelta(hours=10)  # 18:00 in Hà Nội


def _code(excinfo):
    return excinfo.value.params.get("code") or excinfo.value.code


@pytest.fixture
def pump_day(world):
    """A pump with a 1000 ml bottle and 10 doses of 17.00 ml (170 ml): expected close 830 ml."""
    bottle = world.receive("1000", "1000").containers[0]
    stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id, container_id=bottle.id,
                           now=world.now)
    for _ in range(10):
        world.dose(0, "17.00")
    return bottle


def _close(world, value=None, *, method=MeasureMethod.PUMP, now=None, **extra):
    measurement = stock.Measurement(method, value=D(value) if value is not None else None,
                                    weight_g=extra.pop("weight_g", None), tare_g=extra.pop("tare_g", None))
    return stock.close_day(world.session, world.pharmacist, location_id=extra.pop("location_id", world.pumps[0].id),
                           product_id=world.methadone.id, day=extra.pop("day", world.today), measurement=measurement,
                           password=extra.pop("password", PASSWORD), now=now or world.now + EVENING, **extra)


def test_within_tolerance_a_shortage_is_booked_as_hao_hut_and_the_day_locks(world, pump_day):
    rec = _close(world, "828.50")
    assert (rec.opening, rec.transferred_in, rec.issued, rec.expected_close) == (D("0"), D("1000"), D("170"), D("830"))
    assert (rec.measured_close, rec.variance, rec.loss, rec.surplus) == (D("828.50"), D("-1.50"), D("1.50"), D("0"))
    assert rec.variance_pct == D("-0.150000") and rec.within_tolerance and rec.status is ReconciliationStatus.CLOSED
    assert rec.measure_method is MeasureMethod.PUMP and rec.closed_by_id == world.pharmacist.id
    adjustment = world.session.scalar(select(StockMovement).where(StockMovement.kind == MovementKind.ADJUSTMENT))
    assert (adjustment.from_location_id, adjustment.quantity, adjustment.container_id) == (
        world.pumps[0].id, D("1.50"), pump_day.id)
    assert stock.balance(world.session, location_id=world.pumps[0].id) == D("828.50")
    snapshot = world.session.scalars(select(StockSnapshot).where(StockSnapshot.location_id == world.pumps[0].id)).all()
    assert [(s.container_id, s.balance) for s in snapshot] == [(pump_day.id, D("828.50"))]
    assert world.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "stock.reconciliation.signed")) == 1
    # Locked: no line may be dated on the closed day; the row cannot be edited at the database.
    with pytest.raises(Conflict) as refused:
        world.dose(0, "8.50")
    assert _code(refused) == "DAY_CLOSED"
    world.session.rollback()
    with pytest.raises(DBAPIError), world.session.begin_nested():
        world.session.execute(text("UPDATE reconciliation SET loss_milli = 0 WHERE id = :id"), {"id": rec.id})
    with pytest.raises(Conflict) as again:
        _close(world, "828.50")
    assert _code(again) == "DAY_ALREADY_CLOSED"


def test_within_tolerance_a_surplus_is_dư_thừa(world, pump_day):
    rec = _close(world, "831.00")
    assert (rec.variance, rec.loss, rec.surplus, rec.within_tolerance) == (D("1.00"), D("0"), D("1.00"), True)
    assert stock.balance(world.session, location_id=world.pumps[0].id) == D("831.00")


def test_outside_tolerance_needs_a_discrepancy_entry_a_note_and_a_witness(world, pump_day):
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "820")
    assert _code(refused) == "DISCREPANCY_ENTRY_REQUIRED"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "820", discrepancy_reason=DiscrepancyReason.UNKNOWN)
    assert _code(refused) == "INVESTIGATION_NOTE_REQUIRED"
    world.session.rollback()
    note = "Kiểm tra lại sổ, camera; chưa rõ nguyên nhân"
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "820", discrepancy_reason=DiscrepancyReason.UNKNOWN, investigation_note=note)
    assert _code(refused) == "WITNESS_REQUIRED"
    world.session.rollback()
    with pytest.raises(ReauthenticationFailed):
        _close(world, "820", discrepancy_reason=DiscrepancyReason.UNKNOWN, investigation_note=note,
               witness=stock.Cosigner(world.nurse.username, "wrong-one"))
    world.session.rollback()
    assert world.session.scalar(select(func.count()).select_from(StockMovement).where(
        StockMovement.kind == MovementKind.ADJUSTMENT)) == 0
    rec = _close(world, "820", discrepancy_reason=DiscrepancyReason.UNKNOWN, investigation_note=note,
                 witness=world.witness(world.nurse))
    assert (rec.variance, rec.loss, rec.within_tolerance, rec.witness_id) == (D("-10"), D("10"), False, world.nurse.id)
    assert rec.discrepancy_reason is DiscrepancyReason.UNKNOWN and rec.investigation_note == note
    notified = world.session.scalars(select(Reminder.for_role).where(
        Reminder.kind == ReminderKind.STOCK_DISCREPANCY)).all()
    assert sorted(role.value for role in notified) == ["pharmacist", "unit_head"]
    actions = world.session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("stock.reconciliation%"))
                                    ).all()
    assert sorted(actions) == ["stock.reconciliation.discrepancy", "stock.reconciliation.signed",
                               "stock.reconciliation.signed"]


def test_the_balance_method_divides_the_weight_by_the_lot_density(world, pump_day):
    # 830 ml × 1.04 g/ml = 863.2 g; the reading 862.16 g → 829.00 ml.
    rec = _close(world, method=MeasureMethod.BALANCE, weight_g=D("1012.16"), tare_g=D("150.00"))
    assert rec.measured_close == D("829.00") and rec.variance == D("-1.00")
    assert rec.measure_detail["density_g_per_ml"] == "1.0400" and rec.measure_detail["net_g"] == "862.16"
    assert rec.measure_detail["rounding"] == "ROUND_HALF_UP"


def test_measurements_must_fit_the_product_and_location(world, pump_day):
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "10", method=MeasureMethod.COUNT)
    assert _code(refused) == "MEASURE_METHOD_NOT_ALLOWED"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "10", method=MeasureMethod.PUMP, location_id=world.safe.id)
    assert _code(refused) == "MEASURE_METHOD_NOT_ALLOWED"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "-1")
    assert _code(refused) == "MEASUREMENT_INVALID"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "10", day=world.today + timedelta(days=1))
    assert _code(refused) == "FUTURE_DAY"


def test_next_day_opens_with_the_measured_close_and_amendments_appear_there(world, pump_day):
    _close(world, "829.00")
    tomorrow = world.now + timedelta(days=1)
    world.now = tomorrow
    world.dose(0, "10.00")
    sheet = stock.worksheet(world.session, location_id=world.pumps[0].id, product_id=world.methadone.id,
                            day=world.today)
    assert (sheet.opening, sheet.issued, sheet.expected_close) == (D("829.00"), D("10.00"), D("819.00"))
    assert stock.balance(world.session, location_id=world.pumps[0].id, end_of=date(2026, 3, 2)) == D("829.00")
    assert stock.balance(world.session, location_id=world.pumps[0].id, at=datetime(2026, 3, 2, 3, tzinfo=UTC)) \
        == D("1000") - D("17.00") * 10  # before the close's adjustment


def test_a_later_closed_day_locks_the_earlier_ones(world, pump_day):
    world.now += timedelta(days=1)
    world.dose(0, "5")
    _close(world, "825.00", now=world.now + EVENING)
    with pytest.raises(Conflict) as refused:
        _close(world, "830", day=date(2026, 3, 2), now=world.now + EVENING)
    assert _code(refused) == "LATER_DAY_CLOSED"


def test_a_dose_in_flight_keeps_the_pump_open(world, pump_day):
    world.dose(0, "8.50", state=DoseState.PARTIAL)  # fine: final
    patient = world.patient()
    factories.dose(world.session, world.clinic, patient, world.orders[patient.id], world.methadone, world.nurse,
                   business_date=world.today, state=DoseState.RUNNING, device_id=world.devices[0].id)
    with pytest.raises(ValidationFailed) as refused:
        _close(world, "821.50")
    assert _code(refused) == "DOSES_IN_FLIGHT"


def test_the_safe_and_unit_dose_shelf_close_too(world, pump_day):
    rec = _close(world, "1000", method=MeasureMethod.CYLINDER, location_id=world.safe.id)
    assert (rec.opening, rec.received, rec.transferred_out, rec.expected_close, rec.variance) == (
        D("0"), D("2000"), D("1000"), D("1000"), D("0"))
    lot = stock.LotIn(product_id=world.bup.id, lot_number="B-1", expiry_date=date(2027, 1, 31),
                      loose_quantity=D("40"))
    stock.receive_delivery(world.session, world.pharmacist, stock.DeliveryIn(
        location_id=world.shelf.id, supplier="S", delivery_note_no="N", deliverer_name="D", lots=(lot,)),
        password=PASSWORD, now=world.now)
    # A unit-dose count has no absolute allowance: one tablet short is outside tolerance.
    with pytest.raises(ValidationFailed) as refused:
        stock.close_day(world.session, world.pharmacist, location_id=world.shelf.id, product_id=world.bup.id,
                        day=world.today, measurement=stock.Measurement(MeasureMethod.COUNT, value=D("39")),
                        password=PASSWORD, now=world.now + EVENING)
    assert _code(refused) == "DISCREPANCY_ENTRY_REQUIRED"


def test_device_bookings_priming_calibration_and_partial_doses(world, pump_day):
    device = world.devices[0]
    stock.book_priming(world.session, device_id=device.id, quantity=D("2.5"), recorded_by_id=world.nurse.id,
                       at=world.now)
    calibration = Calibration(device_id=device.id, method=CalibrationMethod.GRAVIMETRIC, performed_at=world.now,
                              performed_by_id=world.pharmacist.id, factor=D("1"), mean_error_pct=D("0.1"),
                              cv_pct=D("0.2"), passed=True, valid_until=world.now + timedelta(days=1),
                              liquid_used_ml=D("35.00"))
    world.session.add(calibration)
    world.session.flush()
    line = stock.book_calibration_liquid(world.session, calibration)
    assert (line.kind, line.quantity, line.container_id) == (MovementKind.CALIBRATION, D("35"), pump_day.id)
    partial = world.dose(0, "3.25", state=DoseState.PARTIAL)
    world.session.commit()
    sheet = stock.worksheet(world.session, location_id=world.pumps[0].id, product_id=world.methadone.id,
                            day=world.today)
    assert (sheet.issued, sheet.waste, sheet.expected_close) == (D("173.25"), D("37.5"), D("789.25"))
    partial.state = DoseState.REQUESTED  # not final: refused
    with pytest.raises(ValidationFailed) as refused:
        stock.book_dose(world.session, partial)
    assert _code(refused) == "DOSE_NOT_FINAL"


def test_open_worksheets_fill_every_location_that_held_or_moved_stock(world, pump_day):
    rows = stock.open_worksheets(world.session, world.clinic, world.today)
    by_location = {row.location_id: row for row in rows}
    assert set(by_location) == {world.safe.id, world.pumps[0].id}
    assert by_location[world.pumps[0].id].expected_close == D("830")
    assert all(row.status is ReconciliationStatus.OPEN for row in rows)
    # The close then updates the same row and locks it.
    rec = _close(world, "830")
    assert rec.id == by_location[world.pumps[0].id].id and rec.status is ReconciliationStatus.CLOSED
