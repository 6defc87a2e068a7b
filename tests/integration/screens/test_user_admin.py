"""Administering accounts: create, deactivate/reactivate, reset a password, change roles; each
audited, each refused to non-administrators, and an administrator cannot lock themself out."""

import pytest

from dispensing import accounts, user_admin
from dispensing.errors import Conflict, LoginRefused, NotFound, PermissionDenied, ValidationFailed
from dispensing.models import AuditEvent, Role
from tests import factories


@pytest.fixture
def people(session):
    clinic = factories.clinic(session)
    return {
        "clinic": clinic,
        "admin": factories.user(session, clinic, Role.ADMIN),
        "nurse": factories.user(session, clinic, Role.NURSE),
    }


def _actions(session, entity_id):
    return [e.action for e in session.query(AuditEvent).filter_by(entity_type="User", entity_id=str(entity_id))]


def test_add_user_commits_in_the_admins_clinic(session, people):
    user = user_admin.add_user(session, people["admin"], username="BacSi9", full_name="BS. Chín",
                               password="long-enough-1", roles={Role.PHYSICIAN})
    assert user.username == "bacsi9" and user.clinic_id == people["clinic"].id
    assert user.roles == {Role.PHYSICIAN}
    assert "user.created" in _actions(session, user.id)


def test_deactivated_user_cannot_sign_in_until_reactivated(session, people):
    nurse = people["nurse"]
    user_admin.set_user_active(session, people["admin"], nurse.id, False)
    with pytest.raises(LoginRefused):
        accounts.authenticate(session, nurse.username, factories.PASSWORD)
    nurse.locked_until = None
    user_admin.set_user_active(session, people["admin"], nurse.id, True)
    assert accounts.authenticate(session, nurse.username, factories.PASSWORD).id == nurse.id
    assert {"user.deactivated", "user.activated"} <= set(_actions(session, nurse.id))


def test_admin_cannot_deactivate_themself_or_drop_their_admin_role(session, people):
    admin = people["admin"]
    with pytest.raises(Conflict) as refused:
        user_admin.set_user_active(session, admin, admin.id, False)
    assert refused.value.params["code"] == "USER_SELF_LOCKOUT"
    with pytest.raises(Conflict):
        user_admin.set_roles(session, admin, admin.id, {Role.PHYSICIAN})
    assert admin.active and Role.ADMIN in admin.roles


def test_reset_password_lifts_a_lockout(session, people):
    nurse = people["nurse"]
    from datetime import UTC, datetime, timedelta

    nurse.locked_until = datetime.now(UTC) + timedelta(minutes=10)
    user_admin.reset_password(session, people["admin"], nurse.id, "a-new-password")
    assert nurse.locked_until is None
    assert accounts.authenticate(session, nurse.username, "a-new-password").id == nurse.id
    with pytest.raises(ValidationFailed):
        user_admin.reset_password(session, people["admin"], nurse.id, "short")


def test_set_roles_replaces_them_and_audits_the_change(session, people):
    nurse = people["nurse"]
    user_admin.set_roles(session, people["admin"], nurse.id, {Role.NURSE, Role.PHARMACIST})
    session.expire_all()
    assert nurse.roles == {Role.NURSE, Role.PHARMACIST}
    with pytest.raises(ValidationFailed):
        user_admin.set_roles(session, people["admin"], nurse.id, set())
    assert "user.roles_changed" in _actions(session, nurse.id)


def test_only_admins_of_the_same_clinic(session, people):
    with pytest.raises(PermissionDenied):
        user_admin.set_user_active(session, people["nurse"], people["admin"].id, False)
    other_clinic = factories.clinic(session)
    stranger = factories.user(session, other_clinic, Role.NURSE)
    with pytest.raises(PermissionDenied):
        user_admin.reset_password(session, people["admin"], stranger.id, "long-enough-2")
    with pytest.raises(NotFound):
        user_admin.set_roles(session, people["admin"], 999_999, {Role.NURSE})
