"""The order form: live decisions from the preview endpoint (nothing written), signing with the
password, acknowledgements with reasons, refusals shown on the page with the draft kept."""

import re
from datetime import timedelta

from sqlalchemy import func, select

from dispensing.models import Order, OrderAcknowledgement, OrderStatus, Phase
from tests import factories
from tests.e2e.conftest import csrf_token


def _form(today, mg, **extra):
    values = {"phase": "induction", "part1": mg, "part2": "", "part3": "", "valid_from": today.strftime("%d/%m/%Y"),
              "valid_until": today.strftime("%d/%m/%Y"), "reason": ""}
    values.update(extra)
    return values


def _orders(session, patient):
    return session.scalar(select(func.count()).select_from(Order).where(Order.patient_id == patient.id))


def test_preview_shows_decisions_and_writes_nothing(as_user, session, patient, today):
    physician = as_user("physician")
    page = physician.client.get(f"/patients/{patient.id}/orders/new").get_data(as_text=True)
    assert f'hx-post="/patients/{patient.id}/orders/preview"' in page and "htmx.min.js" in page
    token = csrf_token(page)
    headers = {"X-CSRFToken": token, "HX-Request": "true"}
    blocked = physician.client.post(f"/patients/{patient.id}/orders/preview", data=_form(today, "35"), headers=headers)
    assert blocked.status_code == 200
    html = blocked.get_data(as_text=True)
    assert 'data-outcome="BLOCK"' in html and 'data-code="INDUCTION_FIRST_DOSE_TOO_HIGH"' in html
    assert "<html" not in html  # a fragment for htmx to swap in
    cleared = physician.client.post(f"/patients/{patient.id}/orders/preview", data=_form(today, "20"), headers=headers)
    assert "INDUCTION_FIRST_DOSE_TOO_HIGH" not in cleared.get_data(as_text=True)
    invalid = physician.client.post(f"/patients/{patient.id}/orders/preview", data=_form(today, "20,55"),
                                    headers=headers)
    assert invalid.status_code == 422 and 'role="alert"' in invalid.get_data(as_text=True)
    assert _orders(session, patient) == 0


def test_preview_needs_the_csrf_token_and_a_physician(as_user, patient, today):
    physician = as_user("physician")
    assert physician.client.post(f"/patients/{patient.id}/orders/preview", data=_form(today, "20")).status_code == 400
    nurse = as_user("nurse")
    token = csrf_token(nurse.client.get(f"/patients/{patient.id}").get_data(as_text=True))
    assert nurse.client.post(f"/patients/{patient.id}/orders/preview", data=_form(today, "20"),
                             headers={"X-CSRFToken": token}).status_code == 403


def test_sign_refusals_keep_one_draft_then_sign(as_user, session, patient, today):
    physician = as_user("physician")
    url = f"/patients/{patient.id}/orders"
    token = csrf_token(physician.client.get(f"{url}/new").get_data(as_text=True))

    no_password = physician.client.post(url, data={**_form(today, "20"), "csrf_token": token})
    assert no_password.status_code == 422 and "Nhập mật khẩu" in no_password.get_data(as_text=True)
    assert _orders(session, patient) == 0

    blocked = physician.client.post(url, data={**_form(today, "35"), "csrf_token": token,
                                               "password": factories.PASSWORD})
    assert blocked.status_code == 422
    html = blocked.get_data(as_text=True)
    assert "INDUCTION_FIRST_DOSE_TOO_HIGH" in html
    draft_id = int(re.search(r'name="draft_id" value="(\d+)"', html).group(1))

    wrong = physician.client.post(url, data={**_form(today, "20"), "csrf_token": token, "password": "wrong-one",
                                             "draft_id": str(draft_id)})
    assert wrong.status_code == 403 and "Mật khẩu không đúng" in wrong.get_data(as_text=True)
    assert f'name="draft_id" value="{draft_id}"' in wrong.get_data(as_text=True)

    signed = physician.client.post(url, data={**_form(today, "20"), "csrf_token": token,
                                              "password": factories.PASSWORD, "draft_id": str(draft_id)})
    assert signed.status_code == 302 and signed.location.endswith(f"/patients/{patient.id}#orders")
    orders = session.scalars(select(Order).where(Order.patient_id == patient.id)).all()
    assert [(o.id, o.status, o.daily_total_mg) for o in orders] == [(draft_id, OrderStatus.SIGNED, 20)]
    assert "Đã ký y lệnh" in physician.client.get(f"/patients/{patient.id}").get_data(as_text=True)


def test_a_warning_needs_its_box_and_reason(as_user, session, clinic, staff, patient, today):
    factories.signed_order(session, clinic, patient, staff["physician"], mg="20", phase=Phase.INDUCTION,
                           valid_from=today, valid_until=today)
    physician = as_user("physician")
    url = f"/patients/{patient.id}/orders"
    tomorrow = today + timedelta(days=1)
    form = _form(tomorrow, "25")
    page = physician.client.get(f"{url}/new").get_data(as_text=True)
    token = csrf_token(page)
    assert f'value="{tomorrow.strftime("%d/%m/%Y")}"' in page  # the next order starts after today's

    unacknowledged = physician.client.post(url, data={**form, "csrf_token": token, "password": factories.PASSWORD})
    assert unacknowledged.status_code == 422
    html = unacknowledged.get_data(as_text=True)
    assert 'name="ack" value="INDUCTION_EARLY_INCREASE"' in html and 'name="reason_INDUCTION_EARLY_INCREASE"' in html
    draft_id = re.search(r'name="draft_id" value="(\d+)"', html).group(1)

    no_reason = physician.client.post(url, data={**form, "csrf_token": token, "password": factories.PASSWORD,
                                                 "draft_id": draft_id, "ack": "INDUCTION_EARLY_INCREASE"})
    assert no_reason.status_code == 422
    assert 'value="INDUCTION_EARLY_INCREASE" checked' in no_reason.get_data(as_text=True)

    signed = physician.client.post(url, data={
        **form, "csrf_token": token, "password": factories.PASSWORD, "draft_id": draft_id,
        "ack": "INDUCTION_EARLY_INCREASE", "reason_INDUCTION_EARLY_INCREASE": "Còn hội chứng cai"})
    assert signed.status_code == 302
    ack = session.scalar(select(OrderAcknowledgement).where(OrderAcknowledgement.order_id == int(draft_id)))
    assert (ack.reason_code, ack.reason) == ("INDUCTION_EARLY_INCREASE", "Còn hội chứng cai")


def test_drafts_can_be_continued_and_discarded(as_user, session, patient, today):
    physician = as_user("physician")
    url = f"/patients/{patient.id}/orders"
    token = csrf_token(physician.client.get(f"{url}/new").get_data(as_text=True))
    refused = physician.client.post(url, data={**_form(today, "35"), "csrf_token": token, "password": "x" * 9})
    draft_id = int(re.search(r'name="draft_id" value="(\d+)"', refused.get_data(as_text=True)).group(1))
    tasks = physician.client.get("/tasks").get_data(as_text=True)
    assert f"/orders/{draft_id}/edit" in tasks
    again = physician.client.get(f"/orders/{draft_id}/edit").get_data(as_text=True)
    assert 'value="35"' in again and f'name="draft_id" value="{draft_id}"' in again
    discarded = physician.client.post(f"/orders/{draft_id}/discard", data={"csrf_token": token})
    assert discarded.status_code == 302
    assert session.get(Order, draft_id).status is OrderStatus.DISCARDED
    assert physician.client.get(f"/orders/{draft_id}/edit").status_code == 404
