"""Receiving controlled stock: the delivery record, its lots and labelled bottles, anomalies.

A delivery (phiếu nhập) books one receipt line per bottle (or per lot for loose unit-dose stock)
into the receiving location. A bottle with an anomaly (broken seal, cracked, short volume, wrong
label, in excess of the delivery note) is booked straight into quarantine: it cannot be issued.
Each anomaly record carries the deliverer's name and organisation (an outside person, not a user:
they sign the paper copy) and the receiver's signature; the head of unit (role ``unit_head``)
countersigns it afterwards (``countersign_anomaly``). What then happens to a quarantined bottle is a
separate signed decision (``dispensing.stock.quarantine``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.accounts import reauthenticate
from dispensing.clock import business_date, utcnow
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from dispensing.models import (
    AnomalyKind,
    Clinic,
    Container,
    Location,
    LocationKind,
    Lot,
    MovementKind,
    Product,
    ProductKind,
    Receipt,
    ReceiptAnomaly,
    ReceiptLine,
    Reminder,
    ReminderKind,
    Role,
    User,
)
from dispensing.permissions import require_role
from dispensing.stock.ledger import append_line, ledger_quantity, lock_locations
from dispensing.stock.signatures import can_sign_as_unit_head, require_same_clinic, sign

# Our own bottle labels: "C" and digits (the scanner classifies them as container labels).
LABEL_PATTERN = re.compile(r"^C\d{1,18}$")
# Anomalies about the delivery as a whole; they name no bottle and quarantine nothing.
DELIVERY_LEVEL_KINDS = frozenset({AnomalyKind.SHORTAGE})


@dataclass(frozen=True)
class AnomalyIn:
    kind: AnomalyKind
    description: str
    expected_quantity: Decimal | None = None
    found_quantity: Decimal | None = None


@dataclass(frozen=True)
class BottleIn:
    """One bottle (or pack) as received. ``quantity`` is what it holds; ``nominal`` what the
    label says (defaults to ``quantity``). A printed label may be given, else one is made."""

    quantity: Decimal
    nominal: Decimal | None = None
    label_code: str | None = None
    anomaly: AnomalyIn | None = None


@dataclass(frozen=True)
class LotIn:
    product_id: int
    lot_number: str
    expiry_date: date
    bottles: tuple[BottleIn, ...] = ()
    # Unit-dose stock received loose (not in labelled packs).
    loose_quantity: Decimal | None = None
    concentration_mg_per_ml: Decimal | None = None
    density_g_per_ml: Decimal | None = None
    gtin: str | None = None
    manufacturer: str | None = None
    # The receiver checked the concentration against the certificate of analysis.
    concentration_verified: bool = False


@dataclass(frozen=True)
class DeliveryIn:
    location_id: int
    supplier: str
    delivery_note_no: str
    deliverer_name: str
    lots: tuple[LotIn, ...]
    # Delivery-level anomalies (shortage against the delivery note), lot by index into ``lots``.
    anomalies: tuple[tuple[int | None, AnomalyIn], ...] = ()
    note: str | None = None
    # The deliverer's organisation when it is not the supplier (a carrier, the provincial centre).
    deliverer_organisation: str | None = None


@dataclass
class ReceiptResult:
    receipt: Receipt
    containers: list[Container] = field(default_factory=list)
    quarantined: list[Container] = field(default_factory=list)
    anomalies: list[ReceiptAnomaly] = field(default_factory=list)


def gtin_is_valid(gtin: str) -> bool:
    """Return True for a GTIN-8/12/13/14 whose check digit is right (GS1 mod-10)."""
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        return False
    digits = [int(ch) for ch in gtin]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def _same_gtin(a: str, b: str) -> bool:
    return a.zfill(14) == b.zfill(14)


def _require_text(value: str | None, code: str) -> str:
    if value is None or not value.strip():
        raise ValidationFailed("required text missing", code=code)
    return value.strip()


def quarantine_location(session: Session, clinic_id: int) -> Location:
    """Return the clinic's quarantine location (khu biệt trữ). Raises ValidationFailed."""
    location = session.scalar(
        select(Location)
        .where(Location.clinic_id == clinic_id, Location.kind == LocationKind.QUARANTINE, Location.active.is_(True))
        .order_by(Location.id)
        .limit(1)
    )
    if location is None:
        raise ValidationFailed("no quarantine location", code="NO_QUARANTINE_LOCATION")
    return location


def _lot_for(session: Session, product: Product, item: LotIn, user: User, now: datetime, today: date) -> Lot:
    lot_number = _require_text(item.lot_number, "LOT_NUMBER_REQUIRED")
    if item.expiry_date < today:
        raise ValidationFailed("lot expired", code="LOT_EXPIRED", lot_number=lot_number)
    if item.gtin is not None:
        if not gtin_is_valid(item.gtin):
            raise ValidationFailed("GTIN check digit wrong", code="INVALID_GTIN")
        if product.gtin and not _same_gtin(product.gtin, item.gtin):
            raise ValidationFailed("pack is another product", code="GTIN_MISMATCH")
    if product.kind is ProductKind.LIQUID:
        if item.concentration_mg_per_ml is None or item.concentration_mg_per_ml <= 0:
            raise ValidationFailed("concentration required", code="CONCENTRATION_REQUIRED")
        if item.density_g_per_ml is not None and item.density_g_per_ml <= 0:
            raise ValidationFailed("density must be positive", code="DENSITY_INVALID")
    lot = session.scalar(select(Lot).where(Lot.product_id == product.id, Lot.lot_number == lot_number))
    if lot is None:
        lot = Lot(
            product_id=product.id, lot_number=lot_number, expiry_date=item.expiry_date,
            manufacturer=item.manufacturer, gtin=item.gtin,
            concentration_mg_per_ml=item.concentration_mg_per_ml, density_g_per_ml=item.density_g_per_ml,
        )
        session.add(lot)
        session.flush()
    else:
        same = lot.expiry_date == item.expiry_date and (
            item.concentration_mg_per_ml is None or lot.concentration_mg_per_ml == item.concentration_mg_per_ml
        )
        if not same:
            raise ValidationFailed("lot known with other details", code="LOT_DETAILS_MISMATCH")
        if lot.density_g_per_ml is None and item.density_g_per_ml is not None:
            lot.density_g_per_ml = item.density_g_per_ml
    if item.concentration_verified and lot.concentration_verified_at is None and lot.concentration_mg_per_ml:
        lot.concentration_verified_by_id = user.id
        lot.concentration_verified_at = now
    return lot


def receive_delivery(
    session: Session, user: User, delivery: DeliveryIn, *, password: str, now: datetime | None = None
) -> ReceiptResult:
    """Record a delivery signed by the receiving pharmacist and return what was booked.

    Raises PermissionDenied (not a pharmacist), ReauthenticationFailed, NotFound
    (LOCATION_NOT_FOUND, PRODUCT_NOT_FOUND), ValidationFailed (RECEIPT_EMPTY, LOT_EXPIRED,
    INVALID_GTIN, GTIN_MISMATCH, CONCENTRATION_REQUIRED, LIQUID_NEEDS_BOTTLES, LABEL_INVALID, …),
    Conflict (LABEL_TAKEN, DAY_CLOSED).
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    now = now or utcnow()
    clinic = session.get(Clinic, user.clinic_id)
    today = business_date(now, clinic.timezone)
    location = lock_locations(session, delivery.location_id).get(delivery.location_id)
    if location is None:
        raise NotFound("location", code="LOCATION_NOT_FOUND")
    require_same_clinic(user, location.clinic_id)
    if location.kind not in (LocationKind.SAFE, LocationKind.COUNTER):
        raise ValidationFailed("receive into a safe or counter shelf", code="RECEIVE_LOCATION_INVALID")
    supplier = _require_text(delivery.supplier, "SUPPLIER_REQUIRED")
    note_no = _require_text(delivery.delivery_note_no, "DELIVERY_NOTE_REQUIRED")
    deliverer = _require_text(delivery.deliverer_name, "DELIVERER_REQUIRED")
    organisation = (delivery.deliverer_organisation or "").strip() or supplier
    if not delivery.lots or not any(item.bottles or item.loose_quantity for item in delivery.lots):
        raise ValidationFailed("nothing received", code="RECEIPT_EMPTY")
    reauthenticate(user, password)

    receipt = Receipt(
        clinic_id=clinic.id, business_date=today, received_at=now, supplier=supplier,
        delivery_note_no=note_no, deliverer_name=deliverer, location_id=location.id,
        received_by_id=user.id, note=delivery.note,
    )
    session.add(receipt)
    session.flush()
    result = ReceiptResult(receipt)
    quarantine: Location | None = None
    lots: list[Lot] = []
    for item in delivery.lots:
        product = session.get(Product, item.product_id)
        if product is None:
            raise NotFound("product", code="PRODUCT_NOT_FOUND")
        if product.kind is ProductKind.LIQUID and (item.loose_quantity or not item.bottles):
            raise ValidationFailed("liquids are received in labelled bottles", code="LIQUID_NEEDS_BOTTLES")
        lot = _lot_for(session, product, item, user, now, today)
        lots.append(lot)
        for bottle in item.bottles:
            quantity = ledger_quantity(bottle.quantity)
            nominal = ledger_quantity(bottle.nominal if bottle.nominal is not None else bottle.quantity)
            container = _new_container(session, clinic.id, lot.id, nominal, bottle.label_code)
            destination = location
            if bottle.anomaly is not None:
                if quarantine is None:
                    quarantine = quarantine_location(session, clinic.id)
                    lock_locations(session, quarantine.id)
                destination = quarantine
            line = append_line(
                session, clinic_id=clinic.id, kind=MovementKind.RECEIPT, product_id=product.id, lot_id=lot.id,
                quantity=quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
                to_location_id=destination.id, container_id=container.id,
                reason=f"{supplier} / {note_no}",
            )
            session.add(ReceiptLine(receipt_id=receipt.id, lot_id=lot.id, container_id=container.id,
                                    movement_id=line.id, quarantined=bottle.anomaly is not None))
            result.containers.append(container)
            if bottle.anomaly is not None:
                result.quarantined.append(container)
                result.anomalies.append(
                    _anomaly(session, receipt, bottle.anomaly, (deliverer, organisation), user, now, lot_id=lot.id,
                             container_id=container.id)
                )
        if item.loose_quantity:
            if product.kind is not ProductKind.UNIT_DOSE:  # pragma: no cover - refused above
                raise ValidationFailed("loose stock is unit-dose only", code="LIQUID_NEEDS_BOTTLES")
            line = append_line(
                session, clinic_id=clinic.id, kind=MovementKind.RECEIPT, product_id=product.id, lot_id=lot.id,
                quantity=item.loose_quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
                to_location_id=location.id, reason=f"{supplier} / {note_no}",
            )
            session.add(ReceiptLine(receipt_id=receipt.id, lot_id=lot.id, movement_id=line.id, quarantined=False))
    for lot_index, anomaly in delivery.anomalies:
        if anomaly.kind not in DELIVERY_LEVEL_KINDS:
            raise ValidationFailed("this anomaly names a bottle", code="ANOMALY_NEEDS_BOTTLE")
        lot_id = None
        if lot_index is not None:
            if not 0 <= lot_index < len(lots):
                raise ValidationFailed("no such lot in the delivery", code="ANOMALY_LOT_INVALID")
            lot_id = lots[lot_index].id
        result.anomalies.append(_anomaly(session, receipt, anomaly, (deliverer, organisation), user, now,
                                              lot_id=lot_id))
    session.flush()

    sign(session, user, action="stock.receipt.signed", role="receiver", entity=receipt, clinic_id=clinic.id,
         at=now, data={"delivery_note_no": note_no, "bottles": len(result.containers),
                       "quarantined": [c.label_code for c in result.quarantined]})
    for anomaly in result.anomalies:
        sign(session, user, action="stock.anomaly.signed", role="receiver", entity=anomaly, clinic_id=clinic.id,
             at=now, data={"kind": anomaly.kind, "deliverer_name": deliverer,
                           "deliverer_organisation": organisation})
        _remind_unit_head(session, anomaly, today)
    session.commit()
    return result


def _new_container(session: Session, clinic_id: int, lot_id: int, nominal: Decimal, label: str | None) -> Container:
    if label is not None:
        label = label.strip().upper()
        if not LABEL_PATTERN.match(label):
            raise ValidationFailed("label must be C and digits", code="LABEL_INVALID")
        if session.scalar(select(func.count()).select_from(Container).where(Container.label_code == label)):
            raise Conflict("label taken", code="LABEL_TAKEN")
    container = Container(clinic_id=clinic_id, lot_id=lot_id, nominal_quantity=nominal,
                          label_code=label or f"pending-{uuid.uuid4().hex}")
    session.add(container)
    session.flush()
    if label is None:
        # Labels are made from the row id so they are unique without a counter table.
        container.label_code = f"C{container.id:09d}"
        session.flush()
    return container


def _anomaly(
    session: Session, receipt: Receipt, item: AnomalyIn, deliverer: tuple[str, str], receiver: User,
    now: datetime,
    *, lot_id: int | None, container_id: int | None = None,
) -> ReceiptAnomaly:
    anomaly = ReceiptAnomaly(
        clinic_id=receipt.clinic_id, receipt_id=receipt.id, kind=AnomalyKind(item.kind), lot_id=lot_id,
        container_id=container_id, description=_require_text(item.description, "ANOMALY_DESCRIPTION_REQUIRED"),
        expected_quantity=item.expected_quantity, found_quantity=item.found_quantity, deliverer_name=deliverer[0],
        deliverer_organisation=deliverer[1],
        receiver_id=receiver.id, receiver_signed_at=now,
    )
    session.add(anomaly)
    session.flush()
    return anomaly


def _remind_unit_head(session: Session, anomaly: ReceiptAnomaly, today: date) -> None:
    session.add(Reminder(
        clinic_id=anomaly.clinic_id, business_date=today, kind=ReminderKind.ANOMALY_TO_SIGN,
        for_role=Role.UNIT_HEAD, subject_type="receipt_anomaly", subject_id=anomaly.id,
        code="ANOMALY_TO_SIGN", params={"kind": anomaly.kind.value, "receipt_id": anomaly.receipt_id},
    ))


def countersign_anomaly(
    session: Session, user: User, anomaly_id: int, *, password: str, now: datetime | None = None
) -> ReceiptAnomaly:
    """The head of unit (role ``unit_head``) countersigns an anomaly record, re-authenticated.
    Raises PermissionDenied (UNIT_HEAD_ROLE_REQUIRED), NotFound (ANOMALY_NOT_FOUND), ValidationFailed
    (UNIT_HEAD_IS_RECEIVER), Conflict (ANOMALY_ALREADY_SIGNED), ReauthenticationFailed."""
    if not can_sign_as_unit_head(user):
        raise PermissionDenied("head of unit only", code="UNIT_HEAD_ROLE_REQUIRED",
                               required=[Role.UNIT_HEAD.value])
    begin_write(session)
    now = now or utcnow()
    anomaly = session.scalar(select(ReceiptAnomaly).where(ReceiptAnomaly.id == anomaly_id).with_for_update())
    if anomaly is None:
        raise NotFound("anomaly", code="ANOMALY_NOT_FOUND")
    require_same_clinic(user, anomaly.clinic_id)
    if anomaly.unit_head_id is not None:
        raise Conflict("already countersigned", code="ANOMALY_ALREADY_SIGNED")
    if anomaly.receiver_id == user.id:
        raise ValidationFailed("the receiver cannot countersign", code="UNIT_HEAD_IS_RECEIVER")
    reauthenticate(user, password)
    anomaly.unit_head_id = user.id
    anomaly.unit_head_signed_at = now
    sign(session, user, action="stock.anomaly.signed", role="unit_head", entity=anomaly,
         clinic_id=anomaly.clinic_id, at=now, data={"kind": anomaly.kind})
    session.commit()
    return anomaly


def verify_lot_concentration(
    session: Session, user: User, lot_id: int, *, concentration_mg_per_ml: Decimal, password: str,
    now: datetime | None = None,
) -> Lot:
    """Record that the pharmacist verified a lot's concentration (a lot without it cannot be
    issued for dispensing). Raises NotFound (LOT_NOT_FOUND), ValidationFailed
    (CONCENTRATION_MISMATCH), Conflict (CONCENTRATION_ALREADY_VERIFIED), ReauthenticationFailed."""
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    now = now or utcnow()
    lot = session.scalar(select(Lot).where(Lot.id == lot_id).with_for_update())
    if lot is None:
        raise NotFound("lot", code="LOT_NOT_FOUND")
    if lot.concentration_verified_at is not None:
        raise Conflict("already verified", code="CONCENTRATION_ALREADY_VERIFIED")
    if lot.concentration_mg_per_ml is None:
        lot.concentration_mg_per_ml = concentration_mg_per_ml
    elif lot.concentration_mg_per_ml != concentration_mg_per_ml:
        raise ValidationFailed("concentration differs from the lot record", code="CONCENTRATION_MISMATCH")
    reauthenticate(user, password)
    lot.concentration_verified_by_id = user.id
    lot.concentration_verified_at = now
    audit.record(session, "stock.lot.concentration_verified", actor_id=user.id, clinic_id=user.clinic_id,
                 entity=lot, at=now, data={"role": "pharmacist", "concentration_mg_per_ml": concentration_mg_per_ml})
    session.commit()
    return lot
