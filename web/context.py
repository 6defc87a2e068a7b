"""Who is asking, for which clinic, under which rules, on which business day."""

from __future__ import annotations

from datetime import date, datetime

from flask import current_app

from dispensing import rules
from dispensing.clock import business_date, utcnow
from dispensing.errors import PermissionDenied
from dispensing.models import Clinic, User
from dispensing.rulebook import RuleBook
from web.auth import signed_in_user
from web.database import db


def actor() -> User:
    """Return the signed-in user. Raises PermissionDenied when nobody is signed in."""
    user = signed_in_user()
    if user is None:
        raise PermissionDenied("not signed in", code="LOGIN_REQUIRED")
    return user


def clinic() -> Clinic:
    return db().get(Clinic, actor().clinic_id)


def rulebook() -> RuleBook:
    return current_app.extensions["mmt.rulebook"]


def rule_set() -> rules.RuleSet:
    """Return the rule set the signed-in user's clinic selected."""
    return rulebook().for_clinic(clinic())


def now() -> datetime:
    return utcnow()


def today() -> date:
    """Return the clinic's business date now."""
    return business_date(now(), clinic().timezone)
