"""Reading a patient's record into the rule engine's plain inputs, and the order in force.

A fixed number of queries per patient whatever the length of treatment: doses are read for a
bounded window (plus the single last dose before it, which the missed-day count needs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased

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
    OrderStatus,
    Patient,
    VomitEvent,
)

# Long enough for every rule that looks at doses (rolling 7 days, missed days up to the drop-out
# review at 30 days, the first two weeks for dosing errors).
DOSE_WINDOW_DAYS = 120
TAKEN_STATES = (DoseState.COMPLETED, DoseState.PARTIAL)


def signed_orders(session: Session, patient_id: int) -> list[Order]:
    """Return the patient's signed orders of every kind, oldest signature first."""
    return list(
        session.scalars(
            select(Order)
            .where(Order.patient_id == patient_id, Order.status == OrderStatus.SIGNED)
            .order_by(Order.signed_at, Order.id)
        )
    )


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
    order's (unit-dose medicines have their own orders), and not declared void."""
    return (
        Dose.patient_id.in_(list(patient_ids)),
        Dose.state.in_(TAKEN_STATES),
        Dose.order_id.is_not(None),
        ~exists().where(DoseVoid.dose_id == Dose.id),
    )


# Only the columns the rules need: a patient's window holds months of doses, each with a transcript.
_RECORD_COLUMNS = (Dose.patient_id, Dose.business_date, Dose.kind, Dose.state, Dose.planned_mg, Dose.delivered_ml,
                   Lot.concentration_mg_per_ml)


def _records(rows) -> dict[int, list[rules.DoseRecord]]:
    found: dict[int, list[rules.DoseRecord]] = defaultdict(list)
    for patient_id, on, kind, state, planned_mg, delivered_ml, concentration, was_vomited in rows:
        if kind is DoseKind.COMPLETION and not delivered_ml:
            continue
        found[patient_id].append(rules.DoseRecord(
            on=on,
            kind=rules.DoseKind(kind.value),
            mg=_taken_mg(state, planned_mg, delivered_ml, concentration),
            vomited=bool(was_vomited),
        ))
    return found


def dose_records_by_patient(
    session: Session, patient_ids: Iterable[int], today: date
) -> dict[int, tuple[rules.DoseRecord, ...]]:
    """Return, for each patient, the doses taken in the window before ``today`` (and today), or
    for a patient with none there the doses of the last day dosed before the window; each with
    whether it was vomited. Two queries at most, whatever the number of patients."""
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    since = today - timedelta(days=DOSE_WINDOW_DAYS)
    vomited = exists().where(VomitEvent.dose_id == Dose.id)
    columns = (*_RECORD_COLUMNS, vomited)
    found = _records(session.execute(
        select(*columns)
        .outerjoin(Lot, Lot.id == Dose.lot_id)
        .where(*_taken(ids), Dose.business_date >= since, Dose.business_date <= today)
    ))
    missing = [patient_id for patient_id in ids if patient_id not in found]
    if missing:
        last = (
            select(Dose.patient_id, func.max(Dose.business_date).label("day"))
            .where(*_taken(missing), Dose.business_date < since)
            .group_by(Dose.patient_id)
            .subquery()
        )
        found.update(_records(session.execute(
            select(*columns)
            .join(last, and_(last.c.patient_id == Dose.patient_id, last.c.day == Dose.business_date))
            .outerjoin(Lot, Lot.id == Dose.lot_id)
            .where(*_taken(missing))
        )))
    return {patient_id: tuple(found.get(patient_id, ())) for patient_id in ids}


def dose_records(session: Session, patient_id: int, today: date) -> tuple[rules.DoseRecord, ...]:
    """Return the doses taken in the window before ``today`` (and today), plus the last one before
    the window, each with whether it was vomited."""
    return dose_records_by_patient(session, [patient_id], today)[patient_id]


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
    session: Session, patient: Patient, today: date, *, orders: Sequence[Order] | None = None
) -> rules.PatientHistory:
    """Return what the rules need about ``patient`` as of ``today``."""
    orders = signed_orders(session, patient.id) if orders is None else orders
    ecgs = session.scalars(select(EcgResult).where(EcgResult.patient_id == patient.id)).all()
    return build_history(patient, orders, dose_records(session, patient.id, today), ecgs)


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
