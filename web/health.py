"""GET /healthz: database reachable, migration head, version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flask import Blueprint, jsonify
from sqlalchemy.exc import SQLAlchemyError

from dispensing import schema
from dispensing.db import ping
from web.database import db

bp = Blueprint("health", __name__)


def app_version() -> str:
    try:
        return version("mmt-dispensing")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


@bp.get("/healthz")
def healthz():
    body = {"version": app_version(), "migration_head": schema.head_revision()}
    try:
        session = db()
        body["database"] = "ok" if ping(session) else "error"
        body["migration_current"] = schema.current_revision(session.connection())
    except SQLAlchemyError as exc:
        body.update(database="unreachable", error=type(exc).__name__)
        return jsonify(body), 503
    up_to_date = body["migration_current"] == body["migration_head"]
    body["status"] = "ok" if up_to_date else "migration_pending"
    return jsonify(body), 200 if up_to_date else 503
