"""The day's work: open reminders by role, dismissing one (role, clinic, who and when, audit),
and the forecast read back for the pharmacist."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dispensing import day_work
from dispensing.errors import Conflict, NotFound, PermissionDenied
from dispensing.jobs.reminders import lot_expiry_reminders
from dispensing.jobs.runs import Outcome, run_job
from dispensing.models import AuditEvent, Reminder, ReminderKind, Role
from dispensing.permissions import can_act_on_reminder
from tests import factories


@pytest.fixture
def lot_reminder(database, world):
    world.receive("1000", lot_number="SOON", expiry=world.today + timedelta(days=20))
    assert run_job(database, "lot_expiry", lot_expiry_reminders, world.clinic.id, world.today,
                   now=world.now) is Outcome.RAN
    return world.session.scalar(select(Reminder).where(Reminder.kind == ReminderKind.LOT_EXPIRING))


def _audits(world) -> int:
    return world.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "reminder.dismissed"))


def test_open_reminders_are_those_of_the_users_roles_and_clinic(world, lot_reminder):
    assert day_work.open_reminders(world.session, world.pharmacist, world.today) == [lot_reminder]
    assert day_work.open_reminders(world.session, world.physician, world.today) == []
    assert day_work.open_reminders(world.session, world.pharmacist, world.today + timedelta(days=1)) == []
    other = factories.user(world.session, factories.clinic(world.session), Role.PHARMACIST)
    assert day_work.open_reminders(world.session, other, world.today) == []


def test_only_a_holder_of_the_role_in_the_same_clinic_may_dismiss(world, lot_reminder):
    other_clinic = factories.user(world.session, factories.clinic(world.session), Role.PHARMACIST)
    inactive = factories.user(world.session, world.clinic, Role.PHARMACIST)
    inactive.active = False
    world.session.commit()
    assert can_act_on_reminder(world.pharmacist, lot_reminder)
    for user in (world.physician, world.admin, world.unit_head, other_clinic, inactive):
        assert not can_act_on_reminder(user, lot_reminder)
        with pytest.raises(PermissionDenied) as refused:
            day_work.dismiss_reminder(world.session, user, lot_reminder.id, now=world.now)
        world.session.rollback()
        if user in (world.physician, world.admin, world.unit_head):
            assert refused.value.params["code"] == "REMINDER_ROLE_REQUIRED"
    world.session.expire_all()
    assert world.session.get(Reminder, lot_reminder.id).dismissed_at is None and _audits(world) == 0


def test_dismissing_records_who_and_when_once(world, lot_reminder):
    at = world.now + timedelta(minutes=5)
    done = day_work.dismiss_reminder(world.session, world.pharmacist2, lot_reminder.id, now=at)
    world.session.expire_all()
    stored = world.session.get(Reminder, done.id)
    assert (stored.dismissed_by_id, stored.dismissed_at) == (world.pharmacist2.id, at)
    event = world.session.scalar(select(AuditEvent).where(AuditEvent.action == "reminder.dismissed"))
    assert (event.actor_id, event.entity_type, event.entity_id) == (world.pharmacist2.id, "Reminder", str(done.id))
    assert day_work.open_reminders(world.session, world.pharmacist, world.today) == []
    with pytest.raises(Conflict):
        day_work.dismiss_reminder(world.session, world.pharmacist, lot_reminder.id, now=at)
    world.session.rollback()
    with pytest.raises(NotFound):
        day_work.dismiss_reminder(world.session, world.pharmacist, 987654321, now=at)
    world.session.rollback()
    assert _audits(world) == 1


def test_the_forecast_is_for_pharmacists_only(world):
    assert day_work.forecast_for(world.session, world.pharmacist, world.today) == []
    with pytest.raises(PermissionDenied):
        day_work.forecast_for(world.session, world.nurse, world.today)
