"""Counter agents: the token a counter PC's agent presents (``Authorization: Bearer …``), and what
it is told about its pump.

A token is ``mmt-agent.<counter id>.<secret>``; only an argon2 hash of the secret is stored
(``Counter.agent_token_hash``). Issuing a new token replaces the old one. Verified tokens are
remembered for a short while in the process (argon2 is deliberately slow and an agent polls).
A counter with a token is driven by its agent: single-PC mode starts no in-process device
service for it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.clock import utcnow
from dispensing.counter.common import APPLICATION_SETTINGS, ceiling_ml, get_counter
from dispensing.db import begin_write
from dispensing.errors import NotFound, PermissionDenied, ValidationFailed
from dispensing.models import Counter, Device, DeviceKind, Role, User
from dispensing.permissions import require_role

PREFIX = "mmt-agent"
_hasher = PasswordHasher()
_CACHE_SECONDS = 300
_cache: dict[tuple[int, str, str], float] = {}
_cache_lock = threading.Lock()


class AgentRefused(PermissionDenied):
    code = "AGENT_TOKEN_INVALID"
    status = 401


def issue_agent_token(session: Session, actor: User | None, counter_id: int, *, clinic_id: int | None = None,
                      now: datetime | None = None) -> str:
    """Create a new agent token for a counter and return it (shown once; its hash is stored).
    ``actor`` must be an admin; None only from the command line. Committed.
    Raises PermissionDenied, NotFound(COUNTER_NOT_FOUND)."""
    if actor is not None:
        require_role(actor, Role.ADMIN)
        clinic_id = actor.clinic_id
    now = now or utcnow()
    begin_write(session)
    counter = session.get(Counter, counter_id)
    if counter is None or (clinic_id is not None and counter.clinic_id != clinic_id):
        raise NotFound("counter", code="COUNTER_NOT_FOUND")
    secret = secrets.token_urlsafe(32)
    counter.agent_token_hash = _hasher.hash(secret)
    audit.record(session, "counter.agent_token_issued", actor_id=actor.id if actor else None,
                 clinic_id=counter.clinic_id, entity=counter, at=now, data={"counter": counter.code})
    session.commit()
    return f"{PREFIX}.{counter.id}.{secret}"


def revoke_agent_token(session: Session, actor: User, counter_id: int) -> Counter:
    """Remove a counter's agent token (its agent is refused from now on). Committed."""
    require_role(actor, Role.ADMIN)
    begin_write(session)
    counter = get_counter(session, actor.clinic_id, counter_id)
    counter.agent_token_hash = None
    audit.record(session, "counter.agent_token_revoked", actor_id=actor.id, clinic_id=counter.clinic_id,
                 entity=counter)
    session.commit()
    return counter


def agent_counter(session: Session, authorization: str | None) -> Counter:
    """Return the counter whose agent presents ``authorization`` ("Bearer <token>").
    Raises AgentRefused (401) for anything else."""
    scheme, _, token = (authorization or "").partition(" ")
    parts = token.strip().split(".", 2)
    if scheme.lower() != "bearer" or len(parts) != 3 or parts[0] != PREFIX or not parts[1].isdigit():
        raise AgentRefused("agent token", code="AGENT_TOKEN_INVALID")
    counter = session.get(Counter, int(parts[1]))
    if counter is None or not counter.active or not counter.agent_token_hash:
        raise AgentRefused("agent token", code="AGENT_TOKEN_INVALID")
    key = (counter.id, counter.agent_token_hash, hashlib.sha256(parts[2].encode()).hexdigest())
    with _cache_lock:
        seen = _cache.get(key)
    if seen is not None and time.monotonic() - seen < _CACHE_SECONDS:
        return counter
    try:
        _hasher.verify(counter.agent_token_hash, parts[2])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise AgentRefused("agent token", code="AGENT_TOKEN_INVALID") from None
    with _cache_lock:
        _cache[key] = time.monotonic()
    return counter


@dataclass(frozen=True)
class PumpSetup:
    """What a device service needs to open its counter's pump."""

    counter_id: int
    counter_code: str
    device_id: int
    device_code: str
    driver: str
    url: str
    settings: dict  # the driver's settings (application keys removed)
    ceiling_ml: Decimal

    def to_dict(self) -> dict:
        return {"counter_id": self.counter_id, "counter_code": self.counter_code, "device_id": self.device_id,
                "device_code": self.device_code, "driver": self.driver, "url": self.url,
                "settings": self.settings, "ceiling_ml": str(self.ceiling_ml)}


def pump_setup(session: Session, counter: Counter) -> PumpSetup:
    """Return the counter's pump configuration. Raises ValidationFailed(COUNTER_HAS_NO_PUMP)."""
    device = session.scalar(
        select(Device).where(Device.counter_id == counter.id, Device.kind == DeviceKind.PUMP,
                             Device.active.is_(True)).order_by(Device.id).limit(1)
    )
    if device is None:
        raise ValidationFailed("no pump", code="COUNTER_HAS_NO_PUMP")
    settings = {k: v for k, v in (device.settings or {}).items() if k not in APPLICATION_SETTINGS}
    return PumpSetup(counter.id, counter.code, device.id, device.code, device.driver, device.port_url, settings,
                     ceiling_ml(device))


def counters_for_this_process(session: Session) -> list[Counter]:
    """Active counters with an active pump and no agent token: single-PC mode serves these."""
    return list(session.scalars(
        select(Counter).join(Device, Device.counter_id == Counter.id)
        .where(Counter.active.is_(True), Counter.agent_token_hash.is_(None), Device.kind == DeviceKind.PUMP,
               Device.active.is_(True))
        .distinct().order_by(Counter.id)
    ))
