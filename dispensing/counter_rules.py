"""What the counter will decide for a patient on a date: the rule engine fed from the record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from dispensing import rules
from dispensing.history import (
    dosing_order_in_force,
    lifts_from,
    patient_history,
    rules_order,
    signed_orders,
)
from dispensing.models import Assessment, Dose, DoseKind, DoseState, DoseVoid, Lot, Order, Patient


def rules_lot(lot: Lot | None) -> rules.Lot | None:
    if lot is None:
        return None
    return rules.Lot(
        code=lot.lot_number,
        concentration_mg_per_ml=lot.concentration_mg_per_ml,
        concentration_verified=lot.concentration_verified_at is not None,
    )


def rules_assessment(assessment: Assessment | None) -> rules.PreDoseAssessment | None:
    if assessment is None:
        return None
    return rules.PreDoseAssessment(
        id=str(assessment.id), assessed_at=assessment.assessed_at, drowsy=assessment.drowsy,
        slurred_speech=assessment.slurred_speech, pinpoint_pupils=assessment.pinpoint_pupils,
        alcohol_smell=assessment.alcohol_smell, unsteady_gait=assessment.unsteady_gait, cows=assessment.cows,
    )


def latest_assessment(session: Session, patient_id: int, day: date) -> Assessment | None:
    return session.scalar(
        select(Assessment)
        .where(Assessment.patient_id == patient_id, Assessment.business_date == day)
        .order_by(Assessment.assessed_at.desc(), Assessment.id.desc())
        .limit(1)
    )


def evaluate_loaded(
    rule_set: rules.RuleSet,
    history: rules.PatientHistory,
    orders: Sequence[Order],
    day: date,
    now: datetime,
    *,
    lot: Lot | None = None,
    assessment: Assessment | None = None,
    device_resolution_ml: Decimal | None = None,
    take_home: rules.TakeHomeRequest | None = None,
) -> tuple[rules.CounterEvaluation, Order | None]:
    """Return (evaluation, order in force) from records already loaded: ``orders`` are the
    patient's signed orders (oldest signature first), ``history`` built from them."""
    order = dosing_order_in_force(orders, day)
    context = rules.CounterContext(
        today=day,
        now=now,
        history=history,
        order=rules_order(order) if order is not None else None,
        lot=rules_lot(lot),
        assessment=rules_assessment(assessment),
        lifts=lifts_from(orders),
        take_home=take_home,
        device_resolution_ml=device_resolution_ml,
    )
    return rules.evaluate_counter(rule_set, context), order


def counter_evaluation(
    session: Session,
    rule_set: rules.RuleSet,
    patient: Patient,
    day: date,
    now: datetime,
    *,
    lot: Lot | None = None,
    assessment: Assessment | None = None,
    use_latest_assessment: bool = True,
    device_resolution_ml: Decimal | None = None,
    take_home: rules.TakeHomeRequest | None = None,
) -> tuple[rules.CounterEvaluation, Order | None]:
    """Return (evaluation, order in force) for ``patient`` on ``day`` at ``now``, with the dose
    history the rule set reads (more with a take-home request)."""
    orders = signed_orders(session, patient.id)
    if assessment is None and use_latest_assessment:
        assessment = latest_assessment(session, patient.id, day)
    days = rule_set.dose_history_days if take_home is None else rule_set.take_home_dose_history_days
    if take_home is not None:
        take_home = replace(take_home, booked=frozenset(booked_take_home_days(session, patient.id, day)))
    return evaluate_loaded(
        rule_set, patient_history(session, patient, day, orders=orders, days=days), orders, day, now, lot=lot,
        assessment=assessment, device_resolution_ml=device_resolution_ml, take_home=take_home,
    )


def booked_take_home_days(session: Session, patient_id: int, day: date) -> set[date]:
    """Return the days after ``day`` that take-home doses already cover: prepared, being prepared
    or with an unknown outcome (a failed or voided one covers nothing). The dose history the rules
    read ends on ``day``, so without these a second request could pass the weekly limits."""
    return set(session.scalars(
        select(Dose.business_date).where(
            Dose.patient_id == patient_id, Dose.kind == DoseKind.TAKE_HOME, Dose.business_date > day,
            Dose.state != DoseState.FAILED, ~exists().where(DoseVoid.dose_id == Dose.id),
        ).distinct()
    ))
