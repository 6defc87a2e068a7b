"""A nurse's counter in a real browser, in Vietnamese, on the demo clinic with the counters' device
services running as in single-PC mode (``run.py``: one thread per counter driving the simulated
NE-1000 pump of the demo database): choose the counter once, scan a card by typing it and Enter as
a keyboard-wedge scanner does, answer the checklist with the keys 1/2, dispense with F9 and watch
the pump reach 'completed'; a blocked patient shows the reason and no way to dispense."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from dispensing.models import Clinic, Counter, Dose, DoseState, Patient, Role, User

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def device_services(live_server):
    """The demo counters' device services in this process, as ``run.py`` starts them."""
    from dispensing.rulebook import RuleBook
    from dispensing.settings import load_settings
    from web.counter_service import start_in_process_services, stop_in_process_services

    settings = load_settings(environ={}, overrides={"env": "testing", "secret_key": "x" * 40})
    services = start_in_process_services(live_server.database, RuleBook(settings.rules_dir), poll_s=0.2)
    assert {s.name for s in services} >= {"Q1"}, "the demo counters have no pump service"
    yield services
    stop_in_process_services()


def _worklist_row(live_server, status: str, *, induction: bool = False):
    """A patient of the demo clinic whose methadone row has ``status`` at counter Q1 today (in
    induction or not: induction adds the COWS score to the checklist)."""
    from dispensing import counter
    from dispensing.rulebook import RuleBook
    from dispensing.settings import load_settings

    rules_dir = load_settings(environ={}, overrides={"env": "testing", "secret_key": "x" * 40}).rules_dir
    with live_server.database.unit_of_work() as session:
        nurse = session.scalar(select(User).where(User.username == "dieuduong1"))
        assert nurse.has_role(Role.NURSE)
        q1 = session.scalar(select(Counter).where(Counter.code == "Q1"))
        rule_set = RuleBook(rules_dir).for_clinic(session.get(Clinic, nurse.clinic_id))
        found = counter.worklist(session, nurse, rule_set, counter_id=q1.id)
        rows = [r for r in found.rows if r.what == "methadone" and r.status == status and not r.not_before
                and (r.phase == "induction") == induction]
        assert rows, f"the demo has no patient with status {status} today"
        row = rows[-1]
        card = session.get(Patient, row.patient_id).card_barcode
        return row, card


def _choose_q1(page):
    page.goto("/counter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Chọn quầy làm việc")
    page.get_by_label(re.compile(r"Quầy 1 \(Q1\)")).check()
    page.get_by_role("button", name="Làm việc tại quầy này").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Quầy 1")
    # Typing before the page's script has focused the scan field would lose the keys.
    expect(page.get_by_label("Quét thẻ, hoặc gõ tên hay mã bệnh nhân")).to_be_focused()


def test_nurse_scans_checks_and_dispenses_with_the_keyboard(page, login, shot, live_server, device_services):
    row, card = _worklist_row(live_server, "needs_assessment")
    login(page, "dieuduong1")
    page.get_by_role("navigation", name="Trình đơn chính").get_by_role("link", name="Quầy").click()
    _choose_q1(page)
    scan = page.get_by_label("Quét thẻ, hoặc gõ tên hay mã bệnh nhân")
    expect(scan).to_be_focused()
    expect(page.locator("#queue [data-group=due]")).to_contain_text(row.patient_name)
    shot(page, "counter-ready")

    # A wrong code first: a clear message, the scan field keeps the focus.
    page.keyboard.type("]C0XX-123")
    page.keyboard.press("Enter")
    expect(page.locator("#panel [role=alert]")).to_contain_text("Mã vừa quét không phải thẻ")
    expect(scan).to_be_focused()
    expect(scan).to_have_value("")

    # The card, typed as a keyboard-wedge scanner types it, then Enter.
    page.keyboard.type(card)
    page.keyboard.press("Enter")
    panel = page.locator("#patient-panel")
    expect(panel.get_by_role("heading", level=2)).to_have_text(row.patient_name)
    expect(panel.locator("[data-outcome]")).to_have_text("CẦN KIỂM TRA")
    expect(panel.locator("table.dose-today")).to_contain_text(" ml")
    shot(page, "patient-checklist")

    # The checklist with the keys: 1 = no, five times, then Enter saves it.
    first = panel.locator("[data-question] input").first
    expect(first).to_be_focused()
    for _ in range(5):
        page.keyboard.press("1")
    expect(panel.locator("[data-checklist-submit]")).to_be_focused()
    page.keyboard.press("Enter")
    dispense = page.locator("[data-dispense-button]")
    expect(dispense).to_contain_text("Cấp liều")
    expect(page.locator("#patient-panel [data-outcome]")).to_have_text("ĐƯỢC CẤP")
    expect(scan).to_be_focused()
    shot(page, "ready-to-dispense")

    # F9 dispenses; the pump's progress is polled until it is completed.
    page.keyboard.press("F9")
    expect(page.locator("[data-dose]").first).to_be_visible()
    expect(page.locator("[data-dispense-button]")).to_have_count(0)
    shot(page, "pump-running")
    done = page.locator('[data-dose][data-state="completed"]')
    expect(done).to_be_visible(timeout=30_000)
    expect(done).to_contain_text("Hoàn tất")
    expect(done).to_contain_text("Đã cấp:")
    expect(page.locator("#queue [data-group=dosed]")).to_contain_text(row.patient_name)
    shot(page, "dose-completed")

    with live_server.database.unit_of_work() as session:
        doses = session.scalars(select(Dose).where(Dose.patient_id == row.patient_id,
                                                   Dose.business_date == live_server.today)).all()
        assert [(d.state, d.delivered_ml == d.planned_ml) for d in doses] == [(DoseState.COMPLETED, True)]


def test_a_blocked_patient_shows_the_reason_and_no_dispense_action(page, login, shot, live_server):
    row, card = _worklist_row(live_server, "blocked")
    login(page, "dieuduong2")
    _choose_q1(page)
    page.keyboard.type(card)
    page.keyboard.press("Enter")
    panel = page.locator("#patient-panel")
    expect(panel.get_by_role("heading", level=2)).to_have_text(row.patient_name)
    expect(panel.locator("[data-outcome]")).to_have_text("BỊ CHẶN")
    reason = panel.locator(".decision.block").first
    expect(reason).to_be_visible()
    expect(reason).to_contain_text("Chặn")
    expect(panel.locator("[data-dispense-button]")).to_have_count(0)
    expect(panel.locator("form[data-checklist]")).to_have_count(0)
    page.keyboard.press("F9")  # nothing to dispense: nothing happens
    expect(panel.locator("[data-dose]")).to_have_count(0)
    shot(page, "blocked-patient")
