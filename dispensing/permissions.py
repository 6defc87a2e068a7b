"""Who may do what. Service functions call these; views may call them too, but never instead.

Each check is its own small function with one condition a line, so each can be tested alone.
"""

from __future__ import annotations

from dispensing.errors import PermissionDenied
from dispensing.models import Reminder, Role, User


def require_role(user: User | None, *roles: Role) -> None:
    """Raise PermissionDenied unless ``user`` is active and holds one of ``roles``."""
    if user is None or not user.active:
        raise PermissionDenied("not signed in", required=[role.value for role in roles])
    if not user.has_role(*roles):
        raise PermissionDenied("role required", required=[role.value for role in roles])


def require_same_clinic(user: User, clinic_id: int) -> None:
    """Raise PermissionDenied when ``user`` belongs to another clinic."""
    if user.clinic_id != clinic_id:
        raise PermissionDenied("other clinic")


def can_administer(user: User | None) -> bool:
    return user is not None and user.active and user.has_role(Role.ADMIN)


def can_prescribe(user: User | None) -> bool:
    """Return True for an active physician (orders: draft, sign, supersede, stop)."""
    return user is not None and user.active and user.has_role(Role.PHYSICIAN)


def can_dispense(user: User | None) -> bool:
    return user is not None and user.active and user.has_role(Role.NURSE)


def can_manage_stock(user: User | None) -> bool:
    return user is not None and user.active and user.has_role(Role.PHARMACIST)


def can_sign_as_unit_head(user: User | None) -> bool:
    """Return True for an active head of unit (trưởng đơn vị): countersigns anomaly records at
    receipt and co-signs quarantine decisions."""
    return user is not None and user.active and user.has_role(Role.UNIT_HEAD)


def can_act_on_reminder(user: User | None, reminder: Reminder) -> bool:
    """Return True for an active user of the reminder's clinic holding the role it is for (only
    they may dismiss it)."""
    return (
        user is not None
        and user.active
        and user.clinic_id == reminder.clinic_id
        and user.has_role(reminder.for_role)
    )
