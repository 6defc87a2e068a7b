"""structlog set-up and a request id bound to every log line of a request.

Log lines carry ids (request, user, internal record ids), never patient names or codes.
"""

from __future__ import annotations

import logging
import time
import uuid

import structlog
from flask import Flask, g, request
from flask_login import current_user


def configure_logging(log_format: str) -> None:
    renderer = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def install_request_logging(app: Flask) -> None:
    log = structlog.get_logger("web.request")

    @app.before_request
    def _bind_request_id() -> None:
        structlog.contextvars.clear_contextvars()
        incoming = request.headers.get("X-Request-ID", "")
        # Accept a caller's id only when it is short and plain, so it can't smuggle data into logs.
        request_id = incoming if incoming.isalnum() and len(incoming) <= 64 else uuid.uuid4().hex
        g.request_id = request_id
        g.request_started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=request_id)

    @app.after_request
    def _log_response(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        elapsed_ms = (time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000
        user_id = current_user.get_id() if current_user and current_user.is_authenticated else None
        # The path template (url_rule), not the URL: URLs may carry patient codes.
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        log.info(
            "request",
            method=request.method,
            route=route,
            status=response.status_code,
            ms=round(elapsed_ms, 1),
            user_id=user_id,
        )
        return response
