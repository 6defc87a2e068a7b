"""Patient pages: search and scan, registration, details, photo, card, chart, ECG, medicines."""

import io
from datetime import timedelta

from sqlalchemy import select

from dispensing.models import (
    AuditEvent,
    ClinicalTask,
    ConcomitantMedication,
    EcgResult,
    Patient,
    PatientPhoto,
)
from tests import factories
from tests.e2e.conftest import csrf_token
from tests.e2e.screens.conftest import png_bytes


def test_search_by_name_without_diacritics_and_scan_opens_the_chart(as_user, patient):
    nurse = as_user("nurse")
    page = nurse.client.get("/patients?q=le thi").get_data(as_text=True)
    assert "Lê Thị Thu" in page and f"/patients/{patient.id}" in page
    scanned = nurse.client.get(f"/patients?q={patient.card_barcode}")
    assert scanned.status_code == 302 and scanned.location.endswith(f"/patients/{patient.id}")
    assert "Không có người bệnh nào khớp" in nurse.client.get("/patients?q=zzzz").get_data(as_text=True)


def test_register_a_patient(as_user, session, today):
    physician = as_user("physician")
    form = physician.client.get("/patients/new").get_data(as_text=True)
    assert 'lang="vi"' in form and "Đăng ký bệnh nhân mới" in form
    response = physician.client.post("/patients/new", data={
        "csrf_token": csrf_token(form), "full_name": "Trần Văn Mới", "date_of_birth": "02/04/1990", "sex": "male",
        "treatment_start_date": today.strftime("%d/%m/%Y"), "hiv": "y"})
    assert response.status_code == 302
    created = session.scalar(select(Patient).where(Patient.full_name == "Trần Văn Mới"))
    assert created.card_barcode.startswith("P") and created.hiv and created.date_of_birth.isoformat() == "1990-04-02"
    assert response.location.endswith(f"/patients/{created.id}#photo")


def test_registration_errors_come_back_on_the_form(as_user, session):
    physician = as_user("physician")
    form = physician.client.get("/patients/new").get_data(as_text=True)
    missing = physician.client.post("/patients/new", data={"csrf_token": csrf_token(form), "full_name": ""})
    assert missing.status_code == 422
    future = physician.client.post("/patients/new", data={
        "csrf_token": csrf_token(form), "full_name": "Sinh Tương Lai", "date_of_birth": "01/01/2999"})
    assert future.status_code == 422
    assert "Ngày sinh không được ở tương lai" in future.get_data(as_text=True) or "tương lai" in future.get_data(as_text=True)
    bad_code = physician.client.post("/patients/new", data={
        "csrf_token": csrf_token(form), "full_name": "Mã Sai", "code": "có dấu cách"})
    assert bad_code.status_code == 422
    assert session.scalar(select(Patient).where(Patient.full_name.in_(["Sinh Tương Lai", "Mã Sai"]))) is None


def test_pharmacist_reads_the_chart_but_cannot_register(as_user, patient):
    pharmacist = as_user("pharmacist")
    assert pharmacist.client.get(f"/patients/{patient.id}").status_code == 200
    assert pharmacist.client.get("/patients/new").status_code == 403
    assert pharmacist.client.get("/tasks").status_code == 403


def test_edit_details(as_user, session, patient):
    nurse = as_user("nurse")
    form = nurse.client.get(f"/patients/{patient.id}/edit").get_data(as_text=True)
    response = nurse.client.post(f"/patients/{patient.id}/edit", data={
        "csrf_token": csrf_token(form), "full_name": "Lê Thị Thu Hà", "phone": "0912345678", "tb": "y"})
    assert response.status_code == 302
    session.expire_all()
    assert (patient.full_name, patient.phone, patient.tb) == ("Lê Thị Thu Hà", "0912345678", True)


def test_photo_upload_and_refusal(as_user, session, patient):
    nurse = as_user("nurse")
    chart = nurse.client.get(f"/patients/{patient.id}").get_data(as_text=True)
    token = csrf_token(chart)
    refused = nurse.client.post(f"/patients/{patient.id}/photo", data={
        "csrf_token": token, "photo": (io.BytesIO(b"not an image"), "x.png")}, content_type="multipart/form-data")
    assert refused.status_code == 422
    assert "JPEG, PNG hoặc WebP" in refused.get_data(as_text=True) or "ảnh" in refused.get_data(as_text=True)
    saved = nurse.client.post(f"/patients/{patient.id}/photo", data={
        "csrf_token": token, "photo": (io.BytesIO(png_bytes()), "a.png")}, content_type="multipart/form-data")
    assert saved.status_code == 302
    photo = nurse.client.get(f"/patients/{patient.id}/photo")
    assert photo.status_code == 200 and photo.mimetype == "image/jpeg"
    # The webcam path: same field, JSON answer.
    webcam = nurse.client.post(f"/patients/{patient.id}/photo", data={
        "csrf_token": token, "photo": (io.BytesIO(png_bytes()), "webcam.jpg")},
        content_type="multipart/form-data", headers={"X-Requested-With": "fetch"})
    assert webcam.status_code == 200 and webcam.get_json()["ok"]
    assert session.scalar(select(PatientPhoto).where(PatientPhoto.patient_id == patient.id)) is not None


def test_card_carries_the_barcode(as_user, patient):
    page = as_user("nurse").client.get(f"/patients/{patient.id}/card").get_data(as_text=True)
    assert f'data-value="{patient.card_barcode}"' in page
    assert "THẺ ĐIỀU TRỊ METHADONE" in page and patient.full_name in page
    assert "<?xml" not in page


def test_chart_shows_orders_plot_ecgs_and_medicines(as_user, session, clinic, staff, patient, today):
    product, _lot, _safe, _pump = factories.methadone(session, clinic)
    order = factories.signed_order(session, clinic, patient, staff["physician"], mg="45",
                                   valid_from=today - timedelta(days=10), valid_until=today + timedelta(days=5))
    for days_ago in (1, 2, 5):
        factories.dose(session, clinic, patient, order, product, staff["nurse"],
                       business_date=today - timedelta(days=days_ago))
    session.add(EcgResult(patient_id=patient.id, taken_on=today - timedelta(days=3), qtc_ms=462,
                          recorded_by_id=staff["physician"].id))
    session.flush()
    page = as_user("physician").client.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert 'class="dose-chart"' in page
    assert page.count('class="dose"') >= 3 and 'class="missed"' in page and 'class="ecg high"' in page
    assert "Duy trì, 45 mg/ngày" in page
    assert (today - timedelta(days=3)).strftime("%d/%m/%Y") in page
    assert len(page.encode()) < 150_000


def test_record_ecg_and_medicines_from_the_chart(as_user, session, patient, today):
    physician = as_user("physician")
    token = csrf_token(physician.client.get(f"/patients/{patient.id}").get_data(as_text=True))
    bad = physician.client.post(f"/patients/{patient.id}/ecgs", data={
        "csrf_token": token, "taken_on": today.strftime("%d/%m/%Y"), "qtc_ms": "950"})
    assert bad.status_code == 422
    ok = physician.client.post(f"/patients/{patient.id}/ecgs", data={
        "csrf_token": token, "taken_on": today.strftime("%d/%m/%Y"), "qtc_ms": "431"})
    assert ok.status_code == 302
    assert session.scalar(select(EcgResult.qtc_ms).where(EcgResult.patient_id == patient.id)) == 431

    started = physician.client.post(f"/patients/{patient.id}/medications", data={
        "csrf_token": token, "drug_name": "Efavirenz", "started_on": today.strftime("%d/%m/%Y")})
    assert started.status_code == 302
    medication = session.scalar(select(ConcomitantMedication).where(ConcomitantMedication.patient_id == patient.id))
    assert session.scalar(select(ClinicalTask).where(ClinicalTask.patient_id == patient.id)) is not None
    chart = physician.client.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert "Efavirenz" in chart and "Đánh dấu đã xong" in chart
    too_early = physician.client.post(f"/patients/medications/{medication.id}/stop", data={
        "csrf_token": token, "stopped_on": (today - timedelta(days=30)).strftime("%d/%m/%Y")})
    assert too_early.status_code == 422
    stopped = physician.client.post(f"/patients/medications/{medication.id}/stop", data={
        "csrf_token": token, "stopped_on": today.strftime("%d/%m/%Y")})
    assert stopped.status_code == 302
    assert session.query(AuditEvent).filter_by(action="medication.stopped").count() == 1


def test_nurse_cannot_record_medicines(as_user, patient, today):
    nurse = as_user("nurse")
    token = csrf_token(nurse.client.get(f"/patients/{patient.id}").get_data(as_text=True))
    response = nurse.client.post(f"/patients/{patient.id}/medications", data={
        "csrf_token": token, "drug_name": "x", "started_on": today.strftime("%d/%m/%Y")})
    assert response.status_code == 403


def test_other_clinics_patient_is_not_shown(as_user, session):
    stranger = factories.patient(session, factories.clinic(session))
    assert as_user("physician").client.get(f"/patients/{stranger.id}").status_code == 403
    assert as_user("physician").client.get("/patients/999999").status_code == 404
