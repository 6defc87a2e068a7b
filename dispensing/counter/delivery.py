"""The dose and the pump: what the counter's device service asks for and reports, crash recovery,
and the human resolution of a dose whose outcome is unknown.

The device service (``devices.service``, in-process or as an agent over HTTP) calls, in order:
``next_job`` → ``record_progress(PROGRAMMED)`` (before RUN: a refusal here means RUN is never
sent) → ``record_progress(RUNNING)`` → ``record_result``, which writes the final state and the
ledger line in one transaction. At its start it calls ``recover_counter``: whatever its counter
left in flight becomes UNKNOWN, with the pump's counter reading when it could be read. Nothing is
retried automatically; ``resolve_unknown`` needs the nurse and a different witness, both
re-authenticated.

Each function checks that the dose belongs to the reporting counter (an agent can only touch its
own counter's doses) and accepts a repeated report of a state already recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import structlog
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, aliased

from dispensing import audit, rules, stock
from dispensing.accounts import reauthenticate
from dispensing.clock import utcnow
from dispensing.counter.common import (
    CALIBRATION_SKEW,
    IN_FLIGHT,
    TAKEN,
    ceiling_ml,
    raise_task,
    record_state,
)
from dispensing.counter.dosing import delivered_mg, remainder_mg
from dispensing.db import begin_write
from dispensing.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from dispensing.models import (
    Calibration,
    Clinic,
    Device,
    Dose,
    DoseEvent,
    DoseKind,
    DoseState,
    Lot,
    Patient,
    Role,
    User,
)
from dispensing.patients import get_patient
from dispensing.permissions import require_role
from dispensing.stock.signatures import Cosigner, resolve_cosigner, sign

log = structlog.get_logger(__name__)

ML = Decimal("0.01")
# A REQUESTED dose older than this is not handed to a pump: nobody may be at the counter any more.
REQUEST_MAX_AGE = timedelta(minutes=3)

RuleSets = Callable[[Clinic], rules.RuleSet]


# ---------------------------------------------------------------------------------------------
# Values exchanged with the device service


@dataclass(frozen=True)
class DoseJob:
    """One dose for the counter's pump: volume, the application's ceiling and the calibration."""

    dose_id: int
    volume_ml: Decimal
    ceiling_ml: Decimal
    calibration: dict | None  # factor, method, passed, evaluated_at, valid_until (ISO strings)

    def to_dict(self) -> dict:
        return {"dose_id": self.dose_id, "volume_ml": str(self.volume_ml), "ceiling_ml": str(self.ceiling_ml),
                "calibration": self.calibration}


@dataclass(frozen=True)
class DeviceOutcome:
    """What the pump did, as ``devices.dispense.DispenseResult.to_dict()`` reports it."""

    outcome: str  # COMPLETED | PARTIAL | FAILED
    target_ml: Decimal
    measured_ml: Decimal
    reason: str | None
    uncertain: bool
    pump_counter_ml: Decimal | None = None
    calibration_factor: Decimal | None = None
    measurement_source: str | None = None
    notes: tuple[str, ...] = ()
    transcript: tuple[dict, ...] = ()
    started_at: str | None = None
    finished_at: str | None = None

    OUTCOMES = ("COMPLETED", "PARTIAL", "FAILED")

    @classmethod
    def from_dict(cls, data: Mapping) -> DeviceOutcome:
        """Parse a reported result. Raises ValidationFailed(DEVICE_RESULT_INVALID)."""

        def decimal(name: str, required: bool = True) -> Decimal | None:
            value = data.get(name)
            if value is None and not required:
                return None
            try:
                number = Decimal(str(value))
            except (InvalidOperation, ValueError, TypeError) as exc:
                raise ValidationFailed(name, code="DEVICE_RESULT_INVALID") from exc
            if not number.is_finite() or number < 0:
                raise ValidationFailed(name, code="DEVICE_RESULT_INVALID")
            return number

        outcome = str(data.get("outcome", ""))
        if outcome not in cls.OUTCOMES:
            raise ValidationFailed("outcome", code="DEVICE_RESULT_INVALID")
        measured = decimal("measured_ml")
        if measured != measured.quantize(ML):
            raise ValidationFailed("measured_ml", code="DEVICE_RESULT_INVALID")
        return cls(
            outcome=outcome, target_ml=decimal("target_ml"), measured_ml=measured,
            reason=data.get("reason"), uncertain=bool(data.get("uncertain")),
            pump_counter_ml=decimal("pump_counter_ml", False), calibration_factor=decimal("calibration_factor", False),
            measurement_source=data.get("measurement_source"), notes=tuple(str(n) for n in data.get("notes") or ()),
            transcript=tuple(data.get("transcript") or ()), started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
        )


def calibration_job_data(calibration: Calibration | None) -> dict | None:
    if calibration is None:
        return None
    return {"factor": str(calibration.factor), "method": calibration.method.value.upper(),
            "passed": calibration.passed, "evaluated_at": calibration.performed_at.isoformat(),
            "valid_until": calibration.valid_until.isoformat()}


def _own_dose(session: Session, counter_id: int, dose_id: int) -> Dose:
    return _check_own(session.get(Dose, dose_id, with_for_update=True, populate_existing=True), counter_id)


def _check_own(dose: Dose | None, counter_id: int) -> Dose:
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    if dose.counter_id != counter_id:
        raise PermissionDenied("dose of another counter", code="DOSE_OTHER_COUNTER")
    return dose


# ---------------------------------------------------------------------------------------------
# The device service's calls


def _queue_moving(session: Session, counter_id: int, dose: Dose, since: datetime) -> bool:
    """True when the dose before this one at the counter finished after ``since``: the request
    waited behind others (e.g. a batch of take-home containers), not for an absent pump."""
    finished = session.scalar(
        select(func.max(Dose.finished_at)).where(Dose.counter_id == counter_id, Dose.id < dose.id,
                                                 Dose.device_id.is_not(None), Dose.state.in_(TAKEN))
    )
    return finished is not None and finished >= since


_LatestCalibration = aliased(Calibration)
# The counter's oldest REQUESTED dose for its pump, with the pump and its latest calibration
# performed by ``calibrated_by`` (``latest_calibration``): one statement, built once.
_NEXT_JOB = (
    select(Dose, Device, Calibration)
    .join(Device, Device.id == Dose.device_id)
    .outerjoin(Calibration, Calibration.id == (
        select(_LatestCalibration.id)
        .where(_LatestCalibration.device_id == Device.id,
               _LatestCalibration.performed_at <= bindparam("calibrated_by", type_=Calibration.performed_at.type))
        .order_by(_LatestCalibration.performed_at.desc(), _LatestCalibration.id.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()))
    .where(Dose.counter_id == bindparam("counter_id"), Dose.state == DoseState.REQUESTED,
           Dose.device_id.is_not(None))
    .order_by(Dose.id)
    .limit(1)
)


def next_job(session: Session, counter_id: int, *, now: datetime | None = None,
             max_age: timedelta = REQUEST_MAX_AGE) -> DoseJob | None:
    """Return the counter's oldest REQUESTED dose for its pump, or None. A request that waited
    longer than ``max_age`` with nothing moving at the counter is not handed out — nobody may be
    at the counter any more: it ends FAILED (REQUEST_EXPIRED) and the next one is tried.
    Commits (reads end their transaction; an expiry is written)."""
    now = now or utcnow()
    while True:
        row = session.execute(_NEXT_JOB, {"counter_id": counter_id, "calibrated_by": now + CALIBRATION_SKEW}).first()
        if row is None:
            session.commit()
            return None
        dose, device, calibration = row
        since = now - max_age
        if dose.requested_at >= since or _queue_moving(session, counter_id, dose, since):
            job = DoseJob(dose.id, dose.planned_ml, ceiling_ml(device), calibration_job_data(calibration))
            session.commit()
            return job
        session.commit()
        _expire(session, counter_id, dose.id, now)


def _expire(session: Session, counter_id: int, dose_id: int, now: datetime) -> None:
    begin_write(session)
    dose = _own_dose(session, counter_id, dose_id)
    if dose.state is DoseState.REQUESTED:
        dose.delivered_ml = Decimal("0.00")
        dose.finished_at = now
        dose.failure_reason = "REQUEST_EXPIRED"
        record_state(session, dose, DoseState.FAILED, at=now, actor_id=None,
                     detail={"reason": "REQUEST_EXPIRED", "requested_at": dose.requested_at.isoformat()})
    session.commit()


_PROGRESS = {DoseState.PROGRAMMED: DoseState.REQUESTED, DoseState.RUNNING: DoseState.PROGRAMMED}


def record_progress(session: Session, counter_id: int, dose_id: int, state: DoseState | str,
                    *, now: datetime | None = None) -> Dose:
    """Record PROGRAMMED (before RUN is sent) or RUNNING. Committed. Raises Conflict
    (DOSE_STATE_CONFLICT) when the dose is no longer where that step starts from — cancelled,
    expired, or taken by another device service — so the caller must not send RUN."""
    state = DoseState(state)
    if state not in _PROGRESS:
        raise ValidationFailed("state", code="DEVICE_RESULT_INVALID")
    now = now or utcnow()
    begin_write(session)
    dose = _own_dose(session, counter_id, dose_id)
    if dose.state is state:
        session.commit()
        return dose
    if dose.state is not _PROGRESS[state]:
        raise Conflict("dose is not waiting for this step", code="DOSE_STATE_CONFLICT", state=dose.state.value)
    record_state(session, dose, state, at=now, actor_id=None)
    session.commit()
    return dose


def _final_state(dose: Dose, result: DeviceOutcome) -> tuple[DoseState, Decimal | None]:
    """Map the device's outcome onto the dose: (state, delivered ml)."""
    if result.outcome == "COMPLETED":
        return DoseState.COMPLETED, result.measured_ml
    if result.outcome == "PARTIAL":
        return DoseState.PARTIAL, result.measured_ml
    if result.uncertain:
        # The pump may have delivered more than was last seen: a human decides.
        return DoseState.UNKNOWN, None
    if result.measured_ml > 0:
        # Over-delivery: the patient received it all; the record must say so (and a dosing-error
        # incident opens below).
        return DoseState.COMPLETED, result.measured_ml
    return DoseState.FAILED, Decimal("0.00")


# The dose, row-locked (FOR UPDATE OF dose), with the detail of its REQUESTED event (whether the
# first induction dose's observation is due: ``after_delivery``), in one statement.
_RESULT_DOSE = (
    select(Dose, select(DoseEvent.detail)
           .where(DoseEvent.dose_id == Dose.id, DoseEvent.state == DoseState.REQUESTED)
           .order_by(DoseEvent.id).limit(1).correlate(Dose).scalar_subquery())
    .where(Dose.id == bindparam("dose_id"))
    .with_for_update(of=Dose)
    .execution_options(populate_existing=True)
)


def record_result(session: Session, counter_id: int, dose_id: int, result: DeviceOutcome, rule_sets: RuleSets,
                  *, now: datetime | None = None) -> Dose:
    """Write the dispense's final state, the measured ml, the transcript and — for a delivery —
    the ledger line, in one transaction. An uncertain failure becomes UNKNOWN with the last
    reading. A result for a dose already final (a repeated report) changes nothing. Committed.

    Should the final write be refused (a bug or a closed day), the dose still leaves flight: it is
    recorded UNKNOWN with the reading and the refusal, for a human to resolve.
    """
    now = now or utcnow()
    begin_write(session)
    row = session.execute(_RESULT_DOSE, {"dose_id": dose_id}).first()
    dose = _check_own(row[0] if row is not None else None, counter_id)
    if dose.state not in IN_FLIGHT:
        if dose.device_reading_ml is not None and dose.device_reading_ml != result.measured_ml:
            log.warning("dose.result_ignored", dose_id=dose.id, state=dose.state.value)
        session.commit()
        return dose
    try:
        _write_result(session, dose, result, rule_sets, now, requested_detail=row[1])
        session.commit()
        return dose
    except DomainError as exc:
        session.rollback()
        log.error("dose.result_not_booked", dose_id=dose_id, code=exc.params.get("code") or exc.code)
        return _result_unbooked(session, counter_id, dose_id, result, str(exc.params.get("code") or exc.code), now)


def _result_detail(result: DeviceOutcome) -> dict:
    return {
        "outcome": result.outcome, "reason": result.reason, "measured_ml": str(result.measured_ml),
        "uncertain": result.uncertain, "target_ml": str(result.target_ml),
        "pump_counter_ml": None if result.pump_counter_ml is None else str(result.pump_counter_ml),
        "calibration_factor": None if result.calibration_factor is None else str(result.calibration_factor),
        "measurement_source": result.measurement_source, "notes": list(result.notes),
        "device_started_at": result.started_at, "device_finished_at": result.finished_at,
    }


def _write_result(session: Session, dose: Dose, result: DeviceOutcome, rule_sets: RuleSets, now: datetime,
                  *, requested_detail: dict | None) -> None:
    state, delivered = _final_state(dose, result)
    dose.device_reading_ml = result.measured_ml
    dose.delivered_ml = delivered
    dose.finished_at = now
    dose.failure_reason = result.reason
    dose.transcript = list(result.transcript)
    dose.state = state
    if state in TAKEN:
        # The ledger line first: on PostgreSQL the audit append below takes the chain's global
        # lock, held to the commit, so the transaction's other work is done before it.
        stock.book_dose(session, dose)
    record_state(session, dose, state, at=now, actor_id=None, detail=_result_detail(result))
    if state in TAKEN:
        after_delivery(session, dose, rule_sets, now, requested_detail=requested_detail)


def _result_unbooked(session: Session, counter_id: int, dose_id: int, result: DeviceOutcome, code: str,
                     now: datetime) -> Dose:
    begin_write(session)
    dose = _own_dose(session, counter_id, dose_id)
    if dose.state in IN_FLIGHT:
        dose.device_reading_ml = result.measured_ml
        dose.failure_reason = code[:64]
        dose.transcript = list(result.transcript)
        record_state(session, dose, DoseState.UNKNOWN, at=now, actor_id=None,
                     detail={**_result_detail(result), "not_booked": code})
    session.commit()
    return dose


def recover_counter(session: Session, counter_id: int, *, pump_counter_ml: Decimal | None, note: str | None = None,
                    now: datetime | None = None) -> list[Dose]:
    """At the device service's start: every dose its counter left REQUESTED, PROGRAMMED or
    RUNNING becomes UNKNOWN. The pump's counter reading (raw, as the pump shows it; None when it
    could not be read) goes to the dose that reached the pump last, converted with the factor of
    the calibration it was dispensed under. Nothing is retried. Committed; returns those doses."""
    now = now or utcnow()
    begin_write(session)
    doses = list(session.scalars(
        select(Dose).where(Dose.counter_id == counter_id, Dose.state.in_(IN_FLIGHT), Dose.device_id.is_not(None))
        .order_by(Dose.id).with_for_update().execution_options(populate_existing=True)
    ))
    moving = [d for d in doses if d.state in (DoseState.PROGRAMMED, DoseState.RUNNING)]
    read = moving[-1] if moving else None
    for dose in doses:
        detail: dict = {"previous_state": dose.state.value, "note": note}
        if dose is read and pump_counter_ml is not None:
            calibration = _calibration_passed_before(session, dose.device_id, dose.requested_at)
            factor = calibration.factor if calibration is not None else Decimal(1)
            estimate = (pump_counter_ml / factor).quantize(ML, rounding=ROUND_HALF_UP)
            dose.device_reading_ml = estimate
            detail.update(pump_counter_ml=str(pump_counter_ml), calibration_factor=str(factor),
                          estimated_ml=str(estimate))
        elif dose is read:
            detail["pump_counter_ml"] = None
        dose.failure_reason = "INTERRUPTED"
        record_state(session, dose, DoseState.UNKNOWN, at=now, actor_id=None, detail=detail)
    session.commit()
    return doses


def _calibration_passed_before(session: Session, device_id: int, at: datetime) -> Calibration | None:
    return session.scalar(
        select(Calibration)
        .where(Calibration.device_id == device_id, Calibration.passed.is_(True), Calibration.performed_at <= at)
        .order_by(Calibration.performed_at.desc(), Calibration.id.desc())
        .limit(1)
    )


# ---------------------------------------------------------------------------------------------
# After a delivery: dosing errors (CLINICAL_RULES §11) and the first induction dose's observation


_UNREAD: dict = {}


def after_delivery(session: Session, dose: Dose, rule_sets: RuleSets, now: datetime, *,
                   requested_detail: dict | None = _UNREAD) -> None:
    """Open the follow-ups a delivered dose calls for: a dosing-error incident when more than the
    order was recorded, and the observation after the first dose of an induction. The patient,
    the clinic's rules and the lot are read only when one of them may be due (a dose delivered as
    planned is neither an excess nor, unless its request said so, a first induction dose)."""
    ordered = dose.planned_mg
    if dose.state is DoseState.COMPLETED and dose.delivered_ml == dose.planned_ml:
        recorded = dose.planned_mg  # delivered_mg() without the lot: the plan was given
    else:
        lot = session.get(Lot, dose.lot_id) if dose.lot_id else None
        recorded = delivered_mg(dose, lot.concentration_mg_per_ml if lot is not None else None)
    if dose.kind is DoseKind.COMPLETION and dose.linked_dose_id is not None:
        original = session.get(Dose, dose.linked_dose_id)
        ordered = original.planned_mg
        recorded = original.planned_mg - remainder_mg(session, original)
    observe = None
    if dose.kind is DoseKind.OBSERVED:
        if requested_detail is _UNREAD:  # the caller did not read it with the dose
            requested_detail = session.scalar(select(DoseEvent.detail).where(
                DoseEvent.dose_id == dose.id, DoseEvent.state == DoseState.REQUESTED)
                .order_by(DoseEvent.id).limit(1))
        observe = (requested_detail or {}).get("observation")
    # rules.check_recorded_dose opens nothing unless more than the order was recorded.
    if recorded <= ordered and not observe:
        return
    patient = session.get(Patient, dose.patient_id)
    rule_set = rule_sets(session.get(Clinic, dose.clinic_id))
    incident = rules.check_recorded_dose(rule_set, ordered_mg=ordered, recorded_mg=recorded, given_at=now,
                                         given_on=dose.business_date,
                                         treatment_started_on=patient.treatment_start_date)
    subject = f"dose:{dose.id}"
    if incident is not None:
        alert, watch = incident.physician_alert, incident.observation
        raise_task(session, patient, code=alert.code.value, due_on=alert.due_on, subject=subject,
                   message_vi=alert.message_vi, message_en=alert.message_en, table_version=alert.table_version)
        raise_task(session, patient, code=watch.code.value, due_on=dose.business_date, subject=subject,
                   message_vi=watch.message_vi, message_en=watch.message_en, table_version=watch.table_version)
        audit.record(session, "dose.dosing_error", actor_id=None, clinic_id=dose.clinic_id, entity_type="Dose",
                     entity_id=dose.id, at=now,
                     data={"ordered_mg": ordered, "recorded_mg": recorded, "excess_mg": incident.excess_mg})
    if observe:
        watch = rules.first_dose_observation(rule_set, now)
        raise_task(session, patient, code=watch.code.value, due_on=dose.business_date, subject=subject,
                   message_vi=watch.message_vi, message_en=watch.message_en, table_version=watch.table_version)


# ---------------------------------------------------------------------------------------------
# Resolving an UNKNOWN dose


class Resolution:
    GIVEN = "given"
    NOT_GIVEN = "not_given"
    PARTIAL = "partial"
    ALL = (GIVEN, NOT_GIVEN, PARTIAL)


def resolve_unknown(
    session: Session, actor: User, rule_sets: RuleSets, *, dose_id: int, outcome: str, password: str,
    witness: Cosigner | None, delivered_ml: Decimal | None = None, note: str | None = None,
    now: datetime | None = None,
) -> Dose:
    """Record what really happened to an UNKNOWN dose: ``given`` (the planned volume, or the
    ``delivered_ml`` the nurse measured), ``partial`` (``delivered_ml`` below the plan) or
    ``not_given``. The nurse signs with her password, a different person witnesses with theirs;
    what was given is booked to the ledger in the same transaction. Committed.

    Raises PermissionDenied, NotFound, ReauthenticationFailed, Conflict(DOSE_NOT_UNKNOWN),
    ValidationFailed (RESOLUTION_INVALID, RESOLUTION_ML_INVALID, WITNESS_REQUIRED,
    COSIGNER_IS_SIGNER).
    """
    require_role(actor, Role.NURSE)
    if outcome not in Resolution.ALL:
        raise ValidationFailed("outcome", code="RESOLUTION_INVALID")
    reauthenticate(actor, password)
    now = now or utcnow()
    begin_write(session)
    dose = session.get(Dose, dose_id, with_for_update=True, populate_existing=True)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    get_patient(session, actor, dose.patient_id)
    if dose.state is not DoseState.UNKNOWN:
        raise Conflict("only an unknown dose is resolved", code="DOSE_NOT_UNKNOWN", state=dose.state.value)
    witness_user = resolve_cosigner(session, actor, witness, required_code="WITNESS_REQUIRED")
    planned = dose.planned_ml or Decimal(0)
    if outcome == Resolution.NOT_GIVEN:
        state, given = DoseState.FAILED, Decimal("0.00")
    else:
        given = planned if delivered_ml is None and outcome == Resolution.GIVEN else delivered_ml
        if given is None or given <= 0 or given != given.quantize(ML):
            raise ValidationFailed("ml", code="RESOLUTION_ML_INVALID")
        if outcome == Resolution.PARTIAL and given >= planned:
            raise ValidationFailed("partial is less than planned", code="RESOLUTION_ML_INVALID")
        state = DoseState.PARTIAL if outcome == Resolution.PARTIAL else DoseState.COMPLETED
    dose.delivered_ml = given
    dose.witness_id = witness_user.id
    dose.finished_at = now
    detail = {"resolution": outcome, "delivered_ml": str(given), "witness_id": witness_user.id,
              "device_reading_ml": None if dose.device_reading_ml is None else str(dose.device_reading_ml),
              "note": (note or "").strip() or None}
    record_state(session, dose, state, at=now, actor_id=actor.id, detail=detail, action="dose.resolved")
    sign(session, witness_user, action="dose.resolution.witnessed", role="witness", entity=dose,
         clinic_id=dose.clinic_id, at=now, data={"resolution": outcome, "delivered_ml": given})
    if state in TAKEN:
        stock.book_dose(session, dose)
        after_delivery(session, dose, rule_sets, now)
    session.commit()
    return dose
