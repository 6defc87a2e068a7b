"""The physician's task list: missed-dose blocks, orders ending, clinical tasks marked done."""

from datetime import timedelta

from dispensing.models import ClinicalTask, TaskStatus
from tests import factories
from tests.e2e.conftest import csrf_token


def test_task_list_shows_blocks_and_endings_and_tasks_get_done(as_user, session, clinic, staff, today):
    product, _lot, _safe, _pump = factories.methadone(session, clinic)
    absent = factories.patient(session, clinic, full_name="Vắng Mặt", treatment_start_date=today - timedelta(days=200))
    order = factories.signed_order(session, clinic, absent, staff["physician"], valid_from=today - timedelta(days=20),
                                   valid_until=today + timedelta(days=9))
    for days_ago in range(5, 12):
        factories.dose(session, clinic, absent, order, product, staff["nurse"],
                       business_date=today - timedelta(days=days_ago))
    ending = factories.patient(session, clinic, full_name="Hết Hạn")
    factories.signed_order(session, clinic, ending, staff["physician"], valid_from=today - timedelta(days=5),
                           valid_until=today)
    task = ClinicalTask(clinic_id=clinic.id, patient_id=absent.id, code="INTERACTION_INDUCER_STARTED", due_on=today,
                        message_vi="Bắt đầu thuốc cảm ứng: khám lại", message_en="Inducer started: review",
                        rule_table_version="default@1")
    session.add(task)
    session.flush()

    physician = as_user("physician")
    page = physician.client.get("/tasks").get_data(as_text=True)
    assert "Vắng Mặt" in page and "Hết Hạn" in page and "Bắt đầu thuốc cảm ứng: khám lại" in page
    assert "Bỏ liều 4 ngày" in page
    token = csrf_token(page)
    no_note = physician.client.post(f"/tasks/{task.id}/done", data={"csrf_token": token, "note": ""})
    assert no_note.status_code == 422 and "Hãy ghi chú" in no_note.get_data(as_text=True)
    done = physician.client.post(f"/tasks/{task.id}/done", data={"csrf_token": token, "note": "Đã khám"})
    assert done.status_code == 302
    session.expire_all()
    assert session.get(ClinicalTask, task.id).status is TaskStatus.DONE
    assert physician.client.post(f"/tasks/{task.id}/done", data={"csrf_token": token, "note": "x"}).status_code == 409
    assert physician.client.get("/tasks").get_data(as_text=True).count("Bắt đầu thuốc cảm ứng") == 0


def test_english_switch(as_user):
    physician = as_user("physician")
    token = csrf_token(physician.client.get("/tasks").get_data(as_text=True))
    physician.client.post("/lang/en", data={"csrf_token": token})
    page = physician.client.get("/tasks").get_data(as_text=True)
    assert 'lang="en"' in page and "Blocked at the counter for missed doses" in page


def test_reviewing_a_missed_dose_block_with_an_order_clears_it(as_user, session, clinic, staff, today):
    import re

    product, _lot, _safe, _pump = factories.methadone(session, clinic)
    absent = factories.patient(session, clinic, full_name="Vắng Bốn Ngày", treatment_start_date=today - timedelta(days=300))
    order = factories.signed_order(session, clinic, absent, staff["physician"], mg="80",
                                   valid_from=today - timedelta(days=20), valid_until=today + timedelta(days=9))
    for days_ago in range(5, 10):
        factories.dose(session, clinic, absent, order, product, staff["nurse"],
                       business_date=today - timedelta(days=days_ago))
    physician = as_user("physician")
    assert "Vắng Bốn Ngày" in physician.client.get("/tasks").get_data(as_text=True)
    form = physician.client.get(f"/patients/{absent.id}/orders/new").get_data(as_text=True)
    lift = re.search(r'name="lift" value="([^"]+)"', form).group(1)
    assert lift.startswith("MISSED_DOSES_SEE_PATIENT|missed-after:")
    assert "liều đề xuất 40–40 mg" in form
    signed = physician.client.post(f"/patients/{absent.id}/orders", data={
        "csrf_token": csrf_token(form), "phase": "maintenance", "part1": "40", "valid_from": today.strftime("%d/%m/%Y"),
        "valid_until": (today + timedelta(days=6)).strftime("%d/%m/%Y"), "lift": lift,
        "password": factories.PASSWORD, **_acks(physician, absent, form, today)})
    assert signed.status_code == 302, signed.get_data(as_text=True)[:2000]
    page = physician.client.get("/tasks").get_data(as_text=True)
    missed_section = page.split('id="ending-h"')[0]
    assert "Vắng Bốn Ngày" not in missed_section


def _acks(physician, patient, form, today):
    """Acknowledge whatever WARNs the preview shows (a decrease may warn), with a reason."""
    import re

    preview = physician.client.post(f"/patients/{patient.id}/orders/preview", data={
        "phase": "maintenance", "part1": "40", "valid_from": today.strftime("%d/%m/%Y"),
        "valid_until": (today + timedelta(days=6)).strftime("%d/%m/%Y")}, headers={"X-CSRFToken": csrf_token(form)})
    codes = re.findall(r'name="ack" value="([A-Z_]+)"', preview.get_data(as_text=True))
    return {"ack": codes, **{f"reason_{code}": "Khám lại sau 4 ngày vắng" for code in codes}}


def test_dosing_error_incidents_have_their_own_section(as_user, session, clinic, staff, today):
    patient = factories.patient(session, clinic, full_name="Quá Liều")
    other = factories.patient(session, clinic, full_name="Tương Tác")
    incident = ClinicalTask(clinic_id=clinic.id, patient_id=patient.id, code="DOSING_ERROR_PHYSICIAN_ALERT",
                            due_on=today, subject="dose:1", message_vi="Ghi nhận 90 mg, y lệnh 60 mg: bác sĩ khám",
                            message_en="Recorded 90 mg, ordered 60 mg: physician review",
                            rule_table_version="default@1")
    task = ClinicalTask(clinic_id=clinic.id, patient_id=other.id, code="INTERACTION_INDUCER_STARTED", due_on=today,
                        message_vi="Bắt đầu thuốc cảm ứng: khám lại", message_en="Inducer started: review",
                        rule_table_version="default@1")
    session.add_all([incident, task])
    session.flush()

    page = as_user("physician").client.get("/tasks").get_data(as_text=True)
    incidents = page[page.index('id="incidents-h"'):page.index('id="open-h"')]
    clinical = page[page.index('id="open-h"'):page.index('id="flags-h"')]
    assert "Sự cố sai liều" in incidents and "Quá Liều" in incidents and "Ghi nhận 90 mg" in incidents
    assert "Tương Tác" not in incidents
    assert "Tương Tác" in clinical and "Quá Liều" not in clinical
