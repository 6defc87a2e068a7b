"""The audit trail: append-only events, each carrying the hash of the one before.

Every event's hash is SHA-256 over the previous hash and a canonical rendering of the event's own
fields, so changing, removing or reordering any stored event breaks the chain at that point.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session, make_transient_to_detached

from dispensing.clock import utcnow
from dispensing.models import AuditEvent
from dispensing.models.types import UTCDateTime

GENESIS_HASH = "0" * 64


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot audit a {type(value).__name__}")


def canonical_json(data: dict) -> str:
    """Return ``data`` as JSON with sorted keys and no spaces; Decimals and dates as strings."""
    return json.dumps(data, default=_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(
    prev_hash: str,
    seq: int,
    occurred_at: datetime,
    clinic_id: int | None,
    actor_id: int | None,
    action: str,
    entity_type: str | None,
    entity_id: str | None,
    payload: str,
) -> str:
    """Return the hex SHA-256 that chains an event to ``prev_hash``."""
    body = canonical_json(
        {
            "prev": prev_hash,
            "seq": seq,
            "at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "clinic": clinic_id,
            "actor": actor_id,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "payload": payload,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _lock_chain(session: Session) -> None:
    # Appends must be serial or two events would claim the same predecessor. PostgreSQL: a
    # transaction-scoped advisory lock; SQLite: writers already hold the database write lock
    # (write use cases begin IMMEDIATE). The unique seq is the backstop on both.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(727001)"))


def _sha256_hex(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


_SQLITE_SHA256 = "mmt_sha256"
# The append in one statement: the new event's seq and predecessor come from the chain's head as
# the statement sees it (after the lock above), and its hash is SHA-256 over the canonical body
# (``event_hash``): ``prefix`` is the body up to ``"prev":"`` — the keys sort so that prev and seq
# come last — completed in SQL with the head's hash and the new seq.
_APPEND_SQL = """
INSERT INTO audit_event (seq, occurred_at, clinic_id, actor_id, action, entity_type, entity_id, payload,
                         prev_hash, hash)
SELECT head.seq, :occurred_at, :clinic_id, :actor_id, :action, :entity_type, :entity_id, :payload, head.prev,
       HASH_OPEN:prefix || head.prev || '","seq":' || CAST(head.seq AS TEXT) || '}'HASH_CLOSE
FROM (SELECT COALESCE(MAX(seq), 0) + 1 AS seq,
             COALESCE((SELECT last.hash FROM audit_event last ORDER BY last.seq DESC LIMIT 1), :genesis) AS prev
      FROM audit_event) head
RETURNING id, seq, prev_hash, hash
"""
# SHA-256 as lowercase hex of the UTF-8 body: PostgreSQL's own, SQLite's from Python (hashlib).
_HASH_SQL = {
    "postgresql": ("encode(sha256(convert_to(", ", 'UTF8')), 'hex')"),
    "sqlite": (f"{_SQLITE_SHA256}(", ")"),
}


def _append_statement(dialect: str):
    opening, closing = _HASH_SQL[dialect]
    sql = _APPEND_SQL.replace("HASH_OPEN", opening).replace("HASH_CLOSE", closing)
    return text(sql).bindparams(bindparam("occurred_at", type_=UTCDateTime()))


def _ensure_sqlite_sha256(session: Session) -> None:
    """Give this SQLite connection the SHA-256 function the append uses (once per connection)."""
    connection = session.connection()
    if connection.info.get(_SQLITE_SHA256):
        return
    connection.connection.driver_connection.create_function(_SQLITE_SHA256, 1, _sha256_hex, deterministic=True)
    connection.info[_SQLITE_SHA256] = True


def record(
    session: Session,
    action: str,
    *,
    actor_id: int | None,
    clinic_id: int | None = None,
    entity: object | None = None,
    entity_type: str | None = None,
    entity_id: object | None = None,
    data: dict | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append an audit event in the session's transaction and return it.

    ``entity`` may be a mapped object: its class name and id are recorded. ``data`` must not carry
    secrets; patient identifiers belong in the database record, which is access-controlled.

    One statement appends the event (two on PostgreSQL, with the chain's lock): the head of the
    chain is read and the hash computed by the database in the INSERT itself, over exactly the
    body ``event_hash`` renders, so ``verify_chain`` recomputes it in Python.
    """
    if entity is not None:
        session.flush()
        entity_type = entity_type or type(entity).__name__
        entity_id = entity_id if entity_id is not None else getattr(entity, "id", None)
    dialect = session.get_bind().dialect.name
    _lock_chain(session)
    if dialect == "sqlite":
        _ensure_sqlite_sha256(session)
    # Microsecond precision survives both databases, so the hash can be recomputed from the row.
    occurred_at = (at or utcnow()).astimezone(UTC)
    payload = canonical_json(data or {})
    entity_id_text = None if entity_id is None else str(entity_id)
    prefix = _body_prefix(occurred_at, clinic_id, actor_id, action, entity_type, entity_id_text, payload)
    statement = _STATEMENTS.get(dialect)
    if statement is None:
        statement = _STATEMENTS[dialect] = _append_statement(dialect)
    row = session.execute(statement, {
        "occurred_at": occurred_at, "clinic_id": clinic_id, "actor_id": actor_id, "action": action,
        "entity_type": entity_type, "entity_id": entity_id_text, "payload": payload, "prefix": prefix,
        "genesis": GENESIS_HASH,
    }).one()
    event = AuditEvent(
        id=row.id, seq=row.seq, occurred_at=occurred_at, clinic_id=clinic_id, actor_id=actor_id, action=action,
        entity_type=entity_type, entity_id=entity_id_text, payload=payload, prev_hash=row.prev_hash, hash=row.hash,
    )
    # The row exists: the object joins the session as loaded, never to be inserted again.
    make_transient_to_detached(event)
    session.add(event)
    return event


_STATEMENTS: dict = {}


def _body_prefix(occurred_at: datetime, clinic_id: int | None, actor_id: int | None, action: str,
                 entity_type: str | None, entity_id: str | None, payload: str) -> str:
    """The canonical body of ``event_hash`` up to the previous hash's value: ``{..., "prev":"``."""
    body = canonical_json({
        "at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"), "clinic": clinic_id,
        "actor": actor_id, "action": action, "entity_type": entity_type, "entity_id": entity_id,
        "payload": payload,
    })
    return body[:-1] + ',"prev":"'


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at_seq: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.broken_at_seq is None


def verify_chain(session: Session, batch_size: int = 5000) -> ChainReport:
    """Walk the chain in order and return the first broken link, if any."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last_seq).order_by(AuditEvent.seq).limit(batch_size)
        ).all()
        if not rows:
            return ChainReport(checked, None, None)
        for event in rows:
            if event.seq != expected_seq:
                return ChainReport(checked, expected_seq, f"event {expected_seq} is missing")
            if event.prev_hash != prev_hash:
                return ChainReport(checked, event.seq, "previous-hash link does not match")
            recomputed = event_hash(
                event.prev_hash,
                event.seq,
                event.occurred_at,
                event.clinic_id,
                event.actor_id,
                event.action,
                event.entity_type,
                event.entity_id,
                event.payload,
            )
            if recomputed != event.hash:
                return ChainReport(checked, event.seq, "event content does not match its hash")
            prev_hash = event.hash
            expected_seq += 1
            checked += 1
            last_seq = event.seq
        session.expunge_all()
