"""The counter through the HTTP API: a nurse identifies, checks and authorises; the counter's agent
(authenticated by its token, over the agent API) delivers on the pty pump simulator; the nurse
polls, resolves an unknown dose with a witness; refusals are JSON with stable codes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from devices.clock import VirtualClock
from devices.ne1000 import Ne1000Pump
from devices.registry import CounterConfig, CounterDevices
from devices.service import CounterDeviceService, JobRefused
from devices.simulators import Ne1000Simulator
from dispensing import counter as counter_use_cases
from dispensing import stock
from dispensing.clock import utcnow
from dispensing.models import Role
from tests import counter_world, factories
from tests.e2e.orders.conftest import Api
from tests.integration.counter.conftest import PUMP_SETTINGS


@pytest.fixture
def world(session, settings):
    world = counter_world.build(session, settings=settings, now=utcnow())
    world.admin_user = factories.user(session, world.clinic, Role.ADMIN)
    session.commit()
    return world


class FlaskClientJobs:
    """``DoseJobs`` over the agent API through Flask's test client (what devices.agent does over
    real HTTP)."""

    def __init__(self, app, token: str):
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def _call(self, method, path, body=None):
        response = self.client.open(f"/api/v1/agent{path}", method=method, json=body, headers=self.headers)
        if 400 <= response.status_code < 500:
            raise JobRefused(response.get_json()["code"])
        assert response.status_code < 500, response.get_data(as_text=True)
        return response

    def setup(self):
        return self._call("GET", "/setup").get_json()

    def recovered(self, pump_counter_ml, note):
        body = {"pump_counter_ml": None if pump_counter_ml is None else str(pump_counter_ml), "note": note}
        return self._call("POST", "/recovery", body).get_json()["unknown"]

    def next_job(self):
        response = self._call("GET", "/jobs/next")
        return None if response.status_code == 204 else response.get_json()

    def progress(self, dose_id, state):
        self._call("POST", f"/doses/{dose_id}/progress", {"state": state})

    def result(self, dose_id, result):
        self._call("POST", f"/doses/{dose_id}/result", result)

    def wait(self, seconds):
        return None


@pytest.fixture
def agent(app, world):
    admin = Api(app.test_client(), world.admin_user.username)
    response = admin.post(f"/counter/counters/{world.counters[0].id}/agent-token")
    assert response.status_code == 201, response.get_json()
    token = response.get_json()["token"]
    clock = VirtualClock(start=utcnow())
    sim = Ne1000Simulator(clock=clock).start()

    def open_pump(setup, service_clock):
        pump = Ne1000Pump.connect(sim.port, PUMP_SETTINGS, device_id=f"{setup['counter_code']}/pump",
                                  clock=service_clock)
        return CounterDevices(counter=CounterConfig(counter_id=setup["counter_code"], name="agent"), pump=pump)

    service = CounterDeviceService(FlaskClientJobs(app, token), clock=clock, open_pump=open_pump, poll_s=0,
                                   retry_s=0.01)
    service.token, service.sim = token, sim
    service.start_up()
    yield service
    service.stop()
    sim.close()
    assert sim.errors == []


def card(patient) -> str:
    return "]C0" + patient.card_barcode  # as a serial scanner with AIM identifiers sends it


def test_a_dose_from_scan_to_ledger_through_the_api(app, world, agent):
    patient = world.patient("80")
    nurse = Api(app.test_client(), world.nurse.username)
    counter_id = world.counters[0].id

    panel = nurse.post("/counter/identify", {"scan": card(patient), "counter_id": counter_id})
    assert panel.status_code == 200, panel.get_json()
    body = panel.get_json()
    assert body["patient"]["code"] == patient.code and body["patient"]["photo_url"] is None
    assert body["parts"] == [{"part_no": 1, "mg": "80.000", "ml": "8.00", "not_before": None,
                              "status": "needs_assessment", "dose_id": None}]
    assert body["pump"]["ready"] and body["pump"]["concentration_mg_per_ml"] == "10.000" and body["pump"]["agent"]
    assert [a["action"] for a in body["actions"]] == ["record_assessment"]
    assert {"code": "PREDOSE_CHECK_MISSING", "outcome": "BLOCK"}.items() <= body["decisions"][0].items()
    assert body["decisions"][0]["message_vi"] and body["decisions"][0]["message_en"]

    assessed = nurse.post(f"/counter/patients/{patient.id}/assessments", {"drowsy": False})
    assert assessed.status_code == 201 and assessed.get_json()["positive"] is False

    request = {"patient_id": patient.id, "counter_id": counter_id, "part_no": 1, "idempotency_key": "api-dose-0001"}
    created = nurse.post("/counter/doses", request)
    assert created.status_code == 201, created.get_json()
    dose = created.get_json()["doses"][0]
    assert (dose["state"], dose["planned_mg"], dose["planned_ml"]) == ("requested", "80.000", "8.00")
    again = nurse.post("/counter/doses", request)
    assert again.status_code == 200 and again.get_json()["doses"][0]["id"] == dose["id"]
    second = nurse.post("/counter/doses", {**request, "counter_id": world.counters[1].id,
                                           "idempotency_key": "api-dose-0002"})
    assert second.status_code == 409 and second.get_json()["code"] == "ALREADY_DOSED"

    assert agent.step()

    status = nurse.get(f"/counter/doses/{dose['id']}").get_json()
    assert (status["state"], status["delivered_ml"], status["in_flight"]) == ("completed", "8.00", False)
    assert [e["state"] for e in status["events"]] == ["requested", "programmed", "running", "completed"]
    assert world.pump_balance() == Decimal("992.000")
    panel = nurse.post("/counter/identify", {"patient_id": patient.id, "counter_id": counter_id}).get_json()
    assert panel["parts"][0]["status"] == "dosed"


def test_an_unknown_dose_is_resolved_over_http_by_nurse_and_witness(app, world, agent):
    patient = world.patient("60")
    world.assess(patient)
    nurse = Api(app.test_client(), world.nurse.username)
    dose = nurse.post("/counter/doses", {"patient_id": patient.id, "counter_id": world.counters[0].id,
                                         "part_no": 1, "idempotency_key": "api-dose-0003"}).get_json()["doses"][0]
    agent.sim.power_reset_at(Decimal("2.00"))
    agent.step()
    status = nurse.get(f"/counter/doses/{dose['id']}").get_json()
    assert (status["state"], status["device_reading_ml"]) == ("unknown", "1.75")  # last seen before the reset

    refused = nurse.post(f"/counter/doses/{dose['id']}/resolve", {
        "outcome": "partial", "delivered_ml": "2.00", "password": counter_world.PASSWORD,
        "witness": {"username": world.nurse.username, "password": counter_world.PASSWORD}})
    assert refused.status_code == 422 and refused.get_json()["code"] == "COSIGNER_IS_SIGNER"
    resolved = nurse.post(f"/counter/doses/{dose['id']}/resolve", {
        "outcome": "partial", "delivered_ml": "2.00", "password": counter_world.PASSWORD,
        "witness": {"username": world.witness.username, "password": counter_world.PASSWORD}})
    assert resolved.status_code == 200, resolved.get_json()
    assert (resolved.get_json()["state"], resolved.get_json()["delivered_ml"]) == ("partial", "2.00")
    assert world.pump_balance() == Decimal("998.000")


def test_scans_that_are_not_a_known_card_get_a_clear_message(app, world):
    nurse = Api(app.test_client(), world.nurse.username)
    cases = [
        ("]d20108936014580011172706301012345", 422, "SCAN_NOT_A_PATIENT_CARD"),
        ("hello", 422, "SCAN_UNRECOGNISED"),
        ("]d20108936014580012172706301012345", 422, "SCAN_INVALID_GTIN_CHECK_DIGIT"),
        ("", 422, "SCAN_EMPTY"),
        ("P999999", 404, "CARD_UNKNOWN"),
    ]
    for scan, status, code in cases:
        response = nurse.post("/counter/identify", {"scan": scan})
        assert (response.status_code, response.get_json()["code"]) == (status, code), scan
        assert response.get_json()["message"]


def test_writes_need_the_csrf_token_and_the_right_role(app, world):
    patient = world.patient()
    world.assess(patient)
    body = {"patient_id": patient.id, "counter_id": world.counters[0].id, "part_no": 1,
            "idempotency_key": "api-dose-0009"}
    nurse = Api(app.test_client(), world.nurse.username)
    assert nurse.client.post("/api/v1/counter/doses", json=body).status_code == 400  # no X-CSRFToken
    pharmacist = Api(app.test_client(), world.pharmacist.username)
    denied = pharmacist.post("/counter/doses", body)
    assert (denied.status_code, denied.get_json()["code"]) == (403, "PERMISSION_DENIED")
    blocked_patient = world.patient()
    blocked = nurse.post("/counter/doses", {**body, "patient_id": blocked_patient.id,
                                            "idempotency_key": "api-dose-0010"})
    assert blocked.status_code == 422 and blocked.get_json()["code"] == "DOSE_BLOCKED"
    assert blocked.get_json()["decisions"][0]["code"] == "PREDOSE_CHECK_MISSING"


def test_agents_need_their_token_and_only_touch_their_counter(app, world, agent):
    patient = world.patient()
    world.assess(patient)
    other = world.authorize(patient, counter_index=1).dose
    client = app.test_client()

    assert client.get("/api/v1/agent/setup").status_code == 401
    bad = client.get("/api/v1/agent/setup", headers={"Authorization": "Bearer mmt-agent.1.guess"})
    assert (bad.status_code, bad.get_json()["code"]) == (401, "AGENT_TOKEN_INVALID")
    headers = {"Authorization": f"Bearer {agent.token}"}
    assert client.get("/api/v1/agent/jobs/next", headers=headers).status_code == 204  # counter 2's dose is not ours
    touched = client.post(f"/api/v1/agent/doses/{other.id}/progress", json={"state": "programmed"}, headers=headers)
    assert (touched.status_code, touched.get_json()["code"]) == (403, "DOSE_OTHER_COUNTER")
    setup = client.get("/api/v1/agent/setup", headers=headers).get_json()
    assert (setup["counter_code"], setup["driver"], setup["ceiling_ml"]) == (world.counters[0].code, "ne1000", "30.00")


def test_the_worklist_and_the_openapi_document(app, world):
    world.assess(world.patient())
    nurse = Api(app.test_client(), world.nurse.username)
    worklist = nurse.get(f"/counter/worklist?counter_id={world.counters[0].id}").get_json()
    assert worklist["counts"] == {"to_come": 1} and worklist["rows"][0]["status"] == "to_come"
    paths = app.test_client().get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/counter/worklist", "/api/v1/counter/identify", "/api/v1/counter/doses",
                 "/api/v1/counter/doses/{dose_id}/resolve", "/api/v1/counter/unit-doses",
                 "/api/v1/agent/jobs/next", "/api/v1/agent/doses/{dose_id}/result"):
        assert path in paths


def test_take_home_through_the_api_with_label_and_return(app, world, agent):
    world.clinic.take_home_enabled, world.clinic.rules_take_home = True, "us-2024"
    patient = world.patient("60", treatment_start_date=world.today.replace(year=world.today.year - 2),
                            take_home_commitment_on=world.today.replace(year=world.today.year - 1))
    world.order(patient).take_home_plan = {"max_days": 1}
    world.session.commit()
    world.assess(patient)
    nurse = Api(app.test_client(), world.nurse.username)
    created = nurse.post("/counter/take-home", {
        "patient_id": patient.id, "counter_id": world.counters[0].id,
        "first_day": (world.today + timedelta(days=1)).isoformat(), "days": 1, "idempotency_key": "take-home-api-1"})
    assert created.status_code == 201, created.get_json()
    dose = created.get_json()["doses"][0]
    assert dose["kind"] == "take_home" and dose["label_code"].startswith("T")
    assert agent.step()

    label = nurse.get(f"/counter/doses/{dose['id']}/label.pdf")
    assert label.status_code == 200 and label.mimetype == "application/pdf" and label.data.startswith(b"%PDF")
    returned = nurse.post("/counter/take-home/returns", {"scan": "]C0" + dose["label_code"], "empty": True})
    assert returned.status_code == 201, returned.get_json()
    again = nurse.post("/counter/take-home/returns", {"scan": dose["label_code"], "empty": True})
    assert (again.status_code, again.get_json()["code"]) == (409, "ALREADY_RETURNED")


def test_a_unit_dose_medicine_through_the_api_by_gs1_pack_scan(app, world):
    gtin = "08936014580011"
    world.bup.gtin = gtin
    world.session.commit()
    expiry = world.today + timedelta(days=200)
    received = stock.receive_delivery(world.session, world.pharmacist, stock.DeliveryIn(
        location_id=world.safe.id, supplier="S", delivery_note_no="PN-U1", deliverer_name="D",
        lots=(stock.LotIn(product_id=world.bup.id, lot_number="L77", expiry_date=expiry,
                          loose_quantity=Decimal("50"), gtin=gtin),)), password=counter_world.PASSWORD,
        now=world.now - timedelta(hours=3))
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.shelf.id, lot_id=received.receipt.lines[0].lot_id,
                         quantity=Decimal("20"), now=world.now - timedelta(hours=2))
    patient = world.patient()
    world.assess(patient)
    order = counter_use_cases.sign_medication_order(
        world.session, world.physician, patient_id=patient.id, product_id=world.bup.id,
        units_per_administration=Decimal("1"), administrations_per_day=1, valid_from=world.today,
        valid_until=None, password=counter_world.PASSWORD, now=world.now)
    nurse = Api(app.test_client(), world.nurse.username)
    scan = f"]d201{gtin}17{expiry:%y%m%d}10L77"

    given = nurse.post("/counter/unit-doses", {
        "patient_id": patient.id, "medication_order_id": order.id, "counter_id": world.counters[0].id,
        "scan": scan, "units": "1", "idempotency_key": "unit-dose-api-1"})

    assert given.status_code == 201, given.get_json()
    assert (given.get_json()["doses"][0]["state"], given.get_json()["doses"][0]["delivered_units"]) == (
        "completed", "1.000")
    wrong = nurse.post("/counter/unit-doses", {
        "patient_id": patient.id, "medication_order_id": order.id, "counter_id": world.counters[0].id,
        "scan": world.patient().card_barcode, "units": "1", "idempotency_key": "unit-dose-api-2"})
    assert (wrong.status_code, wrong.get_json()["code"]) == (422, "PACK_SCAN_REJECTED")
    orders = nurse.get(f"/counter/patients/{patient.id}/medication-orders").get_json()
    assert orders[0]["product_name"] == world.bup.name
