"""Signatures on stock records: re-authentication, co-signers, and the audit event of each.

A signature is the signer's password checked again at the moment of signing
(``accounts.reauthenticate``) and an audit event naming the record and the signer's role. Two-person
records need two different active users of the same clinic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.accounts import reauthenticate
from dispensing.errors import PermissionDenied, ReauthenticationFailed, ValidationFailed
from dispensing.models import Role, User
from dispensing.permissions import can_sign_as_unit_head, require_role


@dataclass(frozen=True)
class Cosigner:
    """A second person signing (witness, head of unit): their username and password."""

    username: str
    password: str = field(repr=False)


def can_manage_stock(user: User | None) -> bool:
    """Pharmacists (dược sĩ / thủ kho) receive, move, correct and close stock."""
    return user is not None and user.active and user.has_role(Role.PHARMACIST)


def can_record_waste(user: User | None) -> bool:
    """A spill happens at the counter too: nurses and pharmacists record it (with a witness)."""
    return user is not None and user.active and user.has_role(Role.PHARMACIST, Role.NURSE)


def can_read_stock(user: User | None) -> bool:
    return user is not None and user.active and user.has_role(
        Role.PHARMACIST, Role.PHYSICIAN, Role.ADMIN, Role.NURSE, Role.UNIT_HEAD)


def require_stock_manager(user: User | None) -> None:
    """Raise PermissionDenied unless ``user`` is an active pharmacist."""
    require_role(user, Role.PHARMACIST)


def resolve_cosigner(session: Session, signer: User, cosigner: Cosigner | None, *, required_code: str) -> User:
    """Return the co-signing user after checking their password.

    Raises ValidationFailed(``required_code``) when nobody was named, ValidationFailed
    (COSIGNER_IS_SIGNER) for the signer themself, and ReauthenticationFailed for an unknown,
    inactive or other-clinic user or a wrong password (one answer, so names are not probed).
    """
    if cosigner is None or not cosigner.username.strip():
        raise ValidationFailed("a second signature is required", code=required_code)
    user = session.scalar(select(User).where(User.username == cosigner.username.strip().lower()))
    if user is not None and user.id == signer.id:
        raise ValidationFailed("the second signer must be another person", code="COSIGNER_IS_SIGNER")
    if user is None or user.clinic_id != signer.clinic_id:
        raise ReauthenticationFailed("co-signer unknown")
    reauthenticate(user, cosigner.password)
    return user


def resolve_unit_head(session: Session, signer: User, cosigner: Cosigner | None) -> User:
    """Return the head of unit co-signing with ``signer``, their password checked.

    Raises ValidationFailed (UNIT_HEAD_REQUIRED when nobody was named, COSIGNER_IS_SIGNER),
    ReauthenticationFailed (unknown user or wrong password), PermissionDenied
    (UNIT_HEAD_ROLE_REQUIRED: the co-signer is not an active head of unit). The password is checked
    before the role, so the answer never tells who holds the role.
    """
    user = resolve_cosigner(session, signer, cosigner, required_code="UNIT_HEAD_REQUIRED")
    if not can_sign_as_unit_head(user):
        raise PermissionDenied("the co-signer is not head of unit", code="UNIT_HEAD_ROLE_REQUIRED",
                               required=[Role.UNIT_HEAD.value])
    return user


def sign(
    session: Session,
    signer: User,
    *,
    action: str,
    role: str,
    entity: object,
    clinic_id: int,
    data: dict | None = None,
    at: datetime | None = None,
) -> None:
    """Record the audit event of a signature already re-authenticated."""
    audit.record(
        session, action, actor_id=signer.id, clinic_id=clinic_id, entity=entity,
        data={"role": role, **(data or {})}, at=at,
    )


def require_same_clinic(user: User, clinic_id: int) -> None:
    if user.clinic_id != clinic_id:
        raise PermissionDenied("other clinic")
