"""API sign-in: POST /api/v1/session starts a cookie session and returns the CSRF token that every
later write must send as X-CSRFToken; GET returns who is signed in; DELETE signs out."""

from __future__ import annotations

from datetime import UTC, datetime

import marshmallow as ma
from flask import session
from flask.views import MethodView
from flask_login import login_required, login_user, logout_user
from flask_smorest import Blueprint
from flask_wtf.csrf import generate_csrf

from dispensing import accounts
from dispensing.errors import DomainError
from web.auth import SessionUser, _policy, signed_in_user
from web.database import db
from web.extensions import csrf

blp = Blueprint("api_session", __name__, description="Sign in and out of the API")


class LoginSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(min=1, max=256))


class MeSchema(ma.Schema):
    id = ma.fields.Integer()
    username = ma.fields.String()
    full_name = ma.fields.String()
    roles = ma.fields.List(ma.fields.String())
    clinic_id = ma.fields.Integer()
    csrf_token = ma.fields.String()


def _me(user) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "full_name": user.full_name,
        "roles": sorted(role.value for role in user.roles),
        "clinic_id": user.clinic_id,
        "csrf_token": generate_csrf(),
    }


@blp.route("")
class SessionResource(MethodView):
    # Signing in cannot carry a token yet; every other method checks it (see delete()).
    decorators = [csrf.exempt]

    @blp.arguments(LoginSchema)
    @blp.response(201, MeSchema)
    def post(self, credentials):
        """Sign in; returns the user and the CSRF token for later writes."""
        session_db = db()
        try:
            user = accounts.authenticate(
                session_db, credentials["username"], credentials["password"], policy=_policy()
            )
        except DomainError:
            session_db.commit()  # failure counts and lockouts persist
            raise
        session_db.commit()
        session.clear()
        login_user(SessionUser(user))
        session["last_seen"] = datetime.now(UTC).timestamp()
        return _me(user)

    @login_required
    @blp.response(200, MeSchema)
    def get(self):
        """Who is signed in."""
        return _me(signed_in_user())

    @login_required
    @blp.response(204)
    def delete(self):
        """Sign out."""
        csrf.protect()  # the view is exempt only so that signing in needs no token
        logout_user()
        session.clear()
