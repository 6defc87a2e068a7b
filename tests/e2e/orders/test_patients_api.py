"""Patients through the API: register, search, photo, flags, ECG, medications with follow-ups,
and the counter's decision following the clinic's missed-dose table."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from PIL import Image

from dispensing.models import ClinicalTask, PatientFlag
from tests import factories


def test_register_search_and_update(api_as, staff, today):
    nurse = api_as("nurse1")
    created = nurse.post("/patients", {"full_name": "Trần Thị Ánh", "sex": "female", "hiv": True})
    assert created.status_code == 201
    body = created.get_json()
    assert body["hiv"] is True and body["status"] == "active"
    assert [p["id"] for p in nurse.get("/patients?q=tran thi anh").get_json()] == [body["id"]]
    assert [p["id"] for p in nurse.get("/patients?q=Ánh").get_json()] == [body["id"]]
    assert [p["id"] for p in nurse.get(f"/patients?q={body['card_barcode']}").get_json()] == [body["id"]]
    assert [p["id"] for p in nurse.get(f"/patients?q={body['code'].lower()}").get_json()] == [body["id"]]
    updated = nurse.patch(f"/patients/{body['id']}", {"pregnant": True, "tb": True})
    assert updated.get_json()["pregnant"] is True
    assert nurse.patch(f"/patients/{body['id']}", {"code": "X"}).status_code == 422


@pytest.mark.parametrize(
    "payload, code",
    [
        ({}, "VALIDATION_FAILED"),
        ({"full_name": "   "}, "PATIENT_NAME_REQUIRED"),
        ({"full_name": "A", "date_of_birth": "2999-01-01"}, "PATIENT_BIRTH_DATE_INVALID"),
        ({"full_name": "A", "sex": "robot"}, "VALIDATION_FAILED"),
        ({"full_name": "A", "code": "bad code!"}, "PATIENT_CODE_INVALID"),
    ],
)
def test_bad_registrations_are_4xx_with_a_reason(api_as, staff, payload, code):
    response = api_as("nurse1").post("/patients", payload)
    assert 400 <= response.status_code < 500
    assert response.get_json()["code"] == code


def test_duplicate_code_is_a_conflict(api_as, staff):
    nurse = api_as("nurse1")
    assert nurse.post("/patients", {"full_name": "A", "code": "HN-1"}).status_code == 201
    response = nurse.post("/patients", {"full_name": "B", "code": "HN-1"})
    assert response.status_code == 409
    assert response.get_json()["code"] == "PATIENT_CODE_TAKEN"


def test_photo_is_re_encoded_and_served(api_as, staff, session, clinic):
    patient = factories.patient(session, clinic)
    session.commit()
    nurse = api_as("nurse1")
    image = Image.new("RGB", (1200, 900), (200, 120, 40))
    png = io.BytesIO()
    image.save(png, format="PNG")
    assert nurse.put(f"/patients/{patient.id}/photo", data=png.getvalue(),
                     content_type="image/png").status_code == 204
    served = nurse.get(f"/patients/{patient.id}/photo")
    assert served.mimetype == "image/jpeg"
    assert max(Image.open(io.BytesIO(served.data)).size) == 480
    garbage = nurse.put(f"/patients/{patient.id}/photo", data=b"not an image", content_type="image/png")
    assert garbage.status_code == 422
    assert garbage.get_json()["code"] == "PHOTO_INVALID"


def test_ecg_and_interacting_drug_raise_task_and_watch_flag(api_as, staff, session, clinic, today):
    patient = factories.patient(session, clinic)
    session.commit()
    physician = api_as("physician1")
    assert physician.post(f"/patients/{patient.id}/ecgs", {"taken_on": today.isoformat(), "qtc_ms": 455}).status_code == 201
    assert physician.post(f"/patients/{patient.id}/ecgs", {"taken_on": today.isoformat(), "qtc_ms": 95}).get_json()["code"] == "ECG_QTC_OUT_OF_RANGE"
    started = physician.post(f"/patients/{patient.id}/medications", {"drug_name": "Rifampicin",
                                                                    "started_on": today.isoformat()})
    assert started.status_code == 201
    session.expire_all()
    tasks = session.query(ClinicalTask).filter_by(patient_id=patient.id).all()
    flags = session.query(PatientFlag).filter_by(patient_id=patient.id).all()
    assert [t.code for t in tasks] == ["INTERACTION_LEVELS_LOWERED"]
    assert tasks[0].due_on == today + timedelta(days=7)
    assert [f.code for f in flags] == ["INTERACTION_WATCH"]
    assert (flags[0].ends_on - flags[0].starts_on).days == 13
    stopped = physician.post(f"/patients/medications/{started.get_json()['id']}/stop",
                             {"stopped_on": (today + timedelta(days=1)).isoformat()})
    assert stopped.status_code == 200
    session.expire_all()
    codes = sorted(t.code for t in session.query(ClinicalTask).filter_by(patient_id=patient.id))
    assert codes == ["INTERACTION_LEVELS_LOWERED", "INTERACTION_LEVELS_RAISED"]
    follow_ups = physician.get(f"/patients/{patient.id}/follow-ups").get_json()
    assert {f["code"] for f in follow_ups} >= {"INTERACTION_WATCH", "INTERACTION_LEVELS_RAISED"}
    # A nurse may record an ECG but not a medication change.
    assert api_as("nurse1").post(f"/patients/{patient.id}/medications", {
        "drug_name": "efavirenz", "started_on": today.isoformat()}).status_code == 403


def test_switching_missed_dose_table_changes_the_suggestion(api_as, staff, session, clinic, today):
    """A 4-day miss on 100 mg: 40 mg under the default table, 50 mg under METAPHI."""
    product, lot, _safe, _pump = factories.methadone(session, clinic)
    patient = factories.patient(session, clinic, treatment_start_date=today - timedelta(days=400))
    order = factories.signed_order(session, clinic, patient, staff["physician"], mg="100",
                                   valid_from=today - timedelta(days=20), valid_until=today + timedelta(days=9))
    for back in range(5, 12):  # last dose 5 days ago: days -4 … -1 missed
        factories.dose(session, clinic, patient, order, product, staff["nurse"],
                       business_date=today - timedelta(days=back))
    session.commit()
    nurse = api_as("nurse1")
    default = nurse.get(f"/patients/{patient.id}/counter-decision").get_json()
    assert default["missed_days"] == 4
    assert default["blocked"] is True
    assert "MISSED_DOSES_SEE_PATIENT" in {d["code"] for d in default["decisions"]}
    assert {k: Decimal(v) for k, v in default["suggested_mg"].items()} == {"min_mg": 40, "max_mg": 40}
    clinic.rules_missed_dose = "metaphi"
    session.commit()
    metaphi = nurse.get(f"/patients/{patient.id}/counter-decision").get_json()
    assert {k: Decimal(v) for k, v in metaphi["suggested_mg"].items()} == {"min_mg": 50, "max_mg": 50}
    assert metaphi["rule_set_version"] != default["rule_set_version"]
