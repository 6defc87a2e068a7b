"""The counter screen over HTTP (Flask test client, as htmx sends its requests): a scan that is not a
card gets a Vietnamese message and a 4xx, a blocked patient gets the reason and no dispense
button, the same dispense form posted twice makes one dose, a pharmacist cannot dispense, and the
checklist, the queue and the dose progress answer what the database holds."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dispensing.clock import utcnow
from dispensing.models import Assessment, Dose, DoseState, Phase
from tests import counter_world
from tests.e2e.conftest import Browser

HTMX = {"HX-Request": "true"}


@pytest.fixture
def world(session, settings):
    # The server reads the real clock: build the clinic's day around now.
    return counter_world.build(session, settings=settings, now=utcnow())


class Counter:
    """A signed-in user at a counter, posting as htmx does (CSRF token in X-CSRFToken)."""

    def __init__(self, app, user, counter_id: int | None):
        self.browser = Browser(app.test_client())
        assert self.browser.login(user.username, counter_world.PASSWORD).status_code == 302
        if counter_id is not None:
            response = self.browser.post("/counter/choose", {"counter_id": counter_id}, token_from="/counter")
            assert response.status_code == 302, response.get_data(as_text=True)
        page = self.browser.client.get("/counter")
        self.page = page.get_data(as_text=True)
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', self.page).group(1)

    def post(self, path: str, data: dict | None = None):
        return self.browser.client.post(path, data=data or {}, headers={**HTMX, "X-CSRFToken": self.token})

    def get(self, path: str):
        return self.browser.client.get(path, headers=HTMX)

    def scan(self, value: str):
        return self.post("/counter/scan", {"scan": value})


def _text(response) -> str:
    return response.get_data(as_text=True)


def _key(html: str) -> str:
    return re.search(r'name="key" value="([^"]+)"', html).group(1)


def _doses(session, patient) -> list[Dose]:
    session.expire_all()
    return list(session.scalars(select(Dose).where(Dose.patient_id == patient.id)))


def test_the_counter_is_chosen_once_per_session(app, world):
    nurse = Counter(app, world.nurse, None)
    assert "Chọn quầy làm việc" in nurse.page and world.counters[0].name in nurse.page
    refused = nurse.browser.post("/counter/choose", {"counter_id": 999999}, token_from="/counter")
    assert refused.status_code == 422 and "Không tìm thấy quầy" in _text(refused)
    chosen = Counter(app, world.nurse, world.counters[1].id)
    assert 'id="scan"' in chosen.page and world.counters[1].name in chosen.page
    assert _text(chosen.browser.client.get("/counter")).count('id="scan"') == 1  # remembered


@pytest.mark.parametrize(("scan", "message"), [
    ("]C0%%%%", "Mã vừa quét không phải thẻ"),  # a scanner's code that is none of ours
    ("]C0P999999", "Không có người bệnh nào mang thẻ này"),  # a card of nobody here
    ("]d2010893601458001117271231" + "10LOT1", "Đây không phải thẻ người bệnh"),  # a medicine pack
    ("   ", "Chưa quét được gì"),
    ("không ai tên này", "Không có người bệnh nào có thẻ, mã hoặc tên này"),
])
def test_a_scan_that_is_not_a_patient_card_gets_a_message_and_a_4xx(app, world, scan, message):
    nurse = Counter(app, world.nurse, world.counters[0].id)
    response = nurse.scan(scan)
    assert 400 <= response.status_code < 500, _text(response)
    assert message in _text(response)
    assert 'role="alert"' in _text(response)


def test_scan_and_search_open_the_panel_with_mg_ml_and_missed_days(app, world, session):
    patient = world.patient("80", full_name="Phạm Thị Quầy")
    nurse = Counter(app, world.nurse, world.counters[0].id)
    for typed in ("]C0" + patient.card_barcode, patient.card_barcode.lower(), patient.code, "pham thi quay"):
        response = nurse.scan(typed)
        html = _text(response)
        assert response.status_code == 200, (typed, html)
        assert "Phạm Thị Quầy" in html and "80 mg" in html and "8,00 ml" in html, typed
        assert 'data-missed>0<' in html
    # Before the checklist: the checklist, no dispense button yet.
    assert "data-checklist" in html and "data-dispense-button" not in html
    assert 'data-outcome="CHECK"' in html


def test_checklist_needs_every_answer_then_the_dispense_button_appears(app, world, session):
    patient = world.patient("60")
    nurse = Counter(app, world.nurse, world.counters[0].id)
    incomplete = nurse.post(f"/counter/patients/{patient.id}/checklist", {"drowsy": "0"})
    assert incomplete.status_code == 422 and "Trả lời mọi câu hỏi" in _text(incomplete)
    assert session.scalar(select(func.count()).select_from(Assessment).where(
        Assessment.patient_id == patient.id)) == 0
    answers = {name: "0" for name in ("drowsy", "slurred_speech", "pinpoint_pupils", "alcohol_smell", "unsteady_gait")}
    done = nurse.post(f"/counter/patients/{patient.id}/checklist", answers)
    assert done.status_code == 200, _text(done)
    assert "data-dispense-button" in _text(done) and 'data-outcome="ALLOW"' in _text(done)


def test_a_blocked_patient_shows_the_reason_and_no_dispense_action(app, world, session):
    patient = world.patient("60")
    world.assess(patient, drowsy=True)  # a positive pre-dose check blocks today's dose
    nurse = Counter(app, world.nurse, world.counters[0].id)
    html = _text(nurse.scan(patient.card_barcode))
    assert 'data-outcome="BLOCK"' in html and 'data-code="PREDOSE_CHECK_POSITIVE"' in html
    assert "BỊ CHẶN" in html
    assert "data-dispense-button" not in html and "/dispense" not in html and "data-checklist" not in html
    # Posting the dispense form anyway is refused by the service, and nothing is written.
    refused = nurse.post(f"/counter/patients/{patient.id}/dispense", {"part_no": "1", "key": "blocked-key-0001"})
    assert refused.status_code == 422 and "chặn" in _text(refused)
    assert _doses(session, patient) == []


def test_the_same_dispense_form_posted_twice_makes_exactly_one_dose(app, world, session):
    patient = world.patient("80")
    world.assess(patient)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    panel = _text(nurse.scan(patient.card_barcode))
    key = _key(panel)
    form = {"part_no": "1", "key": key}
    first = nurse.post(f"/counter/patients/{patient.id}/dispense", form)
    assert first.status_code == 201, _text(first)
    again = nurse.post(f"/counter/patients/{patient.id}/dispense", form)
    assert again.status_code == 200, _text(again)
    [dose] = _doses(session, patient)
    assert (dose.state, dose.planned_ml, dose.counter_id) == (DoseState.REQUESTED, Decimal("8"), world.counters[0].id)
    # The panel now polls the dose, and offers no second dispense.
    assert f'hx-get="/counter/doses/{dose.id}"' in _text(again) and "data-dispense-button" not in _text(again)
    # Another form (a new key) for the same slot is refused: still one dose.
    other = nurse.post(f"/counter/patients/{patient.id}/dispense", {"part_no": "1", "key": key[:-4] + "ffff"})
    assert other.status_code == 409 and "đã được cấp" in _text(other)
    assert len(_doses(session, patient)) == 1
    # A bad key is a message, not a dose.
    bad = nurse.post(f"/counter/patients/{world.patient('50').id}/dispense", {"part_no": "1", "key": "x"})
    assert bad.status_code == 422


def test_a_pharmacist_cannot_dispense(app, world, session):
    patient = world.patient("60")
    world.assess(patient)
    pharmacist = Counter(app, world.pharmacist, world.counters[0].id)
    panel = _text(pharmacist.scan(patient.card_barcode))
    assert "data-dispense-button" not in panel  # the service offers the action to nurses only
    refused = pharmacist.post(f"/counter/patients/{patient.id}/dispense", {"part_no": "1", "key": "pharm-key-0001"})
    assert refused.status_code == 403 and "không có quyền" in _text(refused)
    assert _doses(session, patient) == []


def test_dose_progress_and_an_unknown_dose_resolved_with_a_witness(app, world, session):
    from dispensing import counter as counter_use_cases

    patient = world.patient("60")
    world.assess(patient)
    dose = world.authorize(patient).dose
    nurse = Counter(app, world.nurse, world.counters[0].id)
    polling = nurse.get(f"/counter/doses/{dose.id}")
    assert polling.status_code == 200 and "Đang chờ bơm" in _text(polling)
    assert 'hx-trigger="load delay:700ms"' in _text(polling) and "HX-Trigger" not in polling.headers
    # The pump service dies mid-dose: the dose becomes UNKNOWN.
    counter_use_cases.record_progress(session, world.counters[0].id, dose.id, "programmed", now=world.now)
    counter_use_cases.recover_counter(session, world.counters[0].id, pump_counter_ml=None, now=world.now)
    final = nurse.get(f"/counter/doses/{dose.id}")
    assert "hx-trigger" not in _text(final) and "counter-dose-finished" in final.headers["HX-Trigger"]
    panel = _text(nurse.scan(patient.card_barcode))
    assert f'action="/counter/doses/{dose.id}/resolve"' in panel and "data-dispense-button" not in panel
    form = {"outcome": "partial", "delivered_ml": "3,5", "password": counter_world.PASSWORD,
            "witness_username": world.nurse.username, "witness_password": counter_world.PASSWORD}
    same_person = nurse.post(f"/counter/doses/{dose.id}/resolve", form)
    assert same_person.status_code == 422 and "người khác" in _text(same_person)
    assert _doses(session, patient)[0].state is DoseState.UNKNOWN
    form["witness_username"] = world.witness.username
    resolved = nurse.post(f"/counter/doses/{dose.id}/resolve", form)
    assert resolved.status_code == 200, _text(resolved)
    [stored] = _doses(session, patient)
    assert (stored.state, stored.delivered_ml, stored.witness_id) == (DoseState.PARTIAL, Decimal("3.5"), world.witness.id)
    # The partial dose offers its remainder as a linked dose.
    html = _text(resolved)
    assert f'action="/counter/doses/{dose.id}/complete"' in html
    completed = nurse.post(f"/counter/doses/{dose.id}/complete", {"key": _key(html.split(f"/counter/doses/{dose.id}/complete")[-1])})
    assert completed.status_code == 201, _text(completed)
    linked = [d for d in _doses(session, patient) if d.linked_dose_id == dose.id]
    assert len(linked) == 1 and linked[0].planned_ml == Decimal("2.5")


def test_the_queue_groups_todays_patients(app, world, session):
    due = world.patient("60", full_name="Người Chờ Uống")
    blocked = world.patient("60", full_name="Người Bị Chặn")
    world.assess(blocked, alcohol_smell=True)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    response = nurse.get("/counter/queue")
    assert response.status_code == 200
    html = _text(response)
    due_group = html.split('data-group="due"')[1].split("</details>")[0]
    blocked_group = html.split('data-group="blocked"')[1].split("</details>")[0]
    assert "Người Chờ Uống" in due_group and "Người Bị Chặn" not in due_group
    assert "Người Bị Chặn" in blocked_group and "kiểm tra trước khi uống dương tính" in blocked_group
    assert f"/counter/patients/{due.id}" in due_group


def test_counter_pages_are_accessible(app, world):
    from tests.e2e.screens.test_accessibility import _check

    patient = world.patient("20", phase=Phase.INDUCTION)
    nurse = Counter(app, world.nurse, None)
    _check(nurse.page, "/counter (choose)")
    nurse = Counter(app, world.nurse, world.counters[0].id)
    _check(nurse.page, "/counter")
    page = _text(nurse.browser.client.get(f"/counter?patient={patient.id}"))
    assert "data-checklist" in page and 'id="cows"' in page, page[page.find('id="panel"'):][:3000]
    _check(page, "/counter?patient=…")
    # Without htmx (no script) a scan answers the whole page, not a fragment.
    whole = nurse.browser.client.post("/counter/scan", data={"scan": patient.card_barcode, "csrf_token": nurse.token})
    assert whole.status_code == 200 and "<html" in _text(whole) and patient.full_name in _text(whole)


def test_polling_does_not_keep_an_idle_counter_signed_in(app, world):
    nurse = Counter(app, world.nurse, world.counters[0].id)
    client = nurse.browser.client
    with client.session_transaction() as stored:
        seen = float(stored["last_seen"]) - 60  # the nurse's last key press, a minute ago
        stored["last_seen"] = seen
    assert client.get("/counter/queue", headers={**HTMX, "X-Idle-Poll": "1"}).status_code == 200
    with client.session_transaction() as stored:
        assert float(stored["last_seen"]) == seen  # the queue's own refresh is not activity
        stored["last_seen"] = seen - app.config["MMT_SETTINGS"].session_idle_minutes * 60
    expired = client.get("/counter/queue", headers={**HTMX, "X-Idle-Poll": "1",
                                                     "HX-Current-URL": "http://localhost/counter"})
    assert expired.status_code == 401 and expired.headers["HX-Redirect"] == "/login?next=/counter"
    assert client.get("/counter").status_code == 302  # signed out
