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
    from web.api import agent as agent_api
    from web.api import counter as counter_api
    from web.api import orders as orders_api
    from web.api import patients as patients_api
    from web.api import reports as reports_api
    from web.api import session as session_api
    from web.api import stock as stock_api

    api.register_blueprint(session_api.blp, url_prefix="/api/v1/session")
    api.register_blueprint(patients_api.blp, url_prefix="/api/v1/patients")
    api.register_blueprint(orders_api.blp, url_prefix="/api/v1")
    api.register_blueprint(stock_api.blp, url_prefix="/api/v1/stock")
    api.register_blueprint(reports_api.blp, url_prefix="/api/v1/reports")
    api.register_blueprint(counter_api.blp, url_prefix="/api/v1/counter")
    api.register_blueprint(agent_api.blp, url_prefix="/api/v1/agent")
