"""One database session per request, closed at the end; views never commit (services do)."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy import event
from sqlalchemy.orm import Session

from dispensing.db import Database


def get_database() -> Database:
    return current_app.extensions["mmt.database"]


def _mark_written(session: Session, _flush_context) -> None:
    session.info["mmt_flushed"] = True


def _clear_written(session: Session, *_transaction) -> None:
    session.info.pop("mmt_flushed", None)


def db() -> Session:
    """Return this request's Session, creating it on first use."""
    if "db_session" not in g:
        session = get_database().session()
        event.listen(session, "after_flush", _mark_written)
        event.listen(session, "after_commit", _clear_written)
        event.listen(session, "after_soft_rollback", _clear_written)
        g.db_session = session
    return g.db_session


def writer() -> Session:
    """Return this request's Session ready for a write use case.

    Loading the signed-in user (and the clinic, the rule set…) opens a read transaction; on SQLite
    a service's ``begin_write`` must start its own transaction (``BEGIN IMMEDIATE``), so the read
    transaction is ended here first. Objects already loaded stay usable (no expiry on commit).
    Call it last, right before the service: ``orders.sign_order(writer(), actor, rule_set, …)``
    with ``actor`` and ``rule_set`` computed beforehand. Raises RuntimeError if this request has
    already changed something (only services write, and each commits its own work).
    """
    session = db()
    if session.new or session.dirty or session.deleted or session.info.get("mmt_flushed"):
        raise RuntimeError("the request has unsaved changes; only services write")
    if session.in_transaction():
        session.commit()  # ends a read-only transaction: nothing to write
    return session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()
