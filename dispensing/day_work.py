"""The day's work on the landing page: the open reminders of a user's roles, dismissing one, and
the morning forecast the pharmacist brings bottles by.

Reminders are written by the scheduler jobs (``dispensing.jobs.reminders``) and by the stock
services (anomaly records, closes outside tolerance); this module only reads them and records who
dismissed one and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.clock import utcnow
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, PermissionDenied
from dispensing.models import (
    Container,
    Counter,
    Location,
    Lot,
    Product,
    Reminder,
    Role,
    StockForecast,
    User,
)
from dispensing.permissions import can_act_on_reminder, require_role, require_same_clinic


def open_reminders(session: Session, user: User, day: date) -> list[Reminder]:
    """Return the reminders of ``day`` for the roles ``user`` holds in their clinic, not dismissed,
    oldest first. Raises PermissionDenied for an inactive user."""
    require_role(user, *Role)
    return list(session.scalars(select(Reminder).where(
        Reminder.clinic_id == user.clinic_id, Reminder.business_date == day,
        Reminder.for_role.in_(list(user.roles)), Reminder.dismissed_at.is_(None),
    ).order_by(Reminder.for_role, Reminder.kind, Reminder.id)))


def dismiss_reminder(session: Session, user: User, reminder_id: int, *, now: datetime | None = None) -> Reminder:
    """Mark a reminder dismissed by ``user`` now, with an audit event; committed.

    Only a user holding the reminder's role in the reminder's clinic may dismiss it. Raises
    NotFound (REMINDER_NOT_FOUND), PermissionDenied (REMINDER_ROLE_REQUIRED, or another clinic),
    Conflict (REMINDER_ALREADY_DISMISSED).
    """
    require_role(user, *Role)
    begin_write(session)
    reminder = session.scalar(select(Reminder).where(Reminder.id == reminder_id).with_for_update())
    if reminder is None:
        raise NotFound("reminder", code="REMINDER_NOT_FOUND")
    require_same_clinic(user, reminder.clinic_id)
    if not can_act_on_reminder(user, reminder):
        raise PermissionDenied("reminder of another role", code="REMINDER_ROLE_REQUIRED",
                               required=[reminder.for_role.value])
    if reminder.dismissed_at is not None:
        raise Conflict("already dismissed", code="REMINDER_ALREADY_DISMISSED")
    now = now or utcnow()
    reminder.dismissed_at, reminder.dismissed_by_id = now, user.id
    audit.record(session, "reminder.dismissed", actor_id=user.id, clinic_id=reminder.clinic_id, entity=reminder,
                 at=now, data={"kind": reminder.kind.value, "for_role": reminder.for_role.value,
                               "business_date": reminder.business_date, "subject_type": reminder.subject_type,
                               "subject_id": reminder.subject_id})
    session.commit()
    return reminder


@dataclass(frozen=True)
class BottleToBring:
    label_code: str
    lot_number: str | None
    expiry_date: date | None


@dataclass(frozen=True)
class PumpForecast:
    forecast: StockForecast
    location: Location
    product: Product
    counter: Counter | None
    bottles: list[BottleToBring]


def forecast_for(session: Session, user: User, day: date) -> list[PumpForecast]:
    """Return the morning forecast of ``day`` for the pharmacist's clinic, one entry per pump with
    its bottles to bring in first-expiry-first order (as the job chose them). Empty when the job
    has not run. Raises PermissionDenied for anyone but a pharmacist."""
    require_role(user, Role.PHARMACIST)
    rows = session.scalars(select(StockForecast).where(
        StockForecast.clinic_id == user.clinic_id, StockForecast.business_date == day,
    ).order_by(StockForecast.location_id, StockForecast.product_id)).all()
    if not rows:
        return []
    locations = {loc.id: loc for loc in session.scalars(
        select(Location).where(Location.id.in_({row.location_id for row in rows})))}
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_({r.product_id for r in rows})))}
    counter_ids = {row.counter_id for row in rows if row.counter_id}
    counters = ({c.id: c for c in session.scalars(select(Counter).where(Counter.id.in_(counter_ids)))}
                if counter_ids else {})
    labels = {label for row in rows for label in (row.bottles or [])}
    bottles = {}
    if labels:
        for container, lot in session.execute(select(Container, Lot).join(Lot, Container.lot_id == Lot.id).where(
                Container.label_code.in_(labels), Container.clinic_id == user.clinic_id)):
            bottles[container.label_code] = BottleToBring(container.label_code, lot.lot_number, lot.expiry_date)
    return [
        PumpForecast(
            forecast=row, location=locations[row.location_id], product=products[row.product_id],
            counter=counters.get(row.counter_id) if row.counter_id else None,
            bottles=[bottles.get(label) or BottleToBring(label, None, None) for label in row.bottles or []],
        )
        for row in rows
    ]
