"""End-of-day preparation: mark the doses nobody took, open the reconciliation worksheets."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing.jobs.plans import dosing_orders_on
from dispensing.jobs.runs import JobContext
from dispensing.models import REGULAR_KINDS, Dose, DoseState, MissedDose
from dispensing.stock.reconciliation import open_worksheets

TAKEN_STATES = (DoseState.COMPLETED, DoseState.PARTIAL)


def mark_missed_doses(session: Session, ctx: JobContext) -> int:
    """Mark every part an order in force planned for the day with no dose taken (observed or
    take-home, completed or partial). Returns how many marks were added."""
    day, clinic = ctx.business_date, ctx.clinic
    orders = dosing_orders_on(session, clinic.id, day)
    taken = {tuple(row) for row in session.execute(
        select(Dose.patient_id, Dose.part_no).where(
            Dose.clinic_id == clinic.id, Dose.business_date == day, Dose.kind.in_(REGULAR_KINDS),
            Dose.state.in_(TAKEN_STATES))
    )}
    marked = {tuple(row) for row in session.execute(
        select(MissedDose.patient_id, MissedDose.part_no).where(
            MissedDose.clinic_id == clinic.id, MissedDose.business_date == day)
    )}
    added = 0
    for patient_id, order in sorted(orders.items()):
        for part in order.parts:
            key = (patient_id, part.part_no)
            if key in taken or key in marked:
                continue
            session.add(MissedDose(clinic_id=clinic.id, patient_id=patient_id, order_id=order.id,
                                   part_no=part.part_no, business_date=day))
            added += 1
    session.flush()
    return added


def prepare_end_of_day(session: Session, ctx: JobContext) -> dict:
    missed = mark_missed_doses(session, ctx)
    sheets = open_worksheets(session, ctx.clinic, ctx.business_date)
    return {"missed_doses": missed, "worksheets": len(sheets)}
