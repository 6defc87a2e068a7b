"""The Flask application: ``create_app`` wires settings, database, extensions and blueprints."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask, request, session

from dispensing.db import Database, sqlite_url_for
from dispensing.settings import Settings, load_settings
from web.database import close_session
from web.extensions import babel, csrf, login_manager


def _select_locale() -> str:
    from flask import current_app

    settings: Settings = current_app.config["MMT_SETTINGS"]
    chosen = session.get("lang")
    if chosen in settings.languages:
        return chosen
    return settings.language


def create_app(
    test_config: dict | None = None,
    *,
    settings: Settings | None = None,
    database: Database | None = None,
) -> Flask:
    """Return a configured app. Raises SettingsError on invalid settings (e.g. production without
    a SECRET_KEY) and RuleTableError on a malformed rule table, so the process refuses to start
    with a message naming the problem."""
    app = Flask(__name__, instance_relative_config=True)
    from web.json import ExactJSONProvider

    app.json = ExactJSONProvider(app)
    settings = settings or load_settings()
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    database_url = settings.database_url or sqlite_url_for(Path(app.instance_path))
    app.config.update(
        MMT_SETTINGS=settings,
        SECRET_KEY=settings.secret_key or "development-only-not-secret",
        DATABASE_URL=database_url,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session; the idle timeout ends sessions instead
        BABEL_DEFAULT_LOCALE=settings.language,
        BABEL_DEFAULT_TIMEZONE=settings.clinic_timezone,
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
    )
    if test_config:
        app.config.update(test_config)

    from web.logging import configure_logging, install_request_logging

    configure_logging(settings.log_format)
    app.extensions["mmt.database"] = database or Database.from_url(
        app.config["DATABASE_URL"], busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )

    from dispensing.rulebook import RuleBook

    rulebook = RuleBook(settings.rules_dir)
    rulebook.validate()  # a malformed rule table stops start-up with RuleTableError (file, key)
    app.extensions["mmt.rulebook"] = rulebook

    babel.init_app(app, locale_selector=_select_locale)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_message = None

    from web import (
        admin,
        auth,
        counter_screen,
        health,
        home,
        patients,
        pharmacy,
        physician,
        unit_head,
    )
    from web.api import init_api
    from web.errors import install_error_handlers
    from web.formatting import install_filters

    app.register_blueprint(auth.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(patients.bp)
    app.register_blueprint(physician.bp)
    app.register_blueprint(pharmacy.bp)
    app.register_blueprint(counter_screen.bp)
    app.register_blueprint(unit_head.bp)
    install_filters(app)
    init_api(app)
    install_error_handlers(app)
    install_request_logging(app)
    auth.install_idle_timeout(app)
    app.teardown_appcontext(close_session)

    @app.context_processor
    def _template_globals():
        from flask_babel import get_locale

        from web.auth import signed_in_user
        from web.navigation import items_for

        return {"current_locale": str(get_locale()), "languages": settings.languages, "path": request.path,
                "nav_items": lambda: items_for(signed_in_user())}

    return app
