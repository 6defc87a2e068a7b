"""The JSON API under /api/v1 (flask-smorest): marshmallow schemas and a served OpenAPI document
at /api/v1/openapi.json. Browsers and scripts use the session cookie and send the CSRF token in
the X-CSRFToken header; counter agents use their own token (see the counter issue)."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

api = Api()

API_CONFIG = {
    "API_TITLE": "MMT dispensing API",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
}


def init_api(app: Flask) -> None:
    for key, value in API_CONFIG.items():
        app.config.setdefault(key, value)
    api.init_app(app)
    from web.api import orders as orders_api
    from web.api import patients as patients_api
    from web.api import session as session_api

    api.register_blueprint(session_api.blp, url_prefix="/api/v1/session")
    api.register_blueprint(patients_api.blp, url_prefix="/api/v1/patients")
    api.register_blueprint(orders_api.blp, url_prefix="/api/v1")
