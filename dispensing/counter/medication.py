"""Unit-dose medicines at the counter (tablets, capsules: TLD, isoniazid, buprenorphine…): the
physician's medication order, and giving one administration — identified by a GS1 pack scan (GTIN,
lot, expiry checked against the stock records), counted in units, observed, booked out of the
counter shelf in the same transaction. No pump is involved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing import audit, rules, stock
from dispensing.accounts import reauthenticate
from dispensing.clock import utcnow
from dispensing.counter.common import (
    AlreadyDosed,
    DoseBlocked,
    add_event,
    clinic_day,
    lock_patient,
    require_key,
)
from dispensing.counter.dosing import DoseRequest, _replayed, _slot_taken
from dispensing.counter_rules import latest_assessment, rules_assessment
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.history import lifts_from, signed_orders
from dispensing.models import (
    Counter,
    Dose,
    DoseKind,
    DoseState,
    Lot,
    MedicationOrder,
    Product,
    ProductKind,
    Role,
    User,
)
from dispensing.patients import get_patient
from dispensing.permissions import require_role

UNIT = Decimal("0.001")


@dataclass(frozen=True)
class PackScan:
    """A GS1 pack scan already classified and parsed (``devices.scan.classify_scan``)."""

    gtin: str
    lot: str
    expiry: date
    serial: str | None = None


def sign_medication_order(
    session: Session, actor: User, *, patient_id: int, product_id: int, units_per_administration: Decimal,
    administrations_per_day: int, valid_from: date, valid_until: date | None, password: str,
    instructions: str | None = None, now: datetime | None = None,
) -> MedicationOrder:
    """Sign an order for a unit-dose medicine given at the counter. Physicians only,
    re-authenticated. Committed.

    Raises PermissionDenied, ReauthenticationFailed, NotFound (PRODUCT_NOT_FOUND), ValidationFailed
    (PRODUCT_KIND_MISMATCH, MEDICATION_UNITS_INVALID, ADMINISTRATIONS_INVALID, ORDER_WINDOW_INVALID).
    """
    require_role(actor, Role.PHYSICIAN)
    if not isinstance(units_per_administration, Decimal) or units_per_administration <= 0 \
            or units_per_administration != units_per_administration.quantize(UNIT):
        raise ValidationFailed("units", code="MEDICATION_UNITS_INVALID")
    if not 1 <= administrations_per_day <= 3:
        raise ValidationFailed("administrations", code="ADMINISTRATIONS_INVALID")
    if valid_until is not None and valid_until < valid_from:
        raise ValidationFailed("window", code="ORDER_WINDOW_INVALID")
    reauthenticate(actor, password)
    now = now or utcnow()
    begin_write(session)
    patient = lock_patient(session, actor, patient_id)
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound("product", code="PRODUCT_NOT_FOUND")
    if product.kind is not ProductKind.UNIT_DOSE:
        raise ValidationFailed("not a unit-dose medicine", code="PRODUCT_KIND_MISMATCH")
    order = MedicationOrder(
        clinic_id=patient.clinic_id, patient_id=patient.id, product_id=product.id,
        units_per_administration=units_per_administration, administrations_per_day=administrations_per_day,
        valid_from=valid_from, valid_until=valid_until, instructions=(instructions or "").strip() or None,
        signed_by_id=actor.id, signed_at=now,
    )
    session.add(order)
    session.flush()
    audit.record(session, "medication_order.signed", actor_id=actor.id, clinic_id=patient.clinic_id, entity=order,
                 at=now, data={"patient_id": patient.id, "product_id": product.id,
                               "units": units_per_administration, "per_day": administrations_per_day,
                               "valid_from": valid_from, "valid_until": valid_until})
    session.commit()
    return order


def stop_medication_order(session: Session, actor: User, order_id: int, *, stopped_on: date, password: str,
                          now: datetime | None = None) -> MedicationOrder:
    """Stop a medication order from ``stopped_on`` (signed, re-authenticated). Committed.
    Raises PermissionDenied, ReauthenticationFailed, NotFound, Conflict(MEDICATION_ORDER_STOPPED),
    ValidationFailed(ORDER_WINDOW_INVALID)."""
    require_role(actor, Role.PHYSICIAN)
    reauthenticate(actor, password)
    now = now or utcnow()
    begin_write(session)
    order = session.get(MedicationOrder, order_id)
    if order is None:
        raise NotFound("medication order", code="MEDICATION_ORDER_NOT_FOUND")
    get_patient(session, actor, order.patient_id)
    if order.stopped_on is not None:
        raise Conflict("already stopped", code="MEDICATION_ORDER_STOPPED")
    if stopped_on < order.valid_from:
        raise ValidationFailed("window", code="ORDER_WINDOW_INVALID")
    order.stopped_on, order.stopped_by_id = stopped_on, actor.id
    audit.record(session, "medication_order.stopped", actor_id=actor.id, clinic_id=order.clinic_id, entity=order,
                 at=now, data={"stopped_on": stopped_on})
    session.commit()
    return order


def medication_orders_on(session: Session, patient_ids: list[int], day: date) -> list[MedicationOrder]:
    """Return the medication orders in force on ``day`` for these patients."""
    if not patient_ids:
        return []
    rows = session.scalars(
        select(MedicationOrder).where(MedicationOrder.patient_id.in_(patient_ids), MedicationOrder.valid_from <= day)
        .order_by(MedicationOrder.patient_id, MedicationOrder.id)
    ).all()
    return [row for row in rows if row.covers(day)]


def _pack_lot(session: Session, product: Product, scan: PackScan, day: date) -> Lot:
    gtins = {product.gtin} - {None}
    lot = session.scalar(select(Lot).where(Lot.product_id == product.id, Lot.lot_number == scan.lot.strip()))
    if lot is not None and lot.gtin:
        gtins.add(lot.gtin)
    if scan.gtin not in gtins:
        raise ValidationFailed("pack of another product", code="PACK_WRONG_PRODUCT")
    if lot is None:
        raise ValidationFailed("lot not in stock records", code="PACK_LOT_UNKNOWN")
    if lot.expiry_date != scan.expiry:
        raise ValidationFailed("expiry differs from the lot record", code="PACK_EXPIRY_MISMATCH")
    if scan.expiry < day:
        raise ValidationFailed("lot expired", code="LOT_EXPIRED", expiry_date=scan.expiry)
    return lot


def dispense_unit_dose(
    session: Session, actor: User, rule_set: rules.RuleSet, *, patient_id: int, medication_order_id: int,
    administration_no: int, counter_id: int, scan: PackScan, units: Decimal, idempotency_key: str,
    now: datetime | None = None,
) -> DoseRequest:
    """Give one administration of a unit-dose medicine, observed: the scanned pack must be the
    ordered product with a lot known to stock (same expiry, not expired) and held at the counter
    shelf; the units counted must be what the order says. The dose is recorded COMPLETED and booked
    out of the counter shelf in one transaction. A controlled medicine also needs today's pre-dose
    check. Nurses only. Committed.

    Raises PermissionDenied, NotFound, AlreadyDosed, DoseBlocked, Conflict
    (MEDICATION_ORDER_NOT_IN_FORCE, IDEMPOTENCY_KEY_REUSED, DAY_CLOSED), ValidationFailed
    (ADMINISTRATION_INVALID, UNITS_MISMATCH, PACK_WRONG_PRODUCT, PACK_LOT_UNKNOWN,
    PACK_EXPIRY_MISMATCH, LOT_EXPIRED, PACK_LOT_NOT_AT_COUNTER, OUT_OF_STOCK …).
    """
    require_role(actor, Role.NURSE)
    key = require_key(idempotency_key)
    now = now or utcnow()
    begin_write(session)
    patient = lock_patient(session, actor, patient_id)
    replay = _replayed(session, [key], patient.id, DoseKind.OBSERVED,
                       lambda d: d.medication_order_id == medication_order_id and d.part_no == administration_no)
    if replay is not None:
        session.commit()
        return DoseRequest(replay, False)
    clinic, day = clinic_day(session, patient.clinic_id, now)
    counter = session.get(Counter, counter_id)
    if counter is None or counter.clinic_id != clinic.id:
        raise NotFound("counter", code="COUNTER_NOT_FOUND")
    order = session.get(MedicationOrder, medication_order_id)
    if order is None or order.patient_id != patient.id:
        raise NotFound("medication order", code="MEDICATION_ORDER_NOT_FOUND")
    if not order.covers(day):
        raise Conflict("order not in force today", code="MEDICATION_ORDER_NOT_IN_FORCE")
    if not 1 <= administration_no <= order.administrations_per_day:
        raise ValidationFailed("administration", code="ADMINISTRATION_INVALID")
    if units != order.units_per_administration:
        raise ValidationFailed("units differ from the order", code="UNITS_MISMATCH",
                               ordered=order.units_per_administration)
    product = session.get(Product, order.product_id)
    lot = _pack_lot(session, product, scan, day)
    taken = _slot_taken(session, patient.id, product.id, administration_no, day)
    if taken is not None:
        raise AlreadyDosed(taken)
    assessment = latest_assessment(session, patient.id, day)
    if product.controlled:
        decisions = rules.apply_lifts(rules.check_predose(rule_set, rules_assessment(assessment)),
                                      lifts_from(signed_orders(session, patient.id)))
        if rules.is_blocked(decisions):
            raise DoseBlocked(rules.blocking(decisions))
    source = stock.dispensing_source(session, clinic_id=clinic.id, product_id=product.id, business_date=day)
    held = stock.item_balances(session, source.location.id, product.id, day)
    if sum((amount for (lot_id, _c), amount in held.items() if lot_id == lot.id), Decimal(0)) < units:
        raise ValidationFailed("this lot is not at the counter", code="PACK_LOT_NOT_AT_COUNTER")
    dose = Dose(
        clinic_id=clinic.id, patient_id=patient.id, order_id=None, medication_order_id=order.id,
        part_no=administration_no, business_date=day, kind=DoseKind.OBSERVED, state=DoseState.COMPLETED,
        idempotency_key=key, product_id=product.id, lot_id=lot.id, counter_id=counter.id,
        assessment_id=assessment.id if assessment else None, planned_mg=Decimal(0), planned_units=units,
        delivered_units=units, nurse_id=actor.id, requested_at=now, finished_at=now,
    )
    session.add(dose)
    session.flush()
    detail = {"gtin": scan.gtin, "lot": scan.lot, "expiry": scan.expiry.isoformat(), "serial": scan.serial,
              "units": str(units)}
    add_event(session, dose, DoseState.COMPLETED, now, actor.id, detail)
    stock.book_dose(session, dose, location_id=source.location.id)
    audit.record(session, "dose.completed", actor_id=actor.id, clinic_id=clinic.id, entity_type="Dose",
                 entity_id=dose.id, at=now,
                 data={"patient_id": patient.id, "kind": dose.kind, "medication_order_id": order.id,
                       "product_id": product.id, "lot_id": lot.id, "units": units,
                       "administration_no": administration_no})
    session.commit()
    return DoseRequest((dose,), True)
