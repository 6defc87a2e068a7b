"""Counters (quầy cấp phát), their devices, and pump calibrations (hiệu chuẩn bơm).

Administrators add counters and devices and switch them off and on; a calibration is recorded
against a pump with its replicates and verdict. The verdict itself (factor, errors, CV, validity)
is computed by the devices layer (``devices.calibration.evaluate_calibration``) from the
replicates, on the counter PC for a gravimetric run or in the web layer for a volumetric run
entered by hand; this module stores it, never recomputes it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.models import (
    Calibration,
    CalibrationMethod,
    Counter,
    Device,
    DeviceKind,
    Role,
    User,
)
from dispensing.permissions import require_role, require_same_clinic

CALIBRATORS = (Role.ADMIN, Role.PHARMACIST, Role.NURSE)
_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,31}$")
# The drivers of each kind of device, named exactly as the device registry names them
# (``devices.registry.DRIVERS``: what ``run.py agent`` and the in-process device service open).
# dispensing never imports devices; a test keeps the two lists in step.
DRIVERS_BY_KIND: dict[DeviceKind, tuple[str, ...]] = {
    DeviceKind.PUMP: ("ne1000", "reglo-icc"),
    DeviceKind.BALANCE: ("mt-sics",),
    DeviceKind.SCANNER: ("serial-scanner", "keyboard-wedge"),
    DeviceKind.PRINTER: ("file-printer",),
}
KNOWN_DRIVERS = tuple(driver for drivers in DRIVERS_BY_KIND.values() for driver in drivers)


class CalibrationState(enum.StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    FAILED = "failed"
    NONE = "none"


@dataclass(frozen=True)
class DeviceStatus:
    device: Device
    calibration: Calibration | None
    state: CalibrationState | None  # None for devices that are not calibrated (not pumps)


@dataclass(frozen=True)
class CounterStatus:
    counter: Counter
    devices: tuple[DeviceStatus, ...]


@dataclass(frozen=True)
class CalibrationRecord:
    """A calibration verdict as the devices layer computed it."""

    method: CalibrationMethod
    performed_at: datetime
    factor: Decimal
    mean_error_pct: Decimal
    cv_pct: Decimal
    passed: bool
    valid_until: datetime
    liquid_used_ml: Decimal
    replicates: tuple[dict, ...]
    reason: str | None = None
    note: str | None = None
    liquid: str = "water"  # what was dispensed; liquid from a medicine lot is booked by stock


def calibration_state(calibration: Calibration | None, now: datetime) -> CalibrationState:
    if calibration is None:
        return CalibrationState.NONE
    if not calibration.passed:
        return CalibrationState.FAILED
    return CalibrationState.VALID if now < calibration.valid_until else CalibrationState.EXPIRED


def latest_calibrations(session: Session, device_ids: list[int]) -> dict[int, Calibration]:
    """Return the latest calibration of each device (by time performed), in one query."""
    if not device_ids:
        return {}
    newest = (
        select(Calibration.device_id, func.max(Calibration.performed_at).label("at"))
        .where(Calibration.device_id.in_(device_ids))
        .group_by(Calibration.device_id)
        .subquery()
    )
    rows = session.scalars(
        select(Calibration)
        .join(newest, (Calibration.device_id == newest.c.device_id) & (Calibration.performed_at == newest.c.at))
        .order_by(Calibration.id)
    ).all()
    return {row.device_id: row for row in rows}


def counters_overview(session: Session, actor: User, now: datetime) -> list[CounterStatus]:
    """Return the clinic's counters with their devices and each pump's latest calibration state;
    devices with no counter come last under a counter of None."""
    require_role(actor, Role.ADMIN, Role.PHARMACIST, Role.NURSE)
    counters = session.scalars(
        select(Counter).where(Counter.clinic_id == actor.clinic_id).order_by(Counter.code)
    ).all()
    devices = session.scalars(select(Device).where(Device.clinic_id == actor.clinic_id).order_by(Device.code)).all()
    calibrations = latest_calibrations(session, [d.id for d in devices if d.kind is DeviceKind.PUMP])

    def status(device: Device) -> DeviceStatus:
        if device.kind is not DeviceKind.PUMP:
            return DeviceStatus(device, None, None)
        found = calibrations.get(device.id)
        return DeviceStatus(device, found, calibration_state(found, now))

    result = [CounterStatus(c, tuple(status(d) for d in devices if d.counter_id == c.id)) for c in counters]
    loose = tuple(status(d) for d in devices if d.counter_id is None)
    if loose:
        result.append(CounterStatus(None, loose))  # type: ignore[arg-type]
    return result


def _code(value: str, code: str) -> str:
    value = (value or "").strip()
    if not _CODE_RE.match(value):
        raise ValidationFailed("code", code=code)
    return value


def add_counter(session: Session, actor: User, code: str, name: str) -> Counter:
    """Add a counter to the administrator's clinic; committed. Raises PermissionDenied,
    ValidationFailed (COUNTER_CODE_INVALID, COUNTER_NAME_REQUIRED), Conflict (COUNTER_CODE_TAKEN)."""
    require_role(actor, Role.ADMIN)
    code = _code(code, "COUNTER_CODE_INVALID")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationFailed("name", code="COUNTER_NAME_REQUIRED")
    begin_write(session)
    if session.scalar(select(Counter.id).where(Counter.clinic_id == actor.clinic_id, Counter.code == code)):
        raise Conflict("code taken", code="COUNTER_CODE_TAKEN")
    counter = Counter(clinic_id=actor.clinic_id, code=code, name=name)
    session.add(counter)
    audit.record(session, "counter.added", actor_id=actor.id, clinic_id=actor.clinic_id, entity=counter,
                 data={"code": code})
    session.commit()
    return counter


def set_counter_active(session: Session, actor: User, counter_id: int, active: bool) -> Counter:
    """Take a counter out of service or back into it; committed."""
    require_role(actor, Role.ADMIN)
    begin_write(session)
    counter = session.get(Counter, counter_id)
    if counter is None:
        raise NotFound("counter", code="COUNTER_NOT_FOUND")
    require_same_clinic(actor, counter.clinic_id)
    if counter.active != active:
        counter.active = active
        audit.record(session, "counter.activated" if active else "counter.deactivated", actor_id=actor.id,
                     clinic_id=counter.clinic_id, entity=counter)
    session.commit()
    return counter


def add_device(session: Session, actor: User, *, counter_id: int | None, code: str, kind: DeviceKind, driver: str,
               port_url: str, serial_number: str | None = None) -> Device:
    """Register a device (pump, balance, scanner, printer), at a counter or not; committed.

    Raises PermissionDenied, NotFound (COUNTER_NOT_FOUND), ValidationFailed (DEVICE_CODE_INVALID,
    DEVICE_FIELDS_REQUIRED, DEVICE_DRIVER_UNKNOWN: not a driver of that kind the device service
    can open), Conflict (DEVICE_CODE_TAKEN).
    """
    require_role(actor, Role.ADMIN)
    code = _code(code, "DEVICE_CODE_INVALID")
    driver, port_url = (driver or "").strip(), (port_url or "").strip()
    if not driver or not port_url or len(driver) > 64 or len(port_url) > 255:
        raise ValidationFailed("driver and port", code="DEVICE_FIELDS_REQUIRED")
    kind = DeviceKind(kind)
    if driver not in DRIVERS_BY_KIND[kind]:
        raise ValidationFailed("unknown driver", code="DEVICE_DRIVER_UNKNOWN", driver=driver,
                               known=list(DRIVERS_BY_KIND[kind]))
    begin_write(session)
    if counter_id is not None:
        counter = session.get(Counter, counter_id)
        if counter is None or counter.clinic_id != actor.clinic_id:
            raise NotFound("counter", code="COUNTER_NOT_FOUND")
    if session.scalar(select(Device.id).where(Device.clinic_id == actor.clinic_id, Device.code == code)):
        raise Conflict("code taken", code="DEVICE_CODE_TAKEN")
    device = Device(clinic_id=actor.clinic_id, counter_id=counter_id, code=code, kind=kind, driver=driver,
                    port_url=port_url, serial_number=(serial_number or "").strip() or None, settings={})
    session.add(device)
    audit.record(session, "device.added", actor_id=actor.id, clinic_id=actor.clinic_id, entity=device,
                 data={"code": code, "kind": kind, "driver": driver, "counter_id": counter_id})
    session.commit()
    return device


def get_device(session: Session, actor: User, device_id: int) -> Device:
    """Return a device of the actor's clinic. Raises NotFound, PermissionDenied."""
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("device", code="DEVICE_NOT_FOUND")
    require_same_clinic(actor, device.clinic_id)
    return device


def set_device_active(session: Session, actor: User, device_id: int, active: bool) -> Device:
    """Take a device out of service or back into it; committed."""
    require_role(actor, Role.ADMIN)
    begin_write(session)
    device = get_device(session, actor, device_id)
    if device.active != active:
        device.active = active
        audit.record(session, "device.activated" if active else "device.deactivated", actor_id=actor.id,
                     clinic_id=device.clinic_id, entity=device)
    session.commit()
    return device


def record_calibration(session: Session, actor: User, device_id: int, record: CalibrationRecord) -> Calibration:
    """Store a pump calibration (passed or failed) with its replicates; committed.

    Raises PermissionDenied, NotFound (DEVICE_NOT_FOUND), ValidationFailed (DEVICE_NOT_A_PUMP,
    DEVICE_INACTIVE, CALIBRATION_MEASUREMENTS_INVALID when no usable factor came out of the
    replicates).
    """
    require_role(actor, *CALIBRATORS)
    if record.factor <= 0 or not record.replicates:
        raise ValidationFailed("no factor", code="CALIBRATION_MEASUREMENTS_INVALID")
    if record.performed_at.tzinfo is None or record.valid_until.tzinfo is None:
        raise ValueError("naive datetime refused: pass a timezone-aware value")
    begin_write(session)
    device = get_device(session, actor, device_id)
    if device.kind is not DeviceKind.PUMP:
        raise ValidationFailed("not a pump", code="DEVICE_NOT_A_PUMP")
    if not device.active:
        raise ValidationFailed("inactive", code="DEVICE_INACTIVE")
    calibration = Calibration(
        device_id=device.id, method=record.method, performed_at=record.performed_at, performed_by_id=actor.id,
        factor=record.factor, mean_error_pct=record.mean_error_pct, cv_pct=record.cv_pct, passed=record.passed,
        valid_until=record.valid_until, liquid_used_ml=record.liquid_used_ml, replicates=list(record.replicates),
        note=(record.note or "").strip() or None,
    )
    session.add(calibration)
    audit.record(session, "calibration.recorded", actor_id=actor.id, clinic_id=device.clinic_id, entity=calibration,
                 data={"device_id": device.id, "method": record.method, "passed": record.passed,
                       "factor": record.factor, "reason": record.reason, "valid_until": record.valid_until,
                       "liquid": record.liquid, "liquid_used_ml": record.liquid_used_ml})
    session.commit()
    return calibration
