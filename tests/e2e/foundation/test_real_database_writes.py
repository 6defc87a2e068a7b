"""Writes through the API on a real database (not the rolled-back test connection): the view
reads the signed-in user first, then the service begins its write transaction."""

import pytest

from dispensing.db import Database
from dispensing.models import Role
from tests import factories


@pytest.fixture
def real_client(fresh_database_url, settings):
    from web import create_app

    database = Database.from_url(fresh_database_url)
    with database.unit_of_work() as session:
        clinic = factories.clinic(session)
        factories.user(session, clinic, Role.PHYSICIAN, username="realdoc")
        session.commit()
    app = create_app({"TESTING": True}, settings=settings, database=database)
    yield app.test_client()
    database.dispose()


def test_register_and_sign_on_a_real_database(real_client):
    login = real_client.post("/api/v1/session", json={"username": "realdoc", "password": factories.PASSWORD})
    token = {"X-CSRFToken": login.get_json()["csrf_token"]}
    created = real_client.post("/api/v1/patients", json={"full_name": "Lý Văn Thật"}, headers=token)
    assert created.status_code == 201, created.get_json()
    patient_id = created.get_json()["id"]
    decision = real_client.get(f"/api/v1/patients/{patient_id}/counter-decision").get_json()
    day = decision["date"]
    draft = real_client.post(f"/api/v1/patients/{patient_id}/orders", json={
        "phase": "induction", "parts_mg": ["20"], "valid_from": day, "valid_until": day}, headers=token)
    assert draft.status_code == 201, draft.get_json()
    signed = real_client.post(f"/api/v1/orders/{draft.get_json()['id']}/sign",
                              json={"password": factories.PASSWORD}, headers=token)
    assert signed.status_code == 200, signed.get_json()
    assert signed.get_json()["status"] == "signed"
