"""What each patient's orders plan for a day, read in a fixed number of queries for a clinic."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dispensing.history import dosing_order_in_force
from dispensing.models import Order, OrderStatus, Patient, PatientStatus


def dosing_orders_on(session: Session, clinic_id: int, day: date) -> dict[int, Order]:
    """Return {patient_id: the dosing order in force on ``day``} for the clinic's patients in
    treatment (stopped and suspended patients have none)."""
    rows = session.scalars(
        select(Order)
        .join(Patient, Patient.id == Order.patient_id)
        .where(
            Order.clinic_id == clinic_id,
            Order.status == OrderStatus.SIGNED,
            Patient.status == PatientStatus.ACTIVE,
            Order.valid_from <= day,
            or_(Order.valid_until.is_(None), Order.valid_until >= day),
        )
        .order_by(Order.signed_at, Order.id)
    ).all()
    # Orders superseding one of these may start later than ``day``; they matter only from then,
    # and order_in_force only uses a superseding order's start, so the ones covering day suffice
    # together with any superseding orders that began on or before it (also covering it or ended).
    by_patient: dict[int, list[Order]] = defaultdict(list)
    for order in rows:
        by_patient[order.patient_id].append(order)
    superseders = session.scalars(
        select(Order).where(
            Order.clinic_id == clinic_id, Order.status == OrderStatus.SIGNED,
            Order.supersedes_id.in_([order.id for order in rows]), Order.valid_from <= day,
        )
    ).all() if rows else []
    known = {order.id for order in rows}
    for order in superseders:
        if order.id not in known:
            by_patient[order.patient_id].append(order)
    result = {}
    for patient_id, orders in by_patient.items():
        orders.sort(key=lambda o: (o.signed_at, o.id))
        order = dosing_order_in_force(orders, day)
        if order is not None:
            result[patient_id] = order
    return result
