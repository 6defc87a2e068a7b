"""The top bar's menu: one entry per area, shown to the roles that work there.

Add an area with one line, e.g. ``register("counter.index", lazy_gettext("Counter"), Role.NURSE)``
in the module that defines the blueprint; entries keep the order they were registered in.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import url_for
from flask_babel import lazy_gettext

from dispensing.models import Role, User


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: object  # a lazy translatable string
    roles: frozenset[Role]
    order: int


_ITEMS: dict[str, NavItem] = {}


def register(endpoint: str, label, *roles: Role, order: int | None = None) -> None:
    """Show a link to ``endpoint`` for users holding any of ``roles`` (idempotent per endpoint)."""
    position = order if order is not None else (_ITEMS[endpoint].order if endpoint in _ITEMS else 10 * len(_ITEMS))
    _ITEMS[endpoint] = NavItem(endpoint, label, frozenset(roles), position)


def items_for(user: User | None) -> list[dict]:
    """Return the links ``user`` sees, as dicts with ``url`` and ``label``."""
    if user is None:
        return []
    roles = user.roles
    return [
        {"url": url_for(item.endpoint), "label": item.label}
        for item in sorted(_ITEMS.values(), key=lambda i: i.order)
        if roles & item.roles
    ]


register("patients.search", lazy_gettext("Patients"), Role.PHYSICIAN, Role.NURSE, Role.PHARMACIST, Role.ADMIN,
         order=10)
register("physician.tasks", lazy_gettext("Tasks"), Role.PHYSICIAN, order=20)
register("admin.users", lazy_gettext("Users"), Role.ADMIN, order=80)
register("admin.counters", lazy_gettext("Counters and devices"), Role.ADMIN, Role.PHARMACIST, order=85)
register("admin.settings", lazy_gettext("Clinic settings"), Role.ADMIN, order=90)
