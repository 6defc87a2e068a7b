"""Bottles on pumps, FEFO, transfers, witnessed waste, priming, returns, destruction, corrections."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from dispensing import stock
from dispensing.errors import Conflict, PermissionDenied, ReauthenticationFailed, ValidationFailed
from dispensing.models import (
    AuditEvent,
    ContainerAttachment,
    DoseKind,
    MeasureMethod,
    MovementKind,
    QuarantineOutcome,
    StockMovement,
)
from tests.stock_world import PASSWORD

D = Decimal


def _code(excinfo):
    return excinfo.value.params.get("code") or excinfo.value.code


def _attach(world, bottle, pump=0):
    return stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[pump].id,
                                  container_id=bottle.id, now=world.now)


def test_fefo_suggests_the_first_expiry_and_opened_bottles_first(world):
    late = world.receive("1000", lot_number="L-LATE", expiry=date(2028, 1, 31)).containers
    early = world.receive("1000", "1000", lot_number="L-EARLY", expiry=date(2027, 1, 31)).containers
    suggestions = stock.suggest_bottles(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id,
                                        day=world.today)
    assert [s.container_id for s in suggestions] == [early[0].id, early[1].id, late[0].id]
    # An opened bottle of the same expiry comes before a sealed one.
    _attach(world, early[1])
    stock.detach_container(world.session, world.pharmacist, location_id=world.pumps[0].id, remaining=D("600"),
                           return_to_location_id=world.safe.id, now=world.now)
    suggestions = stock.suggest_bottles(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id,
                                        day=world.today)
    assert [(s.container_id, s.opened, s.balance) for s in suggestions][:2] == [
        (early[1].id, True, D("600")), (early[0].id, False, D("1000"))]


def test_one_open_bottle_per_pump(world):
    first, second = world.receive("1000", "1000").containers
    attachment = _attach(world, first)
    assert stock.balance(world.session, location_id=world.pumps[0].id) == D("1000")
    assert stock.balance(world.session, container_id=first.id) == D("1000")
    with pytest.raises(Conflict) as refused:
        _attach(world, second)
    assert _code(refused) == "PUMP_HAS_OPEN_BOTTLE"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        _attach(world, first, pump=1)  # already on pump 1
    assert _code(refused) == "CONTAINER_NOT_IN_SAFE"
    world.session.rollback()
    # The database keeps the rule too.
    with pytest.raises(IntegrityError), world.session.begin_nested():
        world.session.add(ContainerAttachment(clinic_id=world.clinic.id, container_id=second.id,
                                              location_id=world.pumps[0].id, attached_at=world.now,
                                              attached_by_id=world.pharmacist.id))
        world.session.flush()
    assert attachment.detached_at is None


def test_detaching_returns_what_is_left_and_leaves_the_difference_at_the_pump(world):
    bottle = world.receive("1000").containers[0]
    _attach(world, bottle)
    for _ in range(3):
        world.dose(0, "10.00")
    attachment = stock.detach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                                        remaining=D("968.00"), return_to_location_id=world.safe.id, now=world.now)
    assert attachment.remaining == D("968.00") and attachment.detached_at == world.now
    assert stock.balance(world.session, location_id=world.safe.id) == D("968.00")
    assert stock.balance(world.session, location_id=world.pumps[0].id) == D("2.00")  # for the close to find
    with pytest.raises(ValidationFailed) as refused:
        stock.detach_container(world.session, world.pharmacist, location_id=world.pumps[0].id, remaining=D("0"),
                               now=world.now)
    assert _code(refused) == "NO_OPEN_BOTTLE"
    # The close books the 2 ml as loss against the detached bottle and the pump is empty again.
    reconciliation = stock.close_day(world.session, world.pharmacist, location_id=world.pumps[0].id,
                                     product_id=world.methadone.id, day=world.today,
                                     measurement=stock.Measurement(MeasureMethod.PUMP, value=D("0")),
                                     password=PASSWORD, now=world.now + timedelta(hours=9))
    assert reconciliation.loss == D("2.00") and reconciliation.within_tolerance
    assert stock.balance(world.session, container_id=bottle.id) == D("968.00")


def test_expired_lots_cannot_move_to_a_pump_or_counter(world):
    bottle = world.receive("1000", lot_number="L-SHORT", expiry=date(2026, 3, 2)).containers[0]
    tomorrow = world.now + timedelta(days=1)
    with pytest.raises(ValidationFailed) as refused:
        stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                               container_id=bottle.id, now=tomorrow)
    assert _code(refused) == "LOT_EXPIRED"
    world.session.rollback()
    # It can still go to quarantine and, once the pharmacist and the head of unit keep it for
    # return, be returned.
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.quarantine.id, container_id=bottle.id, now=tomorrow)
    stock.decide_quarantine(world.session, world.pharmacist, outcome=QuarantineOutcome.RETURN_TO_SUPPLIER,
                            reason="Hết hạn", password=PASSWORD, container_id=bottle.id, now=tomorrow,
                            unit_head=stock.Cosigner(world.unit_head.username, PASSWORD))
    line = stock.return_to_supplier(world.session, world.pharmacist, location_id=world.quarantine.id,
                                    container_id=bottle.id, reason="Hết hạn", password=PASSWORD, now=tomorrow)
    assert (line.kind, line.quantity, line.to_location_id) == (MovementKind.RETURN, D("1000"), None)
    assert stock.balance(world.session, clinic_id=world.clinic.id) == D("0")


def test_unit_dose_transfer_to_the_counter_and_insufficient_stock(world):
    lot = stock.LotIn(product_id=world.bup.id, lot_number="B-1", expiry_date=date(2027, 1, 31),
                      loose_quantity=D("100"))
    stock.receive_delivery(world.session, world.pharmacist, stock.DeliveryIn(
        location_id=world.safe.id, supplier="S", delivery_note_no="N", deliverer_name="D", lots=(lot,)),
        password=PASSWORD, now=world.now)
    lot_id = world.session.scalar(select(StockMovement.lot_id).where(StockMovement.product_id == world.bup.id))
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.shelf.id, lot_id=lot_id, quantity=D("30"), now=world.now)
    assert stock.balance(world.session, location_id=world.shelf.id, product_id=world.bup.id) == D("30")
    with pytest.raises(ValidationFailed) as refused:
        stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                             to_location_id=world.shelf.id, lot_id=lot_id, quantity=D("71"), now=world.now)
    assert _code(refused) == "INSUFFICIENT_STOCK"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                             to_location_id=world.pumps[0].id, lot_id=lot_id, quantity=D("1"), now=world.now)
    assert _code(refused) == "TRANSFER_NOT_ALLOWED"
    world.session.rollback()
    source = stock.dispensing_source(world.session, clinic_id=world.clinic.id, product_id=world.bup.id,
                                     business_date=world.today)
    assert (source.location.id, source.lot.id, source.container) == (world.shelf.id, lot_id, None)


def test_waste_needs_a_witness_who_is_someone_else_and_signs(world):
    bottle = world.receive("1000").containers[0]
    _attach(world, bottle)
    args = dict(location_id=world.pumps[0].id, quantity=D("3.5"), reason="Đổ khi lắp chai", password=PASSWORD,
                now=world.now)
    with pytest.raises(ValidationFailed) as refused:
        stock.record_waste(world.session, world.nurse, witness=None, **args)
    assert _code(refused) == "WITNESS_REQUIRED"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        stock.record_waste(world.session, world.nurse, witness=world.witness(world.nurse), **args)
    assert _code(refused) == "COSIGNER_IS_SIGNER"
    world.session.rollback()
    with pytest.raises(ReauthenticationFailed):
        stock.record_waste(world.session, world.nurse, witness=stock.Cosigner(world.pharmacist2.username, "bad-pw"),
                           **args)
    world.session.rollback()
    line = stock.record_waste(world.session, world.nurse, witness=world.witness(), **args)
    assert (line.kind, line.quantity, line.container_id, line.witness_id) == (
        MovementKind.WASTE, D("3.5"), bottle.id, world.pharmacist2.id)
    signers = world.session.execute(select(AuditEvent.actor_id).where(
        AuditEvent.action == "stock.waste.signed")).scalars().all()
    assert sorted(signers) == sorted([world.nurse.id, world.pharmacist2.id])
    with pytest.raises(PermissionDenied):
        stock.record_waste(world.session, world.physician, witness=world.witness(), **args)


def test_priming_and_calibration_liquid_come_from_the_open_bottle(world):
    with pytest.raises(ValidationFailed) as refused:
        stock.record_priming(world.session, world.nurse, location_id=world.pumps[0].id, quantity=D("5"),
                             now=world.now)
    assert _code(refused) == "NO_OPEN_BOTTLE"
    world.session.rollback()
    bottle = world.receive("1000").containers[0]
    _attach(world, bottle)
    stock.record_priming(world.session, world.nurse, location_id=world.pumps[0].id, quantity=D("5"), now=world.now)
    stock.record_calibration_liquid(world.session, world.pharmacist, location_id=world.pumps[0].id,
                                    quantity=D("35"), now=world.now)
    sheet = stock.worksheet(world.session, location_id=world.pumps[0].id, product_id=world.methadone.id,
                            day=world.today)
    assert (sheet.transferred_in, sheet.waste, sheet.expected_close) == (D("1000"), D("40"), D("960"))


def test_destruction_record_is_signed_by_two_and_books_each_item(world):
    a, b = world.receive("1000", "500").containers
    record = stock.destroy_stock(
        world.session, world.pharmacist, record_no="BBH-01/2026", method="Pha loãng, đổ bỏ", reason="Hỏng",
        items=[stock.DestructionItem(world.safe.id, container_id=a.id),
               stock.DestructionItem(world.safe.id, container_id=b.id, quantity=D("200"))],
        password=PASSWORD, witness=world.witness(), now=world.now)
    assert [line.movement.quantity for line in record.lines] == [D("1000"), D("200")]
    assert stock.balance(world.session, location_id=world.safe.id) == D("300")
    with pytest.raises(Conflict) as taken:
        stock.destroy_stock(world.session, world.pharmacist, record_no="BBH-01/2026", method="x", reason="y",
                            items=[stock.DestructionItem(world.safe.id, container_id=b.id)], password=PASSWORD,
                            witness=world.witness(), now=world.now)
    assert _code(taken) == "RECORD_NO_TAKEN"


def test_a_correction_is_a_new_signed_line_and_never_an_edit(world):
    bottle = world.receive("1000").containers[0]
    _attach(world, bottle)
    dose = world.dose(0, "8.00")
    line = world.session.scalar(select(StockMovement).where(StockMovement.dose_id == dose.id))
    correction = stock.correct_movement(world.session, world.pharmacist, movement_id=line.id, delta=D("-0.50"),
                                        reason="Bơm báo sai", password=PASSWORD, now=world.now)
    assert (correction.kind, correction.corrects_id, correction.from_location_id, correction.to_location_id,
            correction.dose_id, correction.amends_date) == (
        MovementKind.CORRECTION, line.id, None, world.pumps[0].id, dose.id, None)
    sheet = stock.worksheet(world.session, location_id=world.pumps[0].id, product_id=world.methadone.id,
                            day=world.today)
    assert sheet.issued == D("7.50") and sheet.issued_by_kind["dose"] == D("7.50")
    assert stock.balance(world.session, location_id=world.pumps[0].id) == D("992.50")
    with pytest.raises(ValidationFailed) as refused:
        stock.correct_movement(world.session, world.pharmacist, movement_id=line.id, delta=D("-7.51"),
                               reason="x", password=PASSWORD, now=world.now)
    assert _code(refused) == "CORRECTION_EXCEEDS_ORIGINAL"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        stock.correct_movement(world.session, world.pharmacist, movement_id=correction.id, delta=D("1"),
                               reason="x", password=PASSWORD, now=world.now)
    assert _code(refused) == "CORRECTION_OF_CORRECTION"
    world.session.rollback()
    with pytest.raises(PermissionDenied):
        stock.correct_movement(world.session, world.nurse, movement_id=line.id, delta=D("1"), reason="x",
                               password=PASSWORD, now=world.now)
    world.session.rollback()
    # The original line is untouched and untouchable.
    with pytest.raises(DBAPIError), world.session.begin_nested():
        world.session.execute(text("UPDATE stock_movement SET quantity_milli = 1 WHERE id = :id"), {"id": line.id})
    assert world.session.get(StockMovement, line.id).quantity == D("8.000")


def test_a_correction_of_a_closed_day_is_an_amendment_dated_today(world):
    bottle = world.receive("1000").containers[0]
    _attach(world, bottle)
    dose = world.dose(0, "8.00")
    close = dict(location_id=world.pumps[0].id, product_id=world.methadone.id, day=world.today,
                 measurement=stock.Measurement(MeasureMethod.PUMP, value=D("992.00")), password=PASSWORD)
    closed = stock.close_day(world.session, world.pharmacist, now=world.now + timedelta(hours=10), **close)
    closed_values = (closed.expected_close, closed.measured_close, closed.issued)
    line = world.session.scalar(select(StockMovement).where(StockMovement.dose_id == dose.id))
    # Correcting on the same (closed) day is refused; the next day it is an amendment.
    with pytest.raises(Conflict) as refused:
        stock.correct_movement(world.session, world.pharmacist, movement_id=line.id, delta=D("-1"), reason="x",
                               password=PASSWORD, now=world.now + timedelta(hours=11))
    assert _code(refused) == "DAY_CLOSED"
    world.session.rollback()
    next_day = world.now + timedelta(days=1)
    amendment = stock.correct_movement(world.session, world.pharmacist, movement_id=line.id, delta=D("-1"),
                                       reason="Liều thực tế 7 ml", password=PASSWORD, now=next_day)
    assert amendment.business_date == date(2026, 3, 3) and amendment.amends_date == date(2026, 3, 2)
    world.session.refresh(closed)
    assert (closed.expected_close, closed.measured_close, closed.issued) == closed_values
    sheet = stock.worksheet(world.session, location_id=world.pumps[0].id, product_id=world.methadone.id,
                            day=date(2026, 3, 3))
    assert (sheet.opening, sheet.issued, sheet.expected_close) == (D("992.00"), D("-1"), D("993.00"))


def test_the_dose_path_books_each_dose_once_with_its_kind(world):
    bottle = world.receive("1000").containers[0]
    _attach(world, bottle)
    take_home = world.dose(0, "60.00", kind=DoseKind.TAKE_HOME)
    replacement = world.dose(0, "4.00", kind=DoseKind.REPLACEMENT)
    assert stock.book_dose(world.session, take_home).kind is MovementKind.TAKE_HOME  # idempotent
    kinds = world.session.execute(select(StockMovement.kind, StockMovement.quantity).where(
        StockMovement.dose_id.in_([take_home.id, replacement.id])).order_by(StockMovement.id)).all()
    assert kinds == [(MovementKind.TAKE_HOME, D("60.000")), (MovementKind.REPLACEMENT, D("4.000"))]
    sheet = stock.worksheet(world.session, location_id=world.pumps[0].id, product_id=world.methadone.id,
                            day=world.today)
    assert sheet.issued_by_kind == {"dose": D("0"), "take_home": D("60"), "replacement": D("4")}
