"""Login, logout, idle timeout and the language switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import wraps

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext, lazy_gettext
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from dispensing import accounts
from dispensing.errors import AccountLocked, LoginRefused
from dispensing.models import Role, User
from dispensing.permissions import require_role
from web.database import db
from web.errors import message_for
from web.extensions import login_manager

bp = Blueprint("auth", __name__)


class SessionUser(UserMixin):
    """The signed-in user as Flask-Login sees it; ``.user`` is the mapped User of this request."""

    def __init__(self, user: User):
        self.user = user
        self.id = str(user.id)

    @property
    def is_active(self) -> bool:
        return bool(self.user.active)


def role_required(*roles: Role):
    """View decorator: sign-in required and one of ``roles``; services check again."""

    def decorate(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            require_role(signed_in_user(), *roles)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def _htmx_to_login():
    """For an htmx request: send the whole page (not the fragment's target) to the login form."""
    from urllib.parse import urlparse

    page = urlparse(request.headers.get("HX-Current-URL", "")).path or "/"
    return "", 401, {"HX-Redirect": url_for("auth.login", next=page)}


@login_manager.unauthorized_handler
def _unauthorized():
    if request.path.startswith("/api/"):
        from web.errors import error_response

        return error_response(401, "LOGIN_REQUIRED")
    if request.headers.get("HX-Request") == "true":
        return _htmx_to_login()
    return redirect(url_for("auth.login", next=request.path))


@login_manager.user_loader
def _load_user(user_id: str):
    if not user_id.isdigit():
        return None
    user = accounts.load_user(db(), int(user_id))
    if user is None or not user.active:
        return None
    return SessionUser(user)


def signed_in_user() -> User | None:
    """Return the mapped User of the signed-in person, or None."""
    return current_user.user if current_user.is_authenticated else None


class LoginForm(FlaskForm):
    username = StringField(lazy_gettext("Username"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(lazy_gettext("Password"), validators=[DataRequired(), Length(max=256)])


def _policy() -> accounts.LoginPolicy:
    settings = current_app.config["MMT_SETTINGS"]
    return accounts.LoginPolicy(
        max_failures=settings.login_max_failures,
        lockout=timedelta(minutes=settings.login_lockout_minutes),
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        session_db = db()
        try:
            user = accounts.authenticate(
                session_db, form.username.data or "", form.password.data or "", policy=_policy()
            )
        except AccountLocked as exc:
            session_db.commit()
            flash(message_for(exc.code), "error")
            status = 423
        except LoginRefused as exc:
            session_db.commit()
            flash(message_for(exc.code), "error")
            status = 401
        else:
            session_db.commit()
            session.clear()
            login_user(SessionUser(user))
            session["last_seen"] = datetime.now(UTC).timestamp()
            if user.language:
                session["lang"] = user.language
            target = request.args.get("next", "")
            # Only same-site relative paths, so the login page can't be used to redirect away.
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("home.index")
            return redirect(target)
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    session.clear()
    flash(gettext("You have been signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/lang/<code>", methods=["POST"])
def set_language(code: str):
    if code in current_app.config["MMT_SETTINGS"].languages:
        session["lang"] = code
    target = request.referrer or url_for("home.index")
    return redirect(target if target.startswith(request.host_url) else url_for("home.index"))


def install_idle_timeout(app) -> None:
    @app.before_request
    def _idle_timeout():
        if request.endpoint in {"static", "health.healthz"} or not current_user.is_authenticated:
            return None
        idle = timedelta(minutes=app.config["MMT_SETTINGS"].session_idle_minutes)
        now = datetime.now(UTC).timestamp()
        last_seen = session.get("last_seen")
        if last_seen is not None and now - float(last_seen) > idle.total_seconds():
            logout_user()
            session.clear()
            flash(gettext("You were signed out after a period of inactivity."), "info")
            if request.path.startswith("/api/"):
                from web.errors import error_response

                return error_response(401, "SESSION_EXPIRED")
            if request.headers.get("HX-Request") == "true":
                return _htmx_to_login()
            return redirect(url_for("auth.login", next=request.path))
        # A page's own polling (dose progress, the counter queue) is not the user's activity.
        if request.headers.get("X-Idle-Poll") != "1":
            session["last_seen"] = now
        return None
