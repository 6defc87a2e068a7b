"""One place that turns failures into responses: JSON under /api, a page elsewhere.

Bad input is a 4xx with a reason code and a translated message; a 500 means a bug.
"""

from __future__ import annotations

import structlog
from flask import Flask, jsonify, render_template, request
from flask_babel import gettext, lazy_gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from dispensing.errors import DomainError

log = structlog.get_logger("web.errors")

# Messages for the stable codes services raise. Keys are codes, values are translatable text.
MESSAGES = {
    "DOMAIN_ERROR": lazy_gettext("The request was refused."),
    "NOT_FOUND": lazy_gettext("Not found."),
    "VALIDATION_FAILED": lazy_gettext("Some values are not valid."),
    "CONFLICT": lazy_gettext("This conflicts with a record that already exists."),
    "PERMISSION_DENIED": lazy_gettext("You do not have permission to do this."),
    "LOGIN_REQUIRED": lazy_gettext("Please sign in first."),
    "SESSION_EXPIRED": lazy_gettext("The session expired. Please sign in again."),
    "LOGIN_FAILED": lazy_gettext("Wrong username or password."),
    "ACCOUNT_LOCKED": lazy_gettext("Too many failed attempts: the account is locked for a while."),
    "REAUTH_FAILED": lazy_gettext("The password did not match; nothing was signed."),
    "PASSWORD_TOO_SHORT": lazy_gettext("The password must have at least 8 characters."),
    "USERNAME_TAKEN": lazy_gettext("This username is already taken."),
    "USER_FIELDS_REQUIRED": lazy_gettext("Username and full name are required."),
    "USER_ROLE_REQUIRED": lazy_gettext("Choose at least one role."),
    "CSRF_FAILED": lazy_gettext("The form expired or was not sent from this site. Please try again."),
    "BAD_REQUEST": lazy_gettext("The request could not be understood."),
    "DUPLICATE_RECORD": lazy_gettext("This record already exists."),
    "METHOD_NOT_ALLOWED": lazy_gettext("This action is not allowed here."),
    "SERVER_ERROR": lazy_gettext("Something went wrong. The error was recorded."),
}


def register_messages(messages: dict) -> None:
    """Add translatable messages for more reason codes (each feature module registers its own)."""
    for code, message in messages.items():
        if code in MESSAGES and str(MESSAGES[code]) != str(message):
            raise ValueError(f"reason code {code} already has another message")
        MESSAGES[code] = message


def message_for(code: str, fallback: str = "DOMAIN_ERROR") -> str:
    return str(MESSAGES.get(code) or MESSAGES[fallback])


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(status: int, code: str, message: str | None = None, **extra):
    message = message or message_for(code)
    if wants_json():
        body = {"code": code, "message": message}
        body.update({k: v for k, v in extra.items() if v is not None})
        return jsonify(body), status
    return render_template("error.html", status=status, code=code, message=message), status


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError):
        code = str(exc.params.get("code") or exc.code)
        fallback = exc.code if exc.code in MESSAGES else "DOMAIN_ERROR"
        extra = {}
        if "decisions" in exc.params:
            from dispensing.orders import decision_json

            extra["decisions"] = [decision_json(d) for d in exc.params["decisions"]]
        return error_response(exc.status, code, message_for(code, fallback), **extra)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return error_response(400, "CSRF_FAILED")

    @app.errorhandler(IntegrityError)
    def _integrity(exc: IntegrityError):
        # A database constraint caught what a service should have: refuse, never half-write.
        log.warning("integrity_error", error=type(exc.orig).__name__)
        return error_response(409, "DUPLICATE_RECORD")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if exc.code == 422 and wants_json():
            # flask-smorest/webargs validation errors carry the field messages.
            messages = getattr(exc, "data", {}).get("messages")
            return error_response(422, "VALIDATION_FAILED", errors=messages)
        code = {
            400: "BAD_REQUEST",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            405: "METHOD_NOT_ALLOWED",
        }.get(exc.code or 500, "BAD_REQUEST")
        return error_response(exc.code or 400, code)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled_error", error=type(exc).__name__)
        return error_response(500, "SERVER_ERROR", gettext("Something went wrong. The error was recorded."))
