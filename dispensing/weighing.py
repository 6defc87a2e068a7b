"""Reading a balance without the web worker touching a serial port.

The pharmacist's "read balance" (reconciliation worksheet) calls ``request_weighing``: a REQUESTED
``WeighingRequest`` for the balance, owned by the balance's counter. The counter's device service
(``devices.weighing.BalanceService``: a thread of ``run.py`` in single-PC mode, or ``run.py agent``
on the counter PC over HTTP with the counter's token) calls ``next_weighing`` (the request becomes
READING), reads ONE stable weight in grams through the MT-SICS driver and reports it with
``record_weighing_result`` (COMPLETED with grams, the stable flag and the balance's identity, or
FAILED with the device's reason). The page polls ``get_weighing``.

A request lives ``WEIGHING_TTL`` at most: past ``expires_at`` an open request becomes EXPIRED
(when the device service asks for work, when the page polls, or when a late result arrives) and is
never handed out or completed again; a new reading is a new request. Rows are never deleted and
are frozen by the database once final.

Balances not at a counter are refused (BALANCE_NOT_AT_COUNTER): the device service that owns a
counter's ports is the only thing that opens a balance, so a balance must belong to a counter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispensing.clock import utcnow
from dispensing.counter import signals
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from dispensing.models import (
    OPEN_WEIGHING_STATES,
    Counter,
    Device,
    DeviceKind,
    Location,
    Product,
    Role,
    User,
    WeighingRequest,
    WeighingState,
)
from dispensing.permissions import require_role

# How long a request may wait for its result (taken, read and reported) before it expires.
WEIGHING_TTL = timedelta(seconds=20)
# The device service stops waiting for a stable reading this long before the request expires, so
# its report arrives in time.
REPORT_MARGIN = timedelta(seconds=3)
BALANCE_DRIVERS = ("mt-sics",)
# Driver settings a device service may use; anything else in Device.settings stays on the server.
DRIVER_SETTING_KEYS = ("baudrate", "reply_timeout_s", "stable_timeout_s", "retry_interval_s", "query_retries")
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")


@dataclass(frozen=True)
class WeighingJob:
    """What a device service needs to read the balance of one request."""

    request_id: int
    device_id: int
    device_code: str
    counter_code: str
    driver: str
    url: str
    settings: dict
    serial_number: str | None
    timeout_s: float  # how long the service may wait for a stable reading

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "device_id": self.device_id, "device_code": self.device_code,
                "counter_code": self.counter_code, "driver": self.driver, "url": self.url,
                "settings": self.settings, "serial_number": self.serial_number, "timeout_s": self.timeout_s}


@dataclass(frozen=True)
class WeighingOutcome:
    """A device service's report: ``completed`` with a weight, or ``failed`` with a reason."""

    outcome: str
    grams: Decimal | None = None
    stable: bool | None = None
    unit: str | None = None
    model: str | None = None
    serial_number: str | None = None
    reason: str | None = None
    detail: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> WeighingOutcome:
        """Parse a report. Raises ValidationFailed(WEIGHING_RESULT_INVALID)."""
        def text(key: str, limit: int) -> str | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise ValidationFailed(key, code="WEIGHING_RESULT_INVALID")
            return value.strip()[:limit] or None

        outcome = data.get("outcome")
        if outcome == "completed":
            try:
                grams = Decimal(str(data.get("grams")))
            except (InvalidOperation, ValueError) as exc:
                raise ValidationFailed("grams", code="WEIGHING_RESULT_INVALID") from exc
            # A finite number to the microgram at most (the column's precision), within reason.
            if not grams.is_finite() or grams.as_tuple().exponent < -6 or abs(grams) >= Decimal("1e9"):
                raise ValidationFailed("grams", code="WEIGHING_RESULT_INVALID")
            if not isinstance(data.get("stable"), bool):
                raise ValidationFailed("stable", code="WEIGHING_RESULT_INVALID")
            return cls("completed", grams=grams, stable=data["stable"], unit=text("unit", 8),
                       model=text("model", 128), serial_number=text("serial_number", 64))
        if outcome == "failed":
            reason = data.get("reason")
            if not isinstance(reason, str) or not _REASON.match(reason):
                raise ValidationFailed("reason", code="WEIGHING_RESULT_INVALID")
            return cls("failed", reason=reason, detail=text("detail", 200), model=text("model", 128),
                       serial_number=text("serial_number", 64))
        raise ValidationFailed("outcome", code="WEIGHING_RESULT_INVALID")


# ---------------------------------------------------------------------------------------------
# The pharmacist's side


def request_weighing(session: Session, actor: User, device_id: int, *, location_id: int | None = None,
                     product_id: int | None = None, now: datetime | None = None,
                     ttl: timedelta = WEIGHING_TTL) -> WeighingRequest:
    """Ask the balance's counter to read ``device_id`` once. Committed; the counter's in-process
    device service (if any) is woken. Raises PermissionDenied, NotFound(BALANCE_NOT_FOUND),
    ValidationFailed(BALANCE_DRIVER_UNSUPPORTED, BALANCE_NOT_AT_COUNTER)."""
    require_role(actor, Role.PHARMACIST)
    now = now or utcnow()
    begin_write(session)
    device = session.get(Device, device_id)
    if (device is None or device.clinic_id != actor.clinic_id or device.kind is not DeviceKind.BALANCE
            or not device.active):
        raise NotFound("balance", code="BALANCE_NOT_FOUND")
    if device.driver not in BALANCE_DRIVERS:
        raise ValidationFailed("balance driver", code="BALANCE_DRIVER_UNSUPPORTED")
    counter = session.get(Counter, device.counter_id) if device.counter_id is not None else None
    if counter is None or not counter.active:
        raise ValidationFailed("balance not at an active counter", code="BALANCE_NOT_AT_COUNTER")
    for model, key in ((Location, location_id), (Product, product_id)):
        row = session.get(model, key) if key is not None else None
        if key is not None and (row is None or getattr(row, "clinic_id", actor.clinic_id) != actor.clinic_id):
            raise NotFound(model.__tablename__, code="WEIGHING_CONTEXT_NOT_FOUND")
    request = WeighingRequest(clinic_id=actor.clinic_id, device_id=device.id, counter_id=counter.id,
                              location_id=location_id, product_id=product_id, requested_by_id=actor.id,
                              requested_at=now, expires_at=now + ttl, state=WeighingState.REQUESTED)
    session.add(request)
    session.commit()
    signals.weighing_requested(counter.id)
    return request


def get_weighing(session: Session, actor: User, request_id: int, *, now: datetime | None = None) -> WeighingRequest:
    """The request as it stands; an open request past its expiry becomes EXPIRED first (committed).
    Raises PermissionDenied, NotFound(WEIGHING_NOT_FOUND)."""
    require_role(actor, Role.PHARMACIST)
    now = now or utcnow()
    request = session.get(WeighingRequest, request_id)
    if request is None or request.clinic_id != actor.clinic_id:
        raise NotFound("weighing request", code="WEIGHING_NOT_FOUND")
    if request.open and request.expires_at <= now:
        session.commit()
        _expire_one(session, request_id, now)
        request = session.get(WeighingRequest, request_id, populate_existing=True)
    return request


# ---------------------------------------------------------------------------------------------
# The device service's side (authenticated as a counter: in-process, or an agent's token)


def next_weighing(session: Session, counter_id: int, *, now: datetime | None = None) -> WeighingJob | None:
    """Expire the counter's overdue requests, then take its oldest REQUESTED one (it becomes
    READING) and return what the device service needs, or None. Committed."""
    now = now or utcnow()
    _expire_overdue(session, counter_id, now)
    while True:
        candidate = session.scalar(
            select(WeighingRequest.id)
            .where(WeighingRequest.counter_id == counter_id, WeighingRequest.state == WeighingState.REQUESTED)
            .order_by(WeighingRequest.id).limit(1)
        )
        if candidate is None:
            session.commit()
            return None
        session.commit()
        begin_write(session)
        # Taken by exactly one caller: the update matches only while the row is still REQUESTED.
        taken = session.execute(
            update(WeighingRequest)
            .where(WeighingRequest.id == candidate, WeighingRequest.state == WeighingState.REQUESTED,
                   WeighingRequest.expires_at > now)
            .values(state=WeighingState.READING, taken_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not taken:
            session.commit()
            _expire_one(session, candidate, now)
            continue
        request = session.get(WeighingRequest, candidate, populate_existing=True)
        device = request.device
        counter = session.get(Counter, counter_id)
        settings = {k: v for k, v in (device.settings or {}).items() if k in DRIVER_SETTING_KEYS}
        remaining = (request.expires_at - now - REPORT_MARGIN).total_seconds()
        job = WeighingJob(request.id, device.id, device.code, counter.code, device.driver, device.port_url,
                          settings, device.serial_number, max(0.5, remaining))
        session.commit()
        return job


def record_weighing_result(session: Session, counter_id: int, request_id: int, outcome: WeighingOutcome,
                           *, now: datetime | None = None) -> WeighingRequest:
    """Record the device service's report. Only the request's counter may report; a weight that
    is not stable or not in grams is recorded as FAILED; a report after the expiry leaves the
    request EXPIRED. Repeating the report that made the request final changes nothing. Committed.
    Raises NotFound(WEIGHING_NOT_FOUND), PermissionDenied(WEIGHING_OTHER_COUNTER),
    Conflict(WEIGHING_NOT_TAKEN, WEIGHING_ALREADY_FINAL)."""
    now = now or utcnow()
    begin_write(session)
    request = session.get(WeighingRequest, request_id, with_for_update=True, populate_existing=True)
    if request is None:
        raise NotFound("weighing request", code="WEIGHING_NOT_FOUND")
    if request.counter_id != counter_id:
        raise PermissionDenied("weighing of another counter", code="WEIGHING_OTHER_COUNTER")
    state, values = _final(request, outcome, now)
    if not request.open:
        if request.state is state and all(getattr(request, k) == v for k, v in values.items()):
            session.commit()
            return request  # the same report again (its answer was lost)
        raise Conflict("weighing already final", code="WEIGHING_ALREADY_FINAL", state=request.state.value)
    if request.state is WeighingState.REQUESTED:
        raise Conflict("weighing not taken", code="WEIGHING_NOT_TAKEN")
    if request.expires_at <= now:
        state, values = WeighingState.EXPIRED, {"failure_reason": "WEIGHING_EXPIRED",
                                                "failure_detail": "the result arrived after the request expired"}
    request.state = state
    request.finished_at = now
    for key, value in values.items():
        setattr(request, key, value)
    session.commit()
    return request


def _final(request: WeighingRequest, outcome: WeighingOutcome, now: datetime) -> tuple[WeighingState, dict]:
    identity = {"device_model": outcome.model, "device_serial": outcome.serial_number}
    if outcome.outcome == "completed":
        if outcome.unit != "g":
            return WeighingState.FAILED, {**identity, "failure_reason": "WRONG_UNIT",
                                          "failure_detail": f"unit {outcome.unit!r}"[:200]}
        if not outcome.stable:
            return WeighingState.FAILED, {**identity, "failure_reason": "UNSTABLE_READING",
                                          "failure_detail": "the reading was not stable"}
        return WeighingState.COMPLETED, {**identity, "grams": outcome.grams, "stable": True, "unit": "g"}
    return WeighingState.FAILED, {**identity, "failure_reason": outcome.reason, "failure_detail": outcome.detail}


def _expire_overdue(session: Session, counter_id: int, now: datetime) -> None:
    overdue = list(session.scalars(
        select(WeighingRequest.id).where(WeighingRequest.counter_id == counter_id,
                                         WeighingRequest.state.in_(OPEN_WEIGHING_STATES),
                                         WeighingRequest.expires_at <= now)
    ))
    session.commit()
    for request_id in overdue:
        _expire_one(session, request_id, now)


def _expire_one(session: Session, request_id: int, now: datetime) -> None:
    begin_write(session)
    request = session.get(WeighingRequest, request_id, with_for_update=True, populate_existing=True)
    if request is not None and request.open and request.expires_at <= now:
        request.state = WeighingState.EXPIRED
        request.finished_at = now
        request.failure_reason = "WEIGHING_EXPIRED"
        request.failure_detail = ("no device service took the request in time" if request.taken_at is None
                                  else "the device service did not report in time")
    session.commit()


def balance_counters_for_this_process(session: Session) -> list[Counter]:
    """Active counters with an active balance and no agent token: single-PC mode reads these
    balances in-process (a counter with a token is read by its agent)."""
    return list(session.scalars(
        select(Counter).join(Device, Device.counter_id == Counter.id)
        .where(Counter.active.is_(True), Counter.agent_token_hash.is_(None), Device.kind == DeviceKind.BALANCE,
               Device.active.is_(True))
        .distinct().order_by(Counter.id)
    ))
