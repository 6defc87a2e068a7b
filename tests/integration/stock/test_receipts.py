"""Receiving deliveries: lots, labelled bottles, quarantine on anomalies, three signatures."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from dispensing import stock
from dispensing.errors import PermissionDenied, ReauthenticationFailed, ValidationFailed
from dispensing.models import (
    AnomalyKind,
    AuditEvent,
    MovementKind,
    ReceiptAnomaly,
    Reminder,
    ReminderKind,
    Role,
    StockMovement,
)
from tests.stock_world import PASSWORD

D = Decimal


def _codes(excinfo):
    return excinfo.value.params.get("code") or excinfo.value.code


def test_a_delivery_books_one_receipt_line_per_labelled_bottle(world):
    result = world.receive("1000", "1000", "100")
    labels = [c.label_code for c in result.containers]
    assert all(label.startswith("C") and label[1:].isdigit() for label in labels)
    assert len(set(labels)) == 3
    lines = world.session.scalars(select(StockMovement).where(StockMovement.kind == MovementKind.RECEIPT)).all()
    assert sorted(line.quantity for line in lines) == [D("100"), D("1000"), D("1000")]
    assert {line.to_location_id for line in lines} == {world.safe.id}
    assert stock.balance(world.session, location_id=world.safe.id) == D("2100")
    lot = result.containers[0].lot
    assert lot.concentration_verified_at is not None and lot.concentration_verified_by_id == world.pharmacist.id
    signed = world.session.scalars(select(AuditEvent).where(AuditEvent.action == "stock.receipt.signed")).all()
    assert len(signed) == 1 and signed[0].actor_id == world.pharmacist.id


def test_a_bottle_with_an_anomaly_goes_to_quarantine_with_a_signed_record(world):
    broken = stock.AnomalyIn(AnomalyKind.BROKEN_SEAL, "Niêm phong bị rách", D("1000"), D("1000"))
    result = world.receive("1000", anomaly=broken)
    bottle = result.quarantined[0]
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("1000")
    assert stock.balance(world.session, location_id=world.safe.id) == D("0")
    anomaly = world.session.scalar(select(ReceiptAnomaly))
    # The deliverer is an outside person: name and organisation (the supplier by default).
    assert (anomaly.kind, anomaly.container_id, anomaly.deliverer_name, anomaly.deliverer_organisation) == (
        AnomalyKind.BROKEN_SEAL, bottle.id, "Nguyễn Văn Giao", "CTCP Dược Danapha")
    assert anomaly.receiver_id == world.pharmacist.id and not anomaly.fully_signed
    reminder = world.session.scalar(select(Reminder).where(Reminder.kind == ReminderKind.ANOMALY_TO_SIGN))
    assert (reminder.subject_id, reminder.for_role) == (anomaly.id, Role.UNIT_HEAD)
    # Quarantined stock never reaches a pump.
    assert stock.suggest_bottles(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id,
                                 day=world.today) == []
    with pytest.raises(ValidationFailed) as refused:
        stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                               container_id=bottle.id, now=world.now)
    assert _codes(refused) == "STOCK_QUARANTINED"
    with pytest.raises(ValidationFailed) as refused:
        stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.quarantine.id,
                             to_location_id=world.safe.id, container_id=bottle.id, now=world.now)
    assert _codes(refused) == "QUARANTINE_RELEASE_NOT_ALLOWED"

    # Only the head of unit countersigns (not a nurse, physician, administrator or pharmacist), with
    # their password; the receiver cannot, nor can it be signed twice.
    for other in (world.nurse, world.physician, world.admin, world.pharmacist2):
        with pytest.raises(PermissionDenied) as refused:
            stock.countersign_anomaly(world.session, other, anomaly.id, password=PASSWORD)
        assert _codes(refused) == "UNIT_HEAD_ROLE_REQUIRED"
        world.session.rollback()
    with pytest.raises(ReauthenticationFailed):
        stock.countersign_anomaly(world.session, world.unit_head, anomaly.id, password="wrong-password")
    world.session.rollback()
    assert not world.session.get(ReceiptAnomaly, anomaly.id).fully_signed
    stock.countersign_anomaly(world.session, world.unit_head, anomaly.id, password=PASSWORD, now=world.now)
    assert anomaly.fully_signed and anomaly.unit_head_signed_at == world.now
    assert anomaly.unit_head_id == world.unit_head.id
    with pytest.raises(Exception) as again:
        stock.countersign_anomaly(world.session, world.unit_head, anomaly.id, password=PASSWORD)
    assert _codes(again) == "ANOMALY_ALREADY_SIGNED"
    payloads = world.session.scalars(
        select(AuditEvent.payload).where(AuditEvent.action == "stock.anomaly.signed").order_by(AuditEvent.seq)).all()
    assert ['"role":"receiver"' in payloads[0], '"role":"unit_head"' in payloads[1]] == [True, True]


def test_a_shortage_against_the_delivery_note_is_recorded_without_quarantine(world):
    lot = stock.LotIn(product_id=world.methadone.id, lot_number="DNP-09", expiry_date=date(2027, 1, 31),
                      bottles=(stock.BottleIn(D("1000")),), concentration_mg_per_ml=D("10"),
                      concentration_verified=True)
    delivery = stock.DeliveryIn(
        location_id=world.safe.id, supplier="Danapha", delivery_note_no="PN-77", deliverer_name="Lê Giao",
        lots=(lot,), anomalies=((0, stock.AnomalyIn(AnomalyKind.SHORTAGE, "Thiếu 1 chai", D("2000"), D("1000"))),),
        deliverer_organisation="  Công ty Vận tải Sao Mai ",
    )
    result = stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD, now=world.now)
    assert [a.kind for a in result.anomalies] == [AnomalyKind.SHORTAGE]
    assert [(a.deliverer_name, a.deliverer_organisation) for a in result.anomalies] == [
        ("Lê Giao", "Công ty Vận tải Sao Mai")]
    assert result.quarantined == []
    assert stock.balance(world.session, location_id=world.safe.id) == D("1000")


def test_unit_dose_stock_can_be_received_loose(world):
    lot = stock.LotIn(product_id=world.bup.id, lot_number="BUP-1", expiry_date=date(2027, 1, 31),
                      loose_quantity=D("500"))
    delivery = stock.DeliveryIn(location_id=world.safe.id, supplier="CPC1", delivery_note_no="PN-9",
                                deliverer_name="Trần Giao", lots=(lot,))
    stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD, now=world.now)
    assert stock.balance(world.session, location_id=world.safe.id, product_id=world.bup.id) == D("500")


@pytest.mark.parametrize(("change", "code"), [
    ({"expiry_date": date(2026, 3, 1)}, "LOT_EXPIRED"),
    ({"gtin": "08936014580029"}, "INVALID_GTIN"),
    ({"gtin": "4006381333931"}, "GTIN_MISMATCH"),
    ({"concentration_mg_per_ml": None}, "CONCENTRATION_REQUIRED"),
    ({"bottles": ()}, "RECEIPT_EMPTY"),
    ({"bottles": (stock.BottleIn(D("1000"), label_code="X12"),)}, "LABEL_INVALID"),
    ({"bottles": (stock.BottleIn(D("0")),)}, "QUANTITY_NOT_POSITIVE"),
    ({"loose_quantity": D("5"), "bottles": ()}, "LIQUID_NEEDS_BOTTLES"),
])
def test_bad_deliveries_are_refused_and_leave_nothing_behind(world, change, code):
    values = {"product_id": world.methadone.id, "lot_number": "DNP-02", "expiry_date": date(2027, 1, 31),
              "bottles": (stock.BottleIn(D("1000")),), "concentration_mg_per_ml": D("10"),
              "gtin": "08936014580028", **change}
    delivery = stock.DeliveryIn(location_id=world.safe.id, supplier="Danapha", delivery_note_no="PN-1",
                                deliverer_name="Giao", lots=(stock.LotIn(**values),))
    with pytest.raises(ValidationFailed) as refused:
        stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD, now=world.now)
    assert _codes(refused) == code
    world.session.rollback()
    assert world.session.scalar(select(StockMovement).limit(1)) is None


def test_only_a_pharmacist_with_the_right_password_receives(world):
    with pytest.raises(PermissionDenied):
        stock.receive_delivery(world.session, world.nurse, stock.DeliveryIn(world.safe.id, "S", "N", "D", ()),
                               password=PASSWORD)
    world.session.rollback()
    with pytest.raises(ReauthenticationFailed):
        stock.receive_delivery(world.session, world.pharmacist, stock.DeliveryIn(
            world.safe.id, "S", "N", "D",
            (stock.LotIn(world.methadone.id, "L", date(2027, 1, 1), (stock.BottleIn(D("1")),),
                         concentration_mg_per_ml=D("10")),)), password="nope-nope")


def test_a_printed_label_is_kept_and_cannot_be_used_twice(world):
    lot = stock.LotIn(product_id=world.methadone.id, lot_number="DNP-03", expiry_date=date(2027, 1, 31),
                      bottles=(stock.BottleIn(D("1000"), label_code="C700001"),), concentration_mg_per_ml=D("10"))
    delivery = stock.DeliveryIn(location_id=world.safe.id, supplier="S", delivery_note_no="N", deliverer_name="D",
                                lots=(lot,))
    result = stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD, now=world.now)
    assert result.containers[0].label_code == "C700001"
    with pytest.raises(Exception) as taken:
        stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD, now=world.now)
    assert _codes(taken) == "LABEL_TAKEN"


def test_an_unverified_lot_is_held_but_cannot_go_to_a_pump_until_verified(world):
    result = world.receive("1000", lot_number="HT-01", verified=False)
    bottle = result.containers[0]
    assert stock.suggest_bottles(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id,
                                 day=world.today) == []
    with pytest.raises(ValidationFailed) as refused:
        stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                               container_id=bottle.id, now=world.now)
    assert _codes(refused) == "CONCENTRATION_NOT_VERIFIED"
    world.session.rollback()
    with pytest.raises(ValidationFailed) as mismatch:
        stock.verify_lot_concentration(world.session, world.pharmacist, bottle.lot_id,
                                       concentration_mg_per_ml=D("5"), password=PASSWORD)
    assert _codes(mismatch) == "CONCENTRATION_MISMATCH"
    world.session.rollback()
    stock.verify_lot_concentration(world.session, world.pharmacist, bottle.lot_id,
                                   concentration_mg_per_ml=D("10"), password=PASSWORD, now=world.now)
    attachment = stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                                        label_code=bottle.label_code, now=world.now)
    assert attachment.container_id == bottle.id
