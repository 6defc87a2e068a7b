"""What every counter use case shares: refusals with stable codes, the patient's day lock, the
counter's pump and its calibration, and writing a dose's state with its event and audit record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, insert, select
from sqlalchemy.orm import Session, make_transient_to_detached

from dispensing import audit, rules
from dispensing.clock import business_date
from dispensing.errors import Conflict, DomainError, NotFound, ValidationFailed
from dispensing.models import (
    Calibration,
    Clinic,
    ClinicalTask,
    Counter,
    Device,
    DeviceKind,
    Dose,
    DoseEvent,
    DoseState,
    Patient,
    PatientStatus,
    User,
)
from dispensing.orders import AcknowledgementRequired
from dispensing.permissions import require_same_clinic

# States of a dose on its way through the pump; a crash leaves these UNKNOWN.
IN_FLIGHT = (DoseState.REQUESTED, DoseState.PROGRAMMED, DoseState.RUNNING)
# Final states: the database freezes the row from here on.
FINAL = (DoseState.COMPLETED, DoseState.PARTIAL, DoseState.FAILED)
# States in which the patient received something.
TAKEN = (DoseState.COMPLETED, DoseState.PARTIAL)
# The application's own hard limit per dispense when a pump's settings do not name one
# (``ceiling_ml`` in Device.settings); the driver has its own ceiling as well.
DEFAULT_CEILING_ML = Decimal("30.00")
# Volume resolution of a pump when its settings do not name one (``resolution_ml``).
DEFAULT_RESOLUTION_ML = Decimal("0.01")
# Device settings the application reads; every other key belongs to the driver.
APPLICATION_SETTINGS = frozenset({"ceiling_ml", "resolution_ml"})
# Calibrations dated up to this far ahead of the server clock still count (clock skew).
CALIBRATION_SKEW = timedelta(minutes=5)
MAX_KEY_LENGTH = 64


class DoseBlocked(DomainError):
    """A rule BLOCKs the dose; ``decisions`` says which and why (and who may lift it)."""

    code = "DOSE_BLOCKED"
    status = 422

    def __init__(self, decisions: list[rules.Decision], *, code: str = "DOSE_BLOCKED"):
        super().__init__("dose blocked", code=code, decisions=decisions)
        self.decisions = decisions


class AlreadyDosed(Conflict):
    """The patient's slot (product, part, day) already has a regular dose."""

    code = "ALREADY_DOSED"

    def __init__(self, dose_id: int | None = None):
        super().__init__("already dosed", code="ALREADY_DOSED", dose_id=dose_id)
        self.dose_id = dose_id


def clinic_day(session: Session, clinic_id: int, now: datetime) -> tuple[Clinic, date]:
    clinic = session.get(Clinic, clinic_id)
    return clinic, business_date(now, clinic.timezone)


def require_key(key: str | None) -> str:
    """Return the client's idempotency key; ValidationFailed(IDEMPOTENCY_KEY_INVALID) otherwise."""
    key = (key or "").strip()
    if not 8 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed("idempotency key", code="IDEMPOTENCY_KEY_INVALID")
    return key


def lock_patient(session: Session, actor: User, patient_id: int) -> Patient:
    """Return the patient of the actor's clinic, row-locked on PostgreSQL so that two counters
    serialise on the patient's day (SQLite writers already hold the write lock: BEGIN IMMEDIATE).
    Raises NotFound, PermissionDenied, Conflict(PATIENT_NOT_ACTIVE)."""
    patient = session.get(Patient, patient_id, with_for_update=True, populate_existing=True)
    if patient is None:
        raise NotFound("patient", code="PATIENT_NOT_FOUND")
    require_same_clinic(actor, patient.clinic_id)
    if patient.status is not PatientStatus.ACTIVE:
        raise Conflict("patient not in treatment", code="PATIENT_NOT_ACTIVE")
    return patient


def get_counter(session: Session, clinic_id: int, counter_id: int) -> Counter:
    return require_counter(session.get(Counter, counter_id), clinic_id)


def require_counter(counter: Counter | None, clinic_id: int) -> Counter:
    """Return ``counter`` when it is an active counter of the clinic. Raises NotFound
    (COUNTER_NOT_FOUND), Conflict(COUNTER_INACTIVE)."""
    if counter is None or counter.clinic_id != clinic_id:
        raise NotFound("counter", code="COUNTER_NOT_FOUND")
    if not counter.active:
        raise Conflict("counter not in use", code="COUNTER_INACTIVE")
    return counter


def counter_pump(session: Session, counter: Counter) -> Device:
    """Return the counter's active pump. Raises ValidationFailed(COUNTER_HAS_NO_PUMP)."""
    pump = session.scalar(
        select(Device)
        .where(Device.counter_id == counter.id, Device.kind == DeviceKind.PUMP, Device.active.is_(True))
        .order_by(Device.id)
        .limit(1)
    )
    if pump is None:
        raise ValidationFailed("no pump at this counter", code="COUNTER_HAS_NO_PUMP")
    return pump


def counter_and_pump(session: Session, clinic_id: int, counter_id: int) -> tuple[Counter, Device]:
    """``get_counter`` and ``counter_pump`` in one query, with the same refusals in the same order."""
    row = session.execute(
        select(Counter, Device)
        .outerjoin(Device, and_(Device.counter_id == Counter.id, Device.kind == DeviceKind.PUMP,
                                Device.active.is_(True)))
        .where(Counter.id == counter_id)
        .order_by(Device.id)
        .limit(1)
    ).first()
    counter, pump = (row[0], row[1]) if row is not None else (None, None)
    if counter is None or counter.clinic_id != clinic_id:
        raise NotFound("counter", code="COUNTER_NOT_FOUND")
    if not counter.active:
        raise Conflict("counter not in use", code="COUNTER_INACTIVE")
    if pump is None:
        raise ValidationFailed("no pump at this counter", code="COUNTER_HAS_NO_PUMP")
    return counter, pump


def device_setting(device: Device, name: str, default: Decimal) -> Decimal:
    value = (device.settings or {}).get(name)
    return default if value is None else Decimal(str(value))


def ceiling_ml(device: Device) -> Decimal:
    return device_setting(device, "ceiling_ml", DEFAULT_CEILING_ML)


def resolution_ml(device: Device) -> Decimal:
    return device_setting(device, "resolution_ml", DEFAULT_RESOLUTION_ML)


def latest_calibration(session: Session, device_id: int, at: datetime) -> Calibration | None:
    """Return the pump's latest calibration performed by ``at`` (passed or not)."""
    return session.scalar(
        select(Calibration)
        .where(Calibration.device_id == device_id, Calibration.performed_at <= at + CALIBRATION_SKEW)
        .order_by(Calibration.performed_at.desc(), Calibration.id.desc())
        .limit(1)
    )


def calibration_problem(calibration: Calibration | None, now: datetime) -> str | None:
    """Return why ``calibration`` does not allow volume dispensing at ``now``, or None."""
    if calibration is None:
        return "CALIBRATION_MISSING"
    if not calibration.passed:
        return "CALIBRATION_NOT_PASSED"
    if now >= calibration.valid_until:
        return "CALIBRATION_EXPIRED"
    return None


def require_calibration(session: Session, device: Device, now: datetime) -> Calibration:
    """Return the pump's valid calibration. Raises Conflict(CALIBRATION_MISSING |
    CALIBRATION_NOT_PASSED | CALIBRATION_EXPIRED): a pump without one is not used."""
    calibration = latest_calibration(session, device.id, now)
    problem = calibration_problem(calibration, now)
    if problem is not None:
        raise Conflict("pump calibration", code=problem, device_id=device.id)
    return calibration


# The event row in one Core INSERT (no unit-of-work flush for an append-only row), built once.
_INSERT_EVENT = insert(DoseEvent.__table__).returning(DoseEvent.__table__.c.id, DoseEvent.__table__.c.created_at)


def add_event(session: Session, dose: Dose, state: DoseState, at: datetime, user_id: int | None,
              detail: dict | None = None) -> DoseEvent:
    """Append the dose's event row now (the dose row must exist: it is flushed first if new)."""
    if dose.id is None:
        session.flush()
    row = session.connection().execute(_INSERT_EVENT, {
        "dose_id": dose.id, "state": state, "occurred_at": at, "user_id": user_id, "detail": detail}).one()
    event = DoseEvent(id=row[0], dose_id=dose.id, state=state, occurred_at=at, user_id=user_id, detail=detail,
                      created_at=row[1])
    # The row exists: the object joins the session as loaded, never to be inserted again.
    make_transient_to_detached(event)
    session.add(event)
    return event


def record_state(
    session: Session,
    dose: Dose,
    state: DoseState,
    *,
    at: datetime,
    actor_id: int | None,
    detail: dict | None = None,
    action: str | None = None,
) -> None:
    """Move ``dose`` to ``state``: the row, its DoseEvent and an audit event ``dose.<state>``.
    The row's UPDATE and the event's INSERT go with the transaction's next flush (at the latest
    its commit); the audit append is one statement of its own."""
    dose.state = state
    add_event(session, dose, state, at, actor_id, detail)
    audit.record(
        session, action or f"dose.{state.value}", actor_id=actor_id, clinic_id=dose.clinic_id,
        entity_type="Dose", entity_id=dose.id, at=at,
        data={"patient_id": dose.patient_id, "kind": dose.kind, "counter_id": dose.counter_id, **(detail or {})},
    )


@dataclass(frozen=True)
class Acknowledgements:
    """WARN codes the nurse acknowledged, with the written reason where one is needed."""

    reasons: dict[str, str | None]

    @classmethod
    def of(cls, value: dict[str, str | None] | None) -> Acknowledgements:
        return cls(dict(value or {}))


def require_acknowledged(decisions: tuple[rules.Decision, ...] | list[rules.Decision],
                         acknowledgements: Acknowledgements) -> list[str]:
    """Return the WARN codes acknowledged; raises AcknowledgementRequired for any left."""
    missing = rules.unacknowledged(decisions, acknowledgements.reasons)
    if missing:
        raise AcknowledgementRequired(missing)
    return sorted(d.code.value for d in rules.needing_acknowledgement(decisions))


def raise_task(session: Session, patient: Patient, *, code: str, due_on: date, subject: str | None,
               message_vi: str, message_en: str, table_version: str) -> ClinicalTask:
    """Open a physician task (shown on the physician's work list and the patient's follow-ups)."""
    task = ClinicalTask(clinic_id=patient.clinic_id, patient_id=patient.id, code=code, due_on=due_on,
                        subject=subject, message_vi=message_vi, message_en=message_en,
                        rule_table_version=table_version)
    session.add(task)
    return task


def task_for_decision(session: Session, patient: Patient, found: rules.Decision, due_on: date) -> ClinicalTask:
    return raise_task(session, patient, code=found.code.value, due_on=due_on, subject=found.subject,
                      message_vi=found.message_vi, message_en=found.message_en, table_version=found.table_version)
