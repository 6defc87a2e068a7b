"""The physician's work list: open clinical tasks, patients the counter will block today for
missed doses, orders ending without a follow-up, watch flags, and unsigned drafts; and marking a
task done with a note.

The list is built with a handful of set-based queries whatever the number of patients; the
missed-dose rules run only for the few patients whose last dose is old enough to be blocked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased, lazyload

from dispensing import audit, rules
from dispensing.clock import utcnow
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.history import TAKEN_STATES, dosing_order_in_force, lifts_from
from dispensing.models import (
    ClinicalTask,
    Dose,
    DoseKind,
    DoseVoid,
    Order,
    OrderKind,
    OrderStatus,
    Patient,
    PatientFlag,
    PatientStatus,
    Role,
    TaskStatus,
    User,
)
from dispensing.permissions import require_role, require_same_clinic

# How far back an order that ended without a follow-up stays on the list.
ENDED_LOOKBACK_DAYS = 7


@dataclass(frozen=True)
class MissedDoseBlock:
    patient: Patient
    missed_days: int
    decision: rules.Decision
    suggested: rules.DoseRange | None
    order: Order | None


@dataclass(frozen=True)
class OrderEnding:
    patient: Patient
    order: Order


@dataclass(frozen=True)
class Worklist:
    tasks: list[tuple[ClinicalTask, Patient]]
    missed: list[MissedDoseBlock]
    orders_ending: list[OrderEnding]
    flags: list[tuple[PatientFlag, Patient]]
    drafts: list[tuple[Order, Patient]]

    @property
    def count(self) -> int:
        return len(self.tasks) + len(self.missed) + len(self.orders_ending) + len(self.drafts)

    @property
    def incidents(self) -> list[tuple[ClinicalTask, Patient]]:
        """The open tasks a dosing error at the counter opened (CLINICAL_RULES §11)."""
        return [(task, patient) for task, patient in self.tasks if task.code in DOSING_ERROR_CODES]

    @property
    def other_tasks(self) -> list[tuple[ClinicalTask, Patient]]:
        """The open tasks that are not dosing-error incidents."""
        return [(task, patient) for task, patient in self.tasks if task.code not in DOSING_ERROR_CODES]


DOSING_ERROR_CODES = frozenset(reason.value for reason in (
    rules.Reason.DOSING_ERROR_INCIDENT, rules.Reason.DOSING_ERROR_OBSERVATION, rules.Reason.DOSING_ERROR_PHYSICIAN_ALERT))


def _missed_dose_threshold(rule_set: rules.RuleSet) -> int | None:
    """The fewest consecutive missed days the selected table BLOCKs at (None: it never blocks)."""
    blocking = [band.from_days for band in rule_set.missed_dose.bands if band.outcome is rules.Outcome.BLOCK]
    return min(blocking, default=None)


def _taken_doses():
    """The doses that count as taken for the missed-day count, as ``dispensing.history`` reads
    them: delivered (completed or partial), of a methadone order, not declared void; a completion
    only when something was delivered."""
    return (
        Dose.state.in_(TAKEN_STATES),
        Dose.order_id.is_not(None),
        ~exists().where(DoseVoid.dose_id == Dose.id),
        or_(Dose.kind != DoseKind.COMPLETION, Dose.delivered_ml > 0),
    )


def _last_dosed(session: Session, clinic_id: int, today: date, last_before: date, days: int) -> dict[int, date]:
    """Return patient → last day dosed, for the patients the missed-dose table may block today:
    last dose on or before ``last_before``, or no dose in the window the rules read (``days``)
    but a dosing order covering today (then the last dose before the window, if there ever was
    one). The same answer for any window; the rules' window keeps the first query small."""
    since = today - timedelta(days=days)
    in_window = dict(session.execute(
        select(Dose.patient_id, func.max(Dose.business_date))
        .where(Dose.clinic_id == clinic_id, *_taken_doses(), Dose.business_date >= since, Dose.business_date <= today)
        .group_by(Dose.patient_id)
    ).all())
    found = {patient_id: day for patient_id, day in in_window.items() if day <= last_before}
    covered = set(session.scalars(
        select(Order.patient_id).where(
            Order.clinic_id == clinic_id, Order.status == OrderStatus.SIGNED, Order.kind == OrderKind.DOSING,
            Order.valid_from <= today, or_(Order.valid_until.is_(None), Order.valid_until >= today))
    ))
    absent = sorted(covered - in_window.keys())
    if absent:
        found.update(session.execute(
            select(Dose.patient_id, func.max(Dose.business_date))
            .where(Dose.patient_id.in_(absent), *_taken_doses(), Dose.business_date < since)
            .group_by(Dose.patient_id)
        ).all())
    return found


def missed_dose_blocks(session: Session, clinic_id: int, rule_set: rules.RuleSet,
                       today: date) -> list[MissedDoseBlock]:
    """Return the patients in treatment whose dose today the counter will BLOCK for missed days
    (blocks a physician order already lifted are left out), most missed days first.

    The same decision as ``counter_evaluation`` gives at the counter (missed-dose table, usual
    dose of the order in force, lifts from signed orders), computed from the last day each patient
    was dosed: a handful of queries for the whole clinic, no per-patient history.
    """
    threshold = _missed_dose_threshold(rule_set)
    if threshold is None:
        return []
    last_dosed = _last_dosed(session, clinic_id, today, today - timedelta(days=threshold + 1),
                             rule_set.dose_history_days)
    if not last_dosed:
        return []
    ids = sorted(last_dosed)
    patients = session.scalars(select(Patient).where(Patient.id.in_(ids), Patient.status == PatientStatus.ACTIVE))
    orders: dict[int, list[Order]] = defaultdict(list)
    for order in session.scalars(select(Order).where(Order.patient_id.in_(ids), Order.status == OrderStatus.SIGNED)
                                 .order_by(Order.signed_at, Order.id)):
        orders[order.patient_id].append(order)
    blocking_codes = {band.reason for band in rule_set.missed_dose.bands if band.outcome is rules.Outcome.BLOCK}
    found = []
    for patient in patients:
        order = dosing_order_in_force(orders[patient.id], today)
        if order is None:
            continue  # stopped, suspended or no order: nothing to dose, so nothing to block
        last = rules.DoseRecord(on=last_dosed[patient.id], kind=rules.DoseKind.OBSERVED, mg=order.daily_total_mg)
        assessment = rules.assess_missed_doses(rule_set, (last,), today, order.daily_total_mg)
        if assessment.decision is None:
            continue
        [decision] = rules.apply_lifts([assessment.decision], lifts_from(orders[patient.id]))
        if decision.outcome is rules.Outcome.BLOCK and decision.code in blocking_codes:
            found.append(MissedDoseBlock(patient, assessment.missed_days, decision, assessment.suggested, order))
    return sorted(found, key=lambda item: (-item.missed_days, item.patient.code))


def last_dosed_day(session: Session, patient_id: int, today: date) -> date | None:
    """Return the last day before ``today`` the patient took a dose, or None."""
    return session.scalar(select(func.max(Dose.business_date))
                          .where(Dose.patient_id == patient_id, *_taken_doses(), Dose.business_date < today))


def missed_dose_review(session: Session, rule_set: rules.RuleSet, patient_id: int, orders: list[Order],
                       today: date) -> tuple[rules.MissedDoseAssessment, rules.Decision | None]:
    """Return the missed-dose assessment for today and its decision after the lifts of
    ``orders`` (the patient's signed orders) — what the counter will say about missed days, and
    what an order the physician signs now can lift. The decision is None when no day was missed."""
    if session.scalar(select(func.count()).select_from(Dose)
                      .where(Dose.patient_id == patient_id, *_taken_doses(), Dose.business_date == today)):
        return rules.assess_missed_doses(rule_set, (), today, Decimal(0)), None
    last = last_dosed_day(session, patient_id, today)
    # The usual dose, as the counter takes it: the order in force, else the latest dosing order.
    order = dosing_order_in_force(orders, today)
    dosing = [o for o in orders if o.kind is OrderKind.DOSING]
    if order is None and dosing:
        order = max(enumerate(dosing), key=lambda pair: (pair[1].valid_from, pair[0]))[1]
    usual = order.daily_total_mg if order is not None else Decimal(0)
    records = () if last is None else (rules.DoseRecord(on=last, kind=rules.DoseKind.OBSERVED, mg=usual),)
    assessment = rules.assess_missed_doses(rule_set, records, today, usual)
    if assessment.decision is None:
        return assessment, None
    [decision] = rules.apply_lifts([assessment.decision], lifts_from(orders))
    return assessment, decision


def orders_ending(session: Session, clinic_id: int, today: date) -> list[OrderEnding]:
    """Return dosing orders ending by tomorrow (or ended in the last week) that nothing follows:
    no later signed order of the patient, so the counter will have nothing to dose from."""
    later = aliased(Order)
    follow_up = (
        select(later.id)
        .where(later.patient_id == Order.patient_id, later.status == OrderStatus.SIGNED, later.id != Order.id,
               or_(later.valid_from > Order.valid_from,
                   and_(later.valid_from == Order.valid_from, later.signed_at > Order.signed_at)))
        .exists()
    )
    rows = session.execute(
        select(Order, Patient)
        .join(Patient, Patient.id == Order.patient_id)
        .where(Order.clinic_id == clinic_id, Order.status == OrderStatus.SIGNED, Order.kind == OrderKind.DOSING,
               Patient.status == PatientStatus.ACTIVE,
               Order.valid_until >= today - timedelta(days=ENDED_LOOKBACK_DAYS),
               Order.valid_until <= today + timedelta(days=1), ~follow_up)
        .options(lazyload(Order.parts))  # the list shows the daily total, not the parts
        .order_by(Order.valid_until, Patient.code)
    ).all()
    return [OrderEnding(patient, order) for order, patient in rows]


def physician_worklist(session: Session, actor: User, rule_set: rules.RuleSet, today: date) -> Worklist:
    """Return what the physicians of the actor's clinic should act on today. Physicians only."""
    require_role(actor, Role.PHYSICIAN)
    clinic_id = actor.clinic_id
    tasks = session.execute(
        select(ClinicalTask, Patient).join(Patient, Patient.id == ClinicalTask.patient_id)
        .where(ClinicalTask.clinic_id == clinic_id, ClinicalTask.status == TaskStatus.OPEN)
        .order_by(ClinicalTask.due_on, ClinicalTask.id)
    ).all()
    flags = session.execute(
        select(PatientFlag, Patient).join(Patient, Patient.id == PatientFlag.patient_id)
        .where(Patient.clinic_id == clinic_id, PatientFlag.starts_on <= today,
               or_(PatientFlag.ends_on.is_(None), PatientFlag.ends_on >= today))
        .order_by(PatientFlag.starts_on.desc(), PatientFlag.id)
    ).all()
    drafts = session.execute(
        select(Order, Patient).join(Patient, Patient.id == Order.patient_id)
        .where(Order.clinic_id == clinic_id, Order.status == OrderStatus.DRAFT, Order.created_by_id == actor.id)
        .order_by(Order.id)
    ).all()
    return Worklist(
        tasks=[tuple(row) for row in tasks],
        missed=missed_dose_blocks(session, clinic_id, rule_set, today),
        orders_ending=orders_ending(session, clinic_id, today),
        flags=[tuple(row) for row in flags],
        drafts=[tuple(row) for row in drafts],
    )


def complete_task(session: Session, actor: User, task_id: int, note: str) -> ClinicalTask:
    """Mark an open clinical task done with a note; committed. Physicians only.

    Raises PermissionDenied, NotFound (TASK_NOT_FOUND), ValidationFailed (TASK_NOTE_REQUIRED),
    Conflict (TASK_ALREADY_DONE).
    """
    require_role(actor, Role.PHYSICIAN)
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("note", code="TASK_NOTE_REQUIRED")
    begin_write(session)
    task = session.get(ClinicalTask, task_id)
    if task is None:
        raise NotFound("task", code="TASK_NOT_FOUND")
    require_same_clinic(actor, task.clinic_id)
    if task.status is TaskStatus.DONE:
        raise Conflict("already done", code="TASK_ALREADY_DONE")
    task.status, task.done_by_id, task.done_at, task.done_note = TaskStatus.DONE, actor.id, utcnow(), note
    audit.record(session, "task.done", actor_id=actor.id, clinic_id=task.clinic_id, entity=task,
                 data={"code": task.code, "patient_id": task.patient_id})
    session.commit()
    return task
