"""Reading a patient's record into the rule engine's plain inputs, and the order in force.

A fixed number of queries per patient whatever the length of treatment: doses are read for the
window the selected rule tables need (``RuleSet.dose_history_days``, derived from the tables'
own parameters), plus the last day dosed before it for a patient with no dose in the window (the
missed-day count needs it). ``dispensing.rules.history.windowed`` states the same contract in
plain Python; the rule tests check the window is enough for every shipped table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased, joinedload

from dispensing import rules
from dispensing.models import (
    Dose,
    DoseKind,
    DoseState,
    DoseVoid,
    EcgResult,
    Lot,
    Order,
    OrderKind,
    OrderPart,
    OrderStatus,
    Patient,
    PatientStatus,
    Phase,
    VomitEvent,
)

TAKEN_STATES = (DoseState.COMPLETED, DoseState.PARTIAL)


def signed_orders(session: Session, patient_id: int) -> list[Order]:
    """Return the patient's signed orders of every kind, oldest signature first, with their
    parts (one query)."""
    return list(
        session.scalars(
            select(Order)
            .where(Order.patient_id == patient_id, Order.status == OrderStatus.SIGNED)
            .options(joinedload(Order.parts))
            .order_by(Order.signed_at, Order.id)
        ).unique()
    )


@dataclass(frozen=True, slots=True)
class PartRow:
    part_no: int
    dose_mg: Decimal
    not_before: str | None


@dataclass(frozen=True, slots=True)
class OrderRow:
    """A signed order's columns, read without building an ORM entity: the attributes of
    ``Order`` that ``order_in_force``, ``rules_order``, ``lifts_from`` and the worklist read."""

    id: int
    patient_id: int
    kind: OrderKind
    phase: Phase | None
    daily_total_mg: Decimal
    valid_from: date
    valid_until: date | None
    supersedes_id: int | None
    signed_by_id: int | None
    cosigned_by_id: int | None
    lifts: list | None
    parts: tuple[PartRow, ...]


def signed_order_rows(session: Session, clinic_id: int, *, active_patients_only: bool = True
                      ) -> dict[int, list[OrderRow]]:
    """Return patient → signed orders of every kind (oldest signature first) with their parts, for
    the clinic's active patients (every patient with ``active_patients_only`` False), as plain
    rows in one query."""
    conditions = [Order.clinic_id == clinic_id, Order.status == OrderStatus.SIGNED]
    if active_patients_only:
        conditions.append(Order.patient_id.in_(
            select(Patient.id).where(Patient.clinic_id == clinic_id, Patient.status == PatientStatus.ACTIVE)))
    rows = session.connection().execute(
        select(Order.id, Order.patient_id, Order.kind, Order.phase, Order.daily_total_mg, Order.valid_from,
               Order.valid_until, Order.supersedes_id, Order.signed_by_id, Order.cosigned_by_id, Order.lifts,
               OrderPart.part_no, OrderPart.dose_mg, OrderPart.not_before)
        .select_from(Order).outerjoin(OrderPart, OrderPart.order_id == Order.id)
        .where(*conditions)
        .order_by(Order.signed_at, Order.id, OrderPart.part_no)
    )
    heads: dict[int, tuple] = {}  # in signature order
    parts: dict[int, list[PartRow]] = {}
    for row in rows:
        order_id = row[0]
        if order_id not in heads:
            heads[order_id], parts[order_id] = tuple(row[:11]), []
        if row[11] is not None:
            parts[order_id].append(PartRow(row[11], row[12], row[13]))
    found: dict[int, list[OrderRow]] = {}
    for order_id, head in heads.items():
        found.setdefault(head[1], []).append(OrderRow(*head, tuple(parts[order_id])))
    return found


def order_in_force(orders: Sequence[Order], day: date) -> Order | None:
    """Return the signed order that governs ``day`` (dosing, stop or suspend), or None.

    The latest signature wins among orders covering the day, and an order stops governing from
    the first day of any signed order that supersedes it.
    """
    superseded_from: dict[int, date] = {}
    for order in orders:
        if order.supersedes_id is not None:
            earlier = superseded_from.get(order.supersedes_id)
            if earlier is None or order.valid_from < earlier:
                superseded_from[order.supersedes_id] = order.valid_from
    governing = None
    for order in orders:  # oldest signature first: a later one replaces an earlier one
        if order.kind in (OrderKind.REPLACEMENT, OrderKind.ASSESSMENT_RELEASE):
            continue
        if order.valid_from > day or (order.valid_until is not None and order.valid_until < day):
            continue
        cut = superseded_from.get(order.id)
        if cut is not None and cut <= day:
            continue
        governing = order
    return governing


def dosing_order_in_force(orders: Sequence[Order], day: date) -> Order | None:
    """Return the dosing order in force on ``day``; None when stopped, suspended or none."""
    order = order_in_force(orders, day)
    return order if order is not None and order.kind is OrderKind.DOSING else None


def rules_order(order: Order) -> rules.Order:
    """Return ``order`` as the rule engine's plain value."""
    return rules.Order(
        phase=rules.Phase(order.phase.value),
        daily_total_mg=order.daily_total_mg,
        parts=tuple(part.dose_mg for part in order.parts),
        valid_from=order.valid_from,
        valid_until=order.valid_until,
        id=str(order.id) if order.id is not None else None,
        signed_by=str(order.signed_by_id) if order.signed_by_id else None,
        cosigned_by=str(order.cosigned_by_id) if order.cosigned_by_id else None,
    )


def _taken_mg(state: DoseState, planned_mg: Decimal, delivered_ml: Decimal | None,
              concentration: Decimal | None) -> Decimal:
    if state is DoseState.COMPLETED or delivered_ml is None or not concentration:
        return planned_mg
    return (delivered_ml * concentration).quantize(Decimal("0.1"))


def _taken(patient_ids: Sequence[int]):
    """Conditions for the doses a patient took: delivered (completed or partial), the methadone
    order's (unit-dose medicines have their own orders), not declared void, and a completion only
    when something was delivered (also in the last-day query: a completion that gave nothing is
    not a day dosed)."""
    return (
        Dose.patient_id.in_(list(patient_ids)),
        Dose.state.in_(TAKEN_STATES),
        Dose.order_id.is_not(None),
        ~exists().where(DoseVoid.dose_id == Dose.id),
        or_(Dose.kind != DoseKind.COMPLETION, Dose.delivered_ml > 0),
    )


# Only the columns the rules need, read as plain rows (no ORM entities): a clinic's worklist reads
# every patient's window at once.
_RECORD_COLUMNS = (Dose.patient_id, Dose.business_date, Dose.kind, Dose.state, Dose.planned_mg, Dose.delivered_ml,
                   Lot.concentration_mg_per_ml)
_RULE_KINDS = {kind: rules.DoseKind(kind.value) for kind in DoseKind}


def _records(rows, found: dict[int, list[rules.DoseRecord]]) -> None:
    record, kinds, completion = rules.DoseRecord, _RULE_KINDS, DoseKind.COMPLETION
    for patient_id, on, kind, state, planned_mg, delivered_ml, concentration, was_vomited in rows:
        if kind is completion and not delivered_ml:
            continue
        found.setdefault(patient_id, []).append(record(
            on, kinds[kind], _taken_mg(state, planned_mg, delivered_ml, concentration), bool(was_vomited)))


def dose_records_by_patient(
    session: Session, patient_ids: Iterable[int], today: date, *, days: int | None = None
) -> dict[int, tuple[rules.DoseRecord, ...]]:
    """Return, for each patient, the doses taken on ``today − days`` … ``today`` or, for a patient
    with none there, the doses of the last day dosed before; each with whether it was vomited.
    ``days`` None: every dose up to ``today``. Pass ``rule_set.dose_history_days(…)`` — the
    days the rules read — not a guess. Two queries at most, whatever the number of patients.
    (``dispensing.rules.history.windowed`` is the same contract over plain records.)"""
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    connection = session.connection()
    vomited = exists().where(VomitEvent.dose_id == Dose.id)
    columns = (*_RECORD_COLUMNS, vomited)
    window = [Dose.business_date <= today]
    since = None if days is None else today - timedelta(days=days)
    if since is not None:
        window.append(Dose.business_date >= since)
    found: dict[int, list[rules.DoseRecord]] = {}
    _records(connection.execute(
        select(*columns).select_from(Dose).outerjoin(Lot, Lot.id == Dose.lot_id).where(*_taken(ids), *window)
    ), found)
    missing = [patient_id for patient_id in ids if patient_id not in found]
    if missing and since is not None:
        last = (
            select(Dose.patient_id, func.max(Dose.business_date).label("day"))
            .where(*_taken(missing), Dose.business_date < since)
            .group_by(Dose.patient_id)
            .subquery()
        )
        _records(connection.execute(
            select(*columns).select_from(Dose)
            .join(last, and_(last.c.patient_id == Dose.patient_id, last.c.day == Dose.business_date))
            .outerjoin(Lot, Lot.id == Dose.lot_id)
            .where(*_taken(missing))
        ), found)
    return {patient_id: tuple(found.get(patient_id, ())) for patient_id in ids}


def dose_records(
    session: Session, patient_id: int, today: date, *, days: int | None = None
) -> tuple[rules.DoseRecord, ...]:
    """Return the patient's doses taken on ``today − days`` … ``today`` (every one up to today
    with ``days`` None), or the last day dosed before, each with whether it was vomited."""
    return dose_records_by_patient(session, [patient_id], today, days=days)[patient_id]


def build_history(
    patient: Patient,
    orders: Sequence[Order],
    doses: Sequence[rules.DoseRecord],
    ecgs: Sequence[EcgResult],
) -> rules.PatientHistory:
    """Return the rules' view of a patient from records already loaded."""
    return rules.PatientHistory(
        treatment_started_on=patient.treatment_start_date,
        orders=tuple(rules_order(o) for o in orders if o.kind is OrderKind.DOSING),
        doses=tuple(doses),
        ecgs=tuple(rules.EcgResult(taken_on=e.taken_on, qtc_ms=e.qtc_ms, id=str(e.id)) for e in ecgs),
        take_home_commitment_signed=patient.take_home_commitment_on is not None,
    )


def patient_history(
    session: Session, patient: Patient, today: date, *, orders: Sequence[Order] | None = None,
    days: int | None = None,
) -> rules.PatientHistory:
    """Return what the rules need about ``patient`` as of ``today``, with the doses of the last
    ``days`` days (``rule_set.dose_history_days(…)``; None: all)."""
    orders = signed_orders(session, patient.id) if orders is None else orders
    ecgs = session.scalars(select(EcgResult).where(EcgResult.patient_id == patient.id)).all()
    return build_history(patient, orders, dose_records(session, patient.id, today, days=days), ecgs)


def lifts_from(orders: Sequence[Order]) -> tuple[rules.Lift, ...]:
    """Return the counter BLOCKs that signed orders lift (code + subject, by a physician)."""
    found = []
    for order in orders:
        for lift in order.lifts or ():
            found.append(
                rules.Lift(
                    code=rules.Reason(lift["code"]),
                    role=rules.Role.PHYSICIAN,
                    subject=lift.get("subject"),
                    evidence=f"order:{order.id}",
                )
            )
    return tuple(found)


def superseding(session: Session, order_id: int) -> Order | None:
    """Return the signed order that superseded ``order_id``, if any."""
    newer = aliased(Order)
    return session.scalar(
        select(newer).where(newer.supersedes_id == order_id, newer.status == OrderStatus.SIGNED).limit(1)
    )
