"""One database session per request, closed at the end; views never commit (services do)."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from dispensing.db import Database


def get_database() -> Database:
    return current_app.extensions["mmt.database"]


def db() -> Session:
    """Return this request's Session, creating it on first use."""
    if "db_session" not in g:
        g.db_session = get_database().session()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()
