"""Administering user accounts: create, deactivate and reactivate, reset a password, change roles.

Each function is one use case for an administrator of the same clinic: it checks the role, writes,
audits and commits. An administrator cannot lock themself out (deactivate their own account or
drop their own administrator role), so a clinic never loses its last way in by accident.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from dispensing import accounts, audit
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.models import Role, User, UserRole
from dispensing.permissions import require_role, require_same_clinic


def _target(session: Session, actor: User, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", code="USER_NOT_FOUND")
    require_same_clinic(actor, user.clinic_id)
    return user


def add_user(
    session: Session,
    actor: User,
    *,
    username: str,
    full_name: str,
    password: str,
    roles: set[Role] | frozenset[Role],
    practice_start_date: date | None = None,
    mmt_certificate_no: str | None = None,
) -> User:
    """Create a user in the administrator's clinic and return it (committed).

    Raises PermissionDenied, ValidationFailed (USER_FIELDS_REQUIRED, USER_ROLE_REQUIRED,
    PASSWORD_TOO_SHORT), Conflict (USERNAME_TAKEN).
    """
    require_role(actor, Role.ADMIN)
    begin_write(session)
    user = accounts.create_user(
        session, actor=actor, clinic_id=actor.clinic_id, username=username, full_name=full_name,
        password=password, roles=roles, practice_start_date=practice_start_date,
        mmt_certificate_no=mmt_certificate_no,
    )
    session.commit()
    return user


def set_user_active(session: Session, actor: User, user_id: int, active: bool) -> User:
    """Deactivate (no login, no signing) or reactivate an account; committed.

    Reactivating also clears a login lockout. Raises PermissionDenied, NotFound, Conflict
    (USER_SELF_LOCKOUT when an administrator deactivates their own account).
    """
    require_role(actor, Role.ADMIN)
    begin_write(session)
    user = _target(session, actor, user_id)
    if user.id == actor.id and not active:
        raise Conflict("own account", code="USER_SELF_LOCKOUT")
    if user.active != active:
        user.active = active
        if active:
            user.failed_logins, user.locked_until = 0, None
        audit.record(session, "user.activated" if active else "user.deactivated", actor_id=actor.id,
                     clinic_id=user.clinic_id, entity=user)
    session.commit()
    return user


def reset_password(session: Session, actor: User, user_id: int, password: str) -> User:
    """Set a new password for a user (and lift a lockout); committed.

    Raises PermissionDenied, NotFound, ValidationFailed (PASSWORD_TOO_SHORT).
    """
    require_role(actor, Role.ADMIN)
    begin_write(session)
    user = _target(session, actor, user_id)
    accounts.set_password(session, actor=actor, user=user, password=password)
    session.commit()
    return user


def set_roles(session: Session, actor: User, user_id: int, roles: set[Role] | frozenset[Role]) -> User:
    """Replace a user's roles; committed.

    Raises PermissionDenied, NotFound, ValidationFailed (USER_ROLE_REQUIRED), Conflict
    (USER_SELF_LOCKOUT when an administrator removes their own administrator role).
    """
    require_role(actor, Role.ADMIN)
    roles = {Role(role) for role in roles}
    if not roles:
        raise ValidationFailed("at least one role is required", code="USER_ROLE_REQUIRED")
    begin_write(session)
    user = _target(session, actor, user_id)
    if user.id == actor.id and Role.ADMIN not in roles:
        raise Conflict("own admin role", code="USER_SELF_LOCKOUT")
    before = set(user.roles)
    if before != roles:
        for row in list(user.role_rows):
            if row.role not in roles:
                user.role_rows.remove(row)
        session.flush()
        for role in sorted(roles - before):
            user.role_rows.append(UserRole(role=role))
        audit.record(session, "user.roles_changed", actor_id=actor.id, clinic_id=user.clinic_id, entity=user,
                     data={"from": sorted(r.value for r in before), "to": sorted(r.value for r in roles)})
    session.commit()
    return user
