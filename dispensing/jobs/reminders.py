"""Morning reminders: orders about to expire or needing a review after missed days, lots close
to or past expiry, ECGs due. Each is a Reminder row for a role; the unique key and the JobRun keep
a day's reminders from being written twice."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing import rules
from dispensing.jobs.plans import dosing_orders_on
from dispensing.jobs.runs import JobContext
from dispensing.models import (
    EcgResult,
    Location,
    LocationKind,
    Lot,
    MissedDose,
    Order,
    OrderStatus,
    Patient,
    PatientStatus,
    Reminder,
    ReminderKind,
    Role,
    StockMovement,
)
from dispensing.rulebook import RuleBook
from dispensing.settings import PROJECT_ROOT
from dispensing.stock.ledger import ZERO, balance

# Days of notice before an order ends without a follow-up order (the physician must see the
# patient before then: maintenance orders last at most 30 days, TT 26/2023 Đ5.1.a).
ORDER_EXPIRY_NOTICE_DAYS = 3
# Days of notice before a lot expires, so it is used first or returned.
LOT_EXPIRY_NOTICE_DAYS = 60
DEFAULT_RULES_DIR = PROJECT_ROOT / "config" / "rules"
_rulebooks: dict[str, RuleBook] = {}


def _rule_set(ctx: JobContext) -> rules.RuleSet:
    rules_dir = ctx.rules_dir or DEFAULT_RULES_DIR
    book = _rulebooks.setdefault(str(rules_dir), RuleBook(rules_dir))
    return book.for_clinic(ctx.clinic)


def _remind(session: Session, existing: set, ctx: JobContext, kind: ReminderKind, role: Role, subject_type: str,
            subject_id: int, code: str, *, patient_id: int | None = None, due_on: date | None = None,
            params: dict | None = None) -> bool:
    key = (kind.value, subject_type, subject_id, role.value)
    if key in existing:
        return False
    existing.add(key)
    session.add(Reminder(
        clinic_id=ctx.clinic.id, business_date=ctx.business_date, kind=kind, for_role=role,
        patient_id=patient_id, subject_type=subject_type, subject_id=subject_id, due_on=due_on, code=code,
        params=params or {},
    ))
    return True


def _existing(session: Session, ctx: JobContext) -> set:
    return {
        (row.kind.value, row.subject_type, row.subject_id, row.for_role.value)
        for row in session.scalars(select(Reminder).where(
            Reminder.clinic_id == ctx.clinic.id, Reminder.business_date == ctx.business_date))
    }


def order_reminders(session: Session, ctx: JobContext) -> dict:
    """ORDER_EXPIRING: the order in force ends within the notice and no signed order starts after
    it. ORDER_REVIEW: the consecutive missed days up to yesterday reach the first blocking band
    of the clinic's missed-dose table (the physician must review before the next dose)."""
    day, clinic = ctx.business_date, ctx.clinic
    existing = _existing(session, ctx)
    orders = dosing_orders_on(session, clinic.id, day)
    later_starts = defaultdict(list)
    for patient_id, valid_from in session.execute(
        select(Order.patient_id, Order.valid_from).where(
            Order.clinic_id == clinic.id, Order.status == OrderStatus.SIGNED, Order.valid_from > day)
    ):
        later_starts[patient_id].append(valid_from)
    expiring = 0
    for patient_id, order in orders.items():
        if order.valid_until is None or (order.valid_until - day).days > ORDER_EXPIRY_NOTICE_DAYS:
            continue
        if later_starts[patient_id]:  # a follow-up order is already signed
            continue
        expiring += _remind(session, existing, ctx, ReminderKind.ORDER_EXPIRING, Role.PHYSICIAN, "order", order.id,
                            "ORDER_EXPIRING", patient_id=patient_id, due_on=order.valid_until,
                            params={"valid_until": order.valid_until.isoformat()})
    threshold = min(
        (band.from_days for band in _rule_set(ctx).missed_dose.bands if band.outcome is rules.Outcome.BLOCK),
        default=None,
    )
    review = 0
    if threshold:
        since = day - timedelta(days=threshold)
        marks = defaultdict(set)
        for patient_id, marked_on in session.execute(
            select(MissedDose.patient_id, MissedDose.business_date).where(
                MissedDose.clinic_id == clinic.id, MissedDose.business_date >= since,
                MissedDose.business_date < day)
        ):
            marks[patient_id].add(marked_on)
        for patient_id, days in marks.items():
            run = 0
            while (day - timedelta(days=run + 1)) in days:
                run += 1
            if run >= threshold:
                review += _remind(session, existing, ctx, ReminderKind.ORDER_REVIEW, Role.PHYSICIAN, "patient",
                                  patient_id, "MISSED_DOSES_REVIEW", patient_id=patient_id, due_on=day,
                                  params={"missed_days": run})
    session.flush()
    return {"order_expiring": expiring, "order_review": review}


def lot_expiry_reminders(session: Session, ctx: JobContext) -> dict:
    """LOT_EXPIRING: a lot the clinic holds expires within the notice. LOT_EXPIRED: an expired
    lot is still held outside quarantine (it must be moved there, returned or destroyed)."""
    day, clinic = ctx.business_date, ctx.clinic
    existing = _existing(session, ctx)
    lot_ids = set(session.scalars(select(StockMovement.lot_id).where(StockMovement.clinic_id == clinic.id).distinct()))
    lots = session.scalars(select(Lot).where(Lot.id.in_(lot_ids),
                                             Lot.expiry_date <= day + timedelta(days=LOT_EXPIRY_NOTICE_DAYS)))
    usable_locations = list(session.scalars(select(Location.id).where(
        Location.clinic_id == clinic.id, Location.kind != LocationKind.QUARANTINE)))
    counts = {"lot_expiring": 0, "lot_expired": 0}
    for lot in lots:
        held = sum((balance(session, location_id=loc, lot_id=lot.id, end_of=day) for loc in usable_locations), ZERO)
        if held <= 0:
            continue
        kind = ReminderKind.LOT_EXPIRED if lot.expiry_date < day else ReminderKind.LOT_EXPIRING
        counts[kind.value] += _remind(session, existing, ctx, kind, Role.PHARMACIST, "lot", lot.id, kind.value.upper(),
                                      due_on=lot.expiry_date, params={"lot_number": lot.lot_number,
                                                                      "held": str(held)})
    session.flush()
    return counts


def ecg_due_reminders(session: Session, ctx: JobContext) -> dict:
    """ECG_DUE: the rule engine's ECG schedule (baseline, follow-up, yearly, high dose) for every
    patient in treatment; one reminder per patient listing what is due."""
    day, clinic = ctx.business_date, ctx.clinic
    rule_set = _rule_set(ctx)
    existing = _existing(session, ctx)
    patients = session.scalars(select(Patient).where(Patient.clinic_id == clinic.id,
                                                     Patient.status == PatientStatus.ACTIVE)).all()
    ecgs = defaultdict(list)
    for patient_id, taken_on, qtc in session.execute(
        select(EcgResult.patient_id, EcgResult.taken_on, EcgResult.qtc_ms).join(Patient).where(
            Patient.clinic_id == clinic.id)
    ):
        ecgs[patient_id].append(rules.EcgResult(taken_on=taken_on, qtc_ms=qtc))
    orders = dosing_orders_on(session, clinic.id, day)
    due_count = 0
    for patient in patients:
        history = rules.PatientHistory(treatment_started_on=patient.treatment_start_date,
                                       ecgs=tuple(ecgs[patient.id]))
        order = orders.get(patient.id)
        due = rules.ecg_due(rule_set, history, order.daily_total_mg if order else None, day)
        if not due:
            continue
        due_count += _remind(
            session, existing, ctx, ReminderKind.ECG_DUE, Role.PHYSICIAN, "patient", patient.id, "ECG_DUE",
            patient_id=patient.id, due_on=min(item.due_on for item in due),
            params={"codes": [str(item.code) for item in due], "table_version": due[0].table_version},
        )
    session.flush()
    return {"ecg_due": due_count}
