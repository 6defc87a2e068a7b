"""The landing page: the day's reminders for the signed-in user's roles (written by the real
scheduler jobs and stock services), dismissing one, short cuts, and the pharmacist's forecast."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dispensing import stock
from dispensing.clock import utcnow
from dispensing.jobs.forecast import morning_forecast
from dispensing.jobs.reminders import ecg_due_reminders, lot_expiry_reminders, order_reminders
from dispensing.jobs.runs import Outcome, run_job
from dispensing.models import (
    AnomalyKind,
    AuditEvent,
    DiscrepancyReason,
    MeasureMethod,
    Reminder,
    ReminderKind,
    StockForecast,
)
from tests import factories, stock_world
from tests.e2e.conftest import Browser, csrf_token
from tests.stock_world import PASSWORD


@pytest.fixture
def world(session):
    """The stock world on the real clock: the pages' business day is today."""
    world = stock_world.build(session)
    world.now = utcnow()
    return world


def sign_in(app, user, language: str | None = "en") -> Browser:
    browser = Browser(app.test_client())
    assert browser.login(user.username).status_code == 302
    if language:
        assert browser.post(f"/lang/{language}", token_from="/").status_code in (302, 303)
    return browser


def _run(database, world, name, function):
    assert run_job(database, name, function, world.clinic.id, world.today, now=world.now) is Outcome.RAN


@pytest.fixture
def day_of_reminders(database, world):
    """A patient whose order ends in two days (and who never had an ECG), a lot close to expiry,
    and a bottle received with a broken seal; then the morning jobs run."""
    patient = factories.patient(world.session, world.clinic, full_name="Trần Văn Hết Hạn",
                                treatment_start_date=world.today - timedelta(days=20))
    factories.signed_order(world.session, world.clinic, patient, world.physician,
                           valid_from=world.today - timedelta(days=20), valid_until=world.today + timedelta(days=2))
    world.session.commit()
    world.receive("1000", lot_number="SOON-01", expiry=world.today + timedelta(days=30))
    world.receive("500", lot_number="SEAL-02", anomaly=stock.AnomalyIn(kind=AnomalyKind.BROKEN_SEAL,
                                                                       description="Nắp niêm phong bị rách"))
    for name, job in (("order_reminders", order_reminders), ("ecg_due", ecg_due_reminders),
                      ("lot_expiry", lot_expiry_reminders)):
        _run(database, world, name, job)
    return patient


def _reminder(world, kind: ReminderKind) -> Reminder:
    return world.session.scalar(select(Reminder).where(Reminder.clinic_id == world.clinic.id, Reminder.kind == kind))


def test_each_role_sees_its_own_reminders_with_links(app, world, day_of_reminders, as_user):
    patient = day_of_reminders
    expiring_on = (world.today + timedelta(days=2)).strftime("%d/%m/%Y")
    lot = _reminder(world, ReminderKind.LOT_EXPIRING)
    assert lot is not None and _reminder(world, ReminderKind.ANOMALY_TO_SIGN) is not None

    physician = sign_in(app, world.physician).client.get("/").get_data(as_text=True)
    assert (f"The order of Trần Văn Hết Hạn ends on {expiring_on} and no follow-up order is signed."
            in physician)
    assert "ECG due for Trần Văn Hết Hạn" in physician and "baseline ECG" in physician
    assert f'href="/patients/{patient.id}#orders"' in physician and f'href="/patients/{patient.id}"' in physician
    assert "SOON-01" not in physician and "countersignature" not in physician
    assert "Morning forecast" not in physician
    assert 'href="/tasks"' in physician  # the physician's short cut

    pharmacist = sign_in(app, world.pharmacist).client.get("/").get_data(as_text=True)
    assert "Lot SOON-01 expires on" in pharmacist and "use it first or return it" in pharmacist
    assert 'href="/pharmacy/stock"' in pharmacist and 'href="/pharmacy/reconciliation"' in pharmacist
    assert "Trần Văn Hết Hạn" not in pharmacist and "countersignature" not in pharmacist

    unit_head = sign_in(app, world.unit_head).client.get("/").get_data(as_text=True)
    assert "waits for the countersignature: Broken seal." in unit_head
    assert 'href="/unit-head/anomalies"' in unit_head
    assert "SOON-01" not in unit_head and "Trần Văn Hết Hạn" not in unit_head

    nurse = sign_in(app, world.nurse).client.get("/").get_data(as_text=True)
    assert "No reminders for your roles today." in nurse and 'href="/counter"' in nurse
    assert "SOON-01" not in nurse and "Trần Văn Hết Hạn" not in nurse

    # A physician of another clinic sees none of these.
    other = as_user("physician").client.get("/").get_data(as_text=True)
    assert "Trần Văn Hết Hạn" not in other and "SOON-01" not in other


def test_reminders_are_shown_in_vietnamese_by_default(app, world, day_of_reminders):
    page = sign_in(app, world.pharmacist, language=None).client.get("/").get_data(as_text=True)
    assert "Lô SOON-01 hết hạn ngày" in page and "Bỏ qua" in page


def test_the_pharmacist_dismisses_a_reminder_and_other_roles_cannot(app, world, day_of_reminders, as_user):
    reminder = _reminder(world, ReminderKind.LOT_EXPIRING)
    path = f"/reminders/{reminder.id}/dismiss"

    def dismissals() -> int:
        return world.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "reminder.dismissed"))

    for browser in (sign_in(app, world.physician), as_user("pharmacist")):  # another role; another clinic
        refused = browser.post(path, token_from="/")
        assert refused.status_code == 403
        world.session.expire_all()
        assert world.session.get(Reminder, reminder.id).dismissed_at is None and dismissals() == 0
    refused = sign_in(app, world.physician).post(path, token_from="/").get_data(as_text=True)
    assert "This reminder is for another role: only they can dismiss it." in refused

    pharmacist = sign_in(app, world.pharmacist)
    page = pharmacist.client.get("/").get_data(as_text=True)
    assert "Lot SOON-01" in page
    no_token = pharmacist.client.post(path, data={})
    assert no_token.status_code == 400
    world.session.expire_all()
    assert world.session.get(Reminder, reminder.id).dismissed_at is None

    done = pharmacist.client.post(path, data={"csrf_token": csrf_token(page)})
    assert done.status_code == 302
    world.session.expire_all()
    stored = world.session.get(Reminder, reminder.id)
    assert stored.dismissed_by_id == world.pharmacist.id and stored.dismissed_at is not None
    assert dismissals() == 1
    after = pharmacist.client.get("/").get_data(as_text=True)
    assert "Reminder dismissed." in after and "Lot SOON-01" not in after

    again = pharmacist.client.post(path, data={"csrf_token": csrf_token(after)})
    assert again.status_code == 409 and "already dismissed" in again.get_data(as_text=True)
    missing = pharmacist.client.post("/reminders/999999999/dismiss", data={"csrf_token": csrf_token(after)})
    assert missing.status_code == 404 and "Reminder not found." in missing.get_data(as_text=True)
    assert dismissals() == 1


def test_the_morning_forecast_is_shown_to_the_pharmacist(app, database, world):
    bottles = world.receive("1000", "1000", "1000").containers
    stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                           container_id=bottles[0].id, now=world.now)
    for _ in range(3):
        world.patient()
    world.session.commit()

    before = sign_in(app, world.pharmacist).client.get("/").get_data(as_text=True)
    assert "No forecast for today yet" in before

    _run(database, world, "morning_forecast", morning_forecast)
    empty_pump = world.session.scalar(select(StockForecast).where(StockForecast.location_id == world.pumps[1].id))
    assert empty_pump.shortfall > 0 and empty_pump.bottles
    needed = f"{empty_pump.needed.normalize():f} ml"
    pharmacist = sign_in(app, world.pharmacist)
    for page in (pharmacist.client.get("/").get_data(as_text=True),
                 pharmacist.client.get("/pharmacy/stock").get_data(as_text=True)):
        assert "Morning forecast: what each pump needs today" in page
        assert world.pumps[1].name in page and needed in page
        assert empty_pump.bottles[0] in page and "lot DNP-01, expires" in page

    nurse = sign_in(app, world.nurse).client.get("/").get_data(as_text=True)
    assert "Morning forecast" not in nurse


def test_the_page_renders_with_no_reminders(as_user):
    for role in ("physician", "pharmacist", "nurse", "unit_head", "admin"):
        page = as_user(role).client.get("/")
        assert page.status_code == 200
        assert "Hôm nay không có nhắc việc nào cho vai trò của bạn." in page.get_data(as_text=True)


def test_a_close_outside_tolerance_reaches_the_pharmacist_with_the_worksheet_link(app, world):
    bottle = world.receive("1000").containers[0]
    stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id, container_id=bottle.id,
                           now=world.now)
    for _ in range(10):
        world.dose(0, "17.00")
    row = stock.close_day(world.session, world.pharmacist, location_id=world.pumps[0].id,
                          product_id=world.methadone.id, day=world.today,
                          measurement=stock.Measurement(MeasureMethod.PUMP, value=Decimal("820")), password=PASSWORD,
                          now=world.now, discrepancy_reason=DiscrepancyReason.UNKNOWN,
                          investigation_note="Chưa rõ nguyên nhân", witness=world.witness(world.nurse))
    assert not row.within_tolerance
    message = (f"The close of {world.pumps[0].name} on {world.today:%d/%m/%Y} is outside tolerance: "
               f"variance -10 ml (Unknown, under investigation).")
    worksheet = f'href="/pharmacy/reconciliation/{world.pumps[0].id}/{world.methadone.id}?day='
    pharmacist = sign_in(app, world.pharmacist).client.get("/").get_data(as_text=True)
    assert message in pharmacist and worksheet in pharmacist
    unit_head = sign_in(app, world.unit_head).client.get("/").get_data(as_text=True)
    assert message in unit_head and worksheet not in unit_head  # the worksheet is the pharmacist's page
    assert message not in sign_in(app, world.admin).client.get("/").get_data(as_text=True)
