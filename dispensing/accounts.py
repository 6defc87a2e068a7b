"""User accounts: argon2 password hashes, login with temporary lockout, re-authentication."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from dispensing import audit
from dispensing.clock import utcnow
from dispensing.errors import (
    AccountLocked,
    Conflict,
    LoginRefused,
    ReauthenticationFailed,
    ValidationFailed,
)
from dispensing.models import Role, User, UserRole
from dispensing.permissions import require_role

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong name costs the same time as a wrong
# password and does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def use_cheap_hashing_for_tests() -> None:
    """Switch to argon2's cheapest parameters. Only the test suite calls this: it hashes hundreds
    of passwords, and production strength would make it minutes slower without testing more."""
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    _DUMMY_HASH = _hasher.hash("not-a-real-password")
MIN_PASSWORD_LENGTH = 8


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)


def load_user(session: Session, user_id: int) -> User | None:
    """Return the user with their roles in one statement (the relationship's own ``selectin``
    loading would add a second one): what every request does first, for the signed-in user."""
    return session.get(User, user_id, options=(_WITH_ROLES,))


_WITH_ROLES = joinedload(User.role_rows)


def hash_password(password: str) -> str:
    """Return an argon2id hash. Raises ValidationFailed for a password that is too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed("password too short", code="PASSWORD_TOO_SHORT", min_length=MIN_PASSWORD_LENGTH)
    return _hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    """Return True when ``password`` matches the user's hash."""
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def create_user(
    session: Session,
    *,
    actor: User | None,
    clinic_id: int,
    username: str,
    full_name: str,
    password: str,
    roles: set[Role] | frozenset[Role],
    practice_start_date: date | None = None,
    mmt_certificate_no: str | None = None,
) -> User:
    """Create a user and return it (flushed, not committed).

    ``actor`` must be an admin; None is allowed only for the command line and the demo seed.
    Raises PermissionDenied, ValidationFailed, Conflict (username taken).
    """
    if actor is not None:
        require_role(actor, Role.ADMIN)
    username = username.strip().lower()
    if not username or not full_name.strip():
        raise ValidationFailed("username and full name are required", code="USER_FIELDS_REQUIRED")
    if not roles:
        raise ValidationFailed("at least one role is required", code="USER_ROLE_REQUIRED")
    if session.scalar(select(func.count()).select_from(User).where(User.username == username)):
        raise Conflict("username taken", code="USERNAME_TAKEN")
    user = User(
        clinic_id=clinic_id,
        username=username,
        full_name=full_name.strip(),
        password_hash=hash_password(password),
        practice_start_date=practice_start_date,
        mmt_certificate_no=mmt_certificate_no,
        role_rows=[UserRole(role=Role(role)) for role in sorted(roles)],
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        "user.created",
        actor_id=actor.id if actor else None,
        clinic_id=clinic_id,
        entity=user,
        data={"username": username, "roles": sorted(role.value for role in user.roles)},
    )
    return user


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    policy: LoginPolicy = LoginPolicy(),
    now: datetime | None = None,
) -> User:
    """Return the user when the credentials are right; count failures and lock the account.

    Raises AccountLocked while a lockout lasts (even with the right password) and LoginRefused
    otherwise. The caller commits in both cases so failure counts persist.
    """
    now = now or utcnow()
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        _hasher.verify(_DUMMY_HASH, "not-a-real-password")
        raise LoginRefused("unknown user or wrong password")
    if user.locked_until is not None and user.locked_until > now:
        audit.record(session, "login.refused_locked", actor_id=user.id, clinic_id=user.clinic_id, entity=user)
        raise AccountLocked("account locked", until=user.locked_until)
    if not user.active or not check_password(user, password):
        user.failed_logins = (user.failed_logins or 0) + 1
        data = {"failed_logins": user.failed_logins}
        if user.failed_logins >= policy.max_failures:
            user.locked_until = now + policy.lockout
            user.failed_logins = 0
            data["locked_until"] = user.locked_until
            audit.record(session, "login.locked", actor_id=user.id, clinic_id=user.clinic_id, entity=user, data=data)
            raise AccountLocked("account locked", until=user.locked_until)
        audit.record(session, "login.failed", actor_id=user.id, clinic_id=user.clinic_id, entity=user, data=data)
        raise LoginRefused("unknown user or wrong password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    audit.record(session, "login.succeeded", actor_id=user.id, clinic_id=user.clinic_id, entity=user)
    return user


def reauthenticate(user: User, password: str) -> None:
    """Confirm the signing user's password (orders, reconciliations). Raises ReauthenticationFailed."""
    if not user.active or not check_password(user, password):
        raise ReauthenticationFailed("password did not match")


def set_password(session: Session, *, actor: User, user: User, password: str) -> None:
    """Set a new password (the user themself or an admin). Raises PermissionDenied, ValidationFailed."""
    if actor.id != user.id:
        require_role(actor, Role.ADMIN)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    audit.record(session, "user.password_set", actor_id=actor.id, clinic_id=user.clinic_id, entity=user)
