"""The landing page after login: the day's work for each role."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from web.auth import signed_in_user
from web.labels import ROLE_LABELS

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index():
    return render_template("home.html", user=signed_in_user(), role_labels=ROLE_LABELS)
