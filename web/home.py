"""The landing page after login: the day's work for each role.

Today's open reminders for the user's roles (written by the morning jobs and the stock services),
each with its translated message, a link to where the work is done and a dismiss button; short
cuts per role; and, for a pharmacist, the morning forecast of what each pump needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext, lazy_gettext
from flask_login import login_required
from sqlalchemy import select

from dispensing import day_work
from dispensing.errors import DomainError
from dispensing.models import (
    AnomalyKind,
    Location,
    Lot,
    Patient,
    Product,
    Reconciliation,
    Reminder,
    ReminderKind,
    Role,
)
from web import context
from web.database import db, writer
from web.errors import message_for, register_messages
from web.formatting import date_vn, number
from web.forms import format_day
from web.labels import ROLE_LABELS

bp = Blueprint("home", __name__)

register_messages({
    "REMINDER_NOT_FOUND": lazy_gettext("Reminder not found."),
    "REMINDER_ROLE_REQUIRED": lazy_gettext("This reminder is for another role: only they can dismiss it."),
    "REMINDER_ALREADY_DISMISSED": lazy_gettext("This reminder was already dismissed."),
})

# One message per reminder kind, filled from the reminder's params (and the rows it points to).
REMINDER_MESSAGES = {
    ReminderKind.ORDER_EXPIRING: lazy_gettext(
        "The order of %(patient)s ends on %(date)s and no follow-up order is signed."),
    ReminderKind.ORDER_REVIEW: lazy_gettext(
        "%(patient)s has missed %(days)s days in a row: review the order before the next dose."),
    ReminderKind.ECG_DUE: lazy_gettext("ECG due for %(patient)s by %(date)s: %(what)s."),
    ReminderKind.LOT_EXPIRING: lazy_gettext(
        "Lot %(lot)s expires on %(date)s and %(held)s are still held: use it first or return it."),
    ReminderKind.LOT_EXPIRED: lazy_gettext(
        "Lot %(lot)s expired on %(date)s and %(held)s are still held outside quarantine: move it to quarantine."),
    ReminderKind.STOCK_DISCREPANCY: lazy_gettext(
        "The close of %(location)s on %(date)s is outside tolerance: variance %(variance)s (%(reason)s)."),
    ReminderKind.ANOMALY_TO_SIGN: lazy_gettext(
        "The anomaly record of receipt no. %(receipt)s waits for the countersignature: %(kind)s."),
}
UNREADABLE_REMINDER = lazy_gettext("A reminder for today (%(code)s): open the page where this work is done.")
ECG_LABELS = {
    "ECG_BASELINE_DUE": lazy_gettext("baseline ECG"),
    "ECG_FOLLOW_UP_DUE": lazy_gettext("follow-up ECG"),
    "ECG_YEARLY_DUE": lazy_gettext("yearly ECG"),
    "ECG_HIGH_DOSE_DUE": lazy_gettext("ECG for a high dose"),
}
LINK_LABELS = {
    "chart": lazy_gettext("Open the patient's chart"),
    "tasks": lazy_gettext("Open the tasks"),
    "stock": lazy_gettext("Open the stock"),
    "worksheet": lazy_gettext("Open the reconciliation worksheet"),
    "anomalies": lazy_gettext("Open the anomaly records"),
}
# Short cuts per role: (endpoint, label).
SHORTCUTS = {
    Role.NURSE: (("counter.index", lazy_gettext("Open the counter")),),
    Role.PHARMACIST: (("pharmacy.reconciliation", lazy_gettext("Today's reconciliation")),
                      ("pharmacy.stock", lazy_gettext("Stock and bottles to bring"))),
    Role.PHYSICIAN: (("physician.tasks", lazy_gettext("Today's tasks")),),
    Role.UNIT_HEAD: (("unit_head.anomalies", lazy_gettext("Anomaly records to countersign")),),
}
ROLE_ORDER = (Role.NURSE, Role.PHARMACIST, Role.PHYSICIAN, Role.UNIT_HEAD, Role.ADMIN)


@dataclass(frozen=True)
class ReminderItem:
    reminder: Reminder
    message: str
    url: str | None
    link_label: str | None


class _Subjects:
    """The rows the day's reminders point to, loaded with one query per kind of row."""

    def __init__(self, clinic_id: int, reminders: list[Reminder]):
        session = db()

        def ids(subject_type: str) -> set[int]:
            return {r.subject_id for r in reminders if r.subject_type == subject_type}

        patient_ids = {r.patient_id for r in reminders if r.patient_id}
        self.patients = ({p.id: p for p in session.scalars(select(Patient).where(
            Patient.id.in_(patient_ids), Patient.clinic_id == clinic_id))} if patient_ids else {})
        lot_ids = ids("lot")
        self.lots = ({lot.id: (lot, product) for lot, product in session.execute(
            select(Lot, Product).join(Product, Lot.product_id == Product.id).where(Lot.id.in_(lot_ids)))}
            if lot_ids else {})
        rec_ids = ids("reconciliation")
        self.reconciliations = ({r.id: r for r in session.scalars(select(Reconciliation).where(
            Reconciliation.id.in_(rec_ids), Reconciliation.clinic_id == clinic_id))} if rec_ids else {})
        location_ids = {r.location_id for r in self.reconciliations.values()}
        self.locations = ({loc.id: loc for loc in session.scalars(select(Location).where(
            Location.id.in_(location_ids)))} if location_ids else {})
        product_ids = {r.product_id for r in self.reconciliations.values()}
        self.products = ({p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))}
                         if product_ids else {})


def _quantity(value, unit: str) -> str:
    return f"{number(Decimal(str(value)))} {unit}"


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _values(reminder: Reminder, subjects: _Subjects) -> tuple[dict, str | None, str | None]:
    """Return (message values, url, link key) for a reminder. Raises KeyError, ValueError,
    TypeError or InvalidOperation on params the message cannot use."""
    from web.pharmacy import ANOMALY_LABELS, REASON_LABELS

    kind, params = reminder.kind, reminder.params or {}
    patient = subjects.patients.get(reminder.patient_id) if reminder.patient_id else None
    chart = url_for("patients.chart", patient_id=patient.id) if patient else None
    if kind is ReminderKind.ORDER_EXPIRING:
        return ({"patient": patient.full_name, "date": date_vn(_day(params["valid_until"]))},
                chart + "#orders", "chart")
    if kind is ReminderKind.ORDER_REVIEW:
        return {"patient": patient.full_name, "days": int(params["missed_days"])}, url_for("physician.tasks"), "tasks"
    if kind is ReminderKind.ECG_DUE:
        what = ", ".join(str(ECG_LABELS.get(code, code)) for code in params["codes"])
        return {"patient": patient.full_name, "date": date_vn(reminder.due_on), "what": what}, chart, "chart"
    if kind in (ReminderKind.LOT_EXPIRING, ReminderKind.LOT_EXPIRED):
        lot, product = subjects.lots[reminder.subject_id]
        return ({"lot": lot.lot_number, "date": date_vn(lot.expiry_date), "held": _quantity(params["held"], product.unit)},
                url_for("pharmacy.stock"), "stock")
    if kind is ReminderKind.STOCK_DISCREPANCY:
        row = subjects.reconciliations[reminder.subject_id]
        location, product = subjects.locations[row.location_id], subjects.products[row.product_id]
        values = {"location": location.name, "date": date_vn(row.business_date),
                  "variance": _quantity(params["variance"], product.unit),
                  "reason": str(REASON_LABELS[row.discrepancy_reason]) if row.discrepancy_reason else "—"}
        if reminder.for_role is Role.PHARMACIST:  # the worksheet is the pharmacist's page
            return values, url_for("pharmacy.worksheet", location_id=row.location_id, product_id=row.product_id,
                                   day=format_day(row.business_date)), "worksheet"
        return values, None, None
    if kind is ReminderKind.ANOMALY_TO_SIGN:
        return ({"receipt": int(params["receipt_id"]), "kind": str(ANOMALY_LABELS[AnomalyKind(params["kind"])])},
                url_for("unit_head.anomalies"), "anomalies")
    raise KeyError(kind)


def reminder_items(reminders: list[Reminder], clinic_id: int) -> list[ReminderItem]:
    """Return each reminder with its message in the active language and its link."""
    subjects = _Subjects(clinic_id, reminders)
    items = []
    for reminder in reminders:
        try:
            values, url, link = _values(reminder, subjects)
            message = str(REMINDER_MESSAGES[reminder.kind]) % values
        except (KeyError, ValueError, TypeError, AttributeError, InvalidOperation):
            # A reminder whose subject is gone or whose params are odd is still shown, never a 500.
            message, url, link = str(UNREADABLE_REMINDER) % {"code": reminder.code}, None, None
        items.append(ReminderItem(reminder, message, url, str(LINK_LABELS[link]) if link else None))
    return items


def _render(status: int = 200):
    user = context.actor()
    today = context.today()
    session = db()
    reminders = day_work.open_reminders(session, user, today)
    items = reminder_items(reminders, user.clinic_id)
    roles = [role for role in ROLE_ORDER if role in user.roles]
    groups = [(role, [item for item in items if item.reminder.for_role is role]) for role in roles]
    shortcuts = [{"url": url_for(endpoint), "label": label}
                 for role in roles for endpoint, label in SHORTCUTS.get(role, ())]
    forecast = day_work.forecast_for(session, user, today) if Role.PHARMACIST in user.roles else None
    return render_template("home.html", user=user, role_labels=ROLE_LABELS, today=today, groups=groups,
                           reminder_count=len(items), shortcuts=shortcuts, forecast=forecast), status


@bp.get("/")
@login_required
def index():
    return _render()


@bp.post("/reminders/<int:reminder_id>/dismiss")
@login_required
def dismiss(reminder_id: int):
    actor = context.actor()
    try:
        day_work.dismiss_reminder(writer(), actor, reminder_id)
    except DomainError as exc:
        db().rollback()
        flash(message_for(str(exc.params.get("code") or exc.code)), "error")
        return _render(status=exc.status if 400 <= exc.status < 500 else 400)
    flash(gettext("Reminder dismissed."), "info")
    return redirect(url_for("home.index"))
