"""Through the API alone, a physician takes a new patient from induction through titration to
maintenance, seeing the decisions at each step; nurses and pharmacists cannot sign."""

from datetime import timedelta

import pytest

from dispensing.models import AuditEvent, Order, OrderStatus
from tests import factories


def _order(api, patient_id, phase, parts, start, end):
    response = api.post(f"/patients/{patient_id}/orders", {
        "phase": phase, "parts_mg": [str(p) for p in parts], "valid_from": start.isoformat(),
        "valid_until": end.isoformat()})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _sign(api, order_id, acknowledgements=(), **extra):
    return api.post(f"/orders/{order_id}/sign", {
        "password": factories.PASSWORD, "acknowledgements": list(acknowledgements), **extra})


def _codes(decisions, outcome=None):
    return {d["code"] for d in decisions if outcome is None or d["outcome"] == outcome}


def test_induction_titration_maintenance(api_as, staff, today, session):
    physician = api_as("physician1")
    created = physician.post("/patients", {"full_name": "Nguyễn Văn Khởi", "sex": "male",
                                           "date_of_birth": "1990-04-02",
                                           "treatment_start_date": today.isoformat()})
    assert created.status_code == 201
    patient = created.get_json()
    assert patient["card_barcode"].startswith("P")
    pid = patient["id"]

    # Day 1: 35 mg is above the induction start range: evaluate shows the BLOCK, signing refuses.
    too_high = _order(physician, pid, "induction", ["35"], today, today)
    evaluation = physician.post(f"/orders/{too_high['id']}/evaluate").get_json()
    assert "INDUCTION_FIRST_DOSE_TOO_HIGH" in _codes(evaluation["decisions"], "BLOCK")
    refused = _sign(physician, too_high["id"])
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "ORDER_BLOCKED"
    assert "INDUCTION_FIRST_DOSE_TOO_HIGH" in _codes(refused.get_json()["decisions"])
    # The physician corrects the draft to 20 mg and signs.
    revised = physician.put(f"/orders/{too_high['id']}", {
        "phase": "induction", "parts_mg": ["20"], "valid_from": today.isoformat(),
        "valid_until": today.isoformat()})
    assert revised.status_code == 200
    day1 = _sign(physician, too_high["id"])
    assert day1.status_code == 200, day1.get_json()
    assert day1.get_json()["status"] == "signed"
    assert day1.get_json()["rule_table_version"].startswith("core=vn-3140")

    # Day 2 repeats 20 mg; day 3 raises to 25 mg: a WARN that needs a written reason.
    day2 = _order(physician, pid, "induction", ["20"], today + timedelta(days=1), today + timedelta(days=1))
    assert _sign(physician, day2["id"]).status_code == 200
    day3 = _order(physician, pid, "induction", ["25"], today + timedelta(days=2), today + timedelta(days=2))
    unacknowledged = _sign(physician, day3["id"])
    assert unacknowledged.status_code == 422
    assert unacknowledged.get_json()["code"] == "ACKNOWLEDGEMENT_REQUIRED"
    assert "INDUCTION_EARLY_INCREASE" in _codes(unacknowledged.get_json()["decisions"], "WARN")
    without_reason = _sign(physician, day3["id"], [{"code": "INDUCTION_EARLY_INCREASE"}])
    assert without_reason.status_code == 422
    signed = _sign(physician, day3["id"], [{"code": "INDUCTION_EARLY_INCREASE",
                                            "reason": "Còn hội chứng cai, COWS 14"}])
    assert signed.status_code == 200, signed.get_json()

    # Titration: hold 25 mg three days, then +10 mg steps at least 3 days apart.
    hold = _order(physician, pid, "titration", ["25"], today + timedelta(days=3), today + timedelta(days=5))
    assert _sign(physician, hold["id"]).status_code == 200
    too_soon = _order(physician, pid, "titration", ["35"], today + timedelta(days=4), today + timedelta(days=7))
    refused = _sign(physician, too_soon["id"])
    assert refused.status_code == 422
    assert "TITRATION_INCREASE_TOO_SOON" in _codes(refused.get_json()["decisions"], "BLOCK")
    physician.post(f"/orders/{too_soon['id']}/discard")
    step1 = _order(physician, pid, "titration", ["35"], today + timedelta(days=6), today + timedelta(days=9))
    assert _sign(physician, step1["id"]).status_code == 200
    step2 = _order(physician, pid, "titration", ["45"], today + timedelta(days=10), today + timedelta(days=13))
    assert _sign(physician, step2["id"]).status_code == 200
    # Maintenance: 30 days with explicit start and end; 31 days is refused.
    too_long = _order(physician, pid, "maintenance", ["45"], today + timedelta(days=14), today + timedelta(days=44))
    assert "ORDER_WINDOW_TOO_LONG" in _codes(physician.post(f"/orders/{too_long['id']}/evaluate").get_json()["decisions"])
    physician.post(f"/orders/{too_long['id']}/discard")
    maintenance = _order(physician, pid, "maintenance", ["45"], today + timedelta(days=14),
                         today + timedelta(days=43))
    assert _sign(physician, maintenance["id"]).status_code == 200

    # A signed order never changes.
    assert physician.put(f"/orders/{maintenance['id']}", {
        "phase": "maintenance", "parts_mg": ["50"], "valid_from": (today + timedelta(days=14)).isoformat(),
        "valid_until": (today + timedelta(days=43)).isoformat()}).get_json()["code"] == "ORDER_NOT_DRAFT"

    # The counter's view today: the induction order, the checklist not yet done.
    decision = physician.get(f"/patients/{pid}/counter-decision").get_json()
    assert decision["phase"] == "induction"
    assert decision["daily_total_mg"] == "20.000"
    assert decision["missed_days"] == 0
    assert "PREDOSE_CHECK_MISSING" in _codes(decision["decisions"])
    later = physician.get(f"/patients/{pid}/counter-decision?date={(today + timedelta(days=20)).isoformat()}")
    assert later.get_json()["phase"] == "maintenance"

    # Phase transitions are recorded with who, when and the rule-table version.
    session.expire_all()
    signed_orders = session.query(Order).filter_by(patient_id=pid, status=OrderStatus.SIGNED).count()
    assert signed_orders == 7
    transitions = [e for e in session.query(AuditEvent).filter_by(action="patient.phase_changed", entity_id=str(pid))]
    assert [e.payload for e in transitions][-1].find('"to":"maintenance"') > 0
    assert all("vn-3140" in e.payload for e in transitions)


@pytest.mark.parametrize("role", ["nurse1", "pharmacist1"])
def test_nurse_and_pharmacist_cannot_draft_or_sign(api_as, staff, today, session, clinic, role):
    patient = factories.patient(session, clinic, treatment_start_date=today)
    physician = api_as("physician1")
    draft = _order(physician, patient.id, "induction", ["20"], today, today)
    other = api_as(role)
    response = other.post(f"/orders/{draft['id']}/sign", {"password": factories.PASSWORD})
    assert response.status_code == 403
    assert response.get_json()["code"] == "PERMISSION_DENIED"
    assert other.post(f"/patients/{patient.id}/orders", {
        "phase": "induction", "parts_mg": ["20"], "valid_from": today.isoformat(),
        "valid_until": today.isoformat()}).status_code == 403
    session.expire_all()
    assert session.get(Order, draft["id"]).status is OrderStatus.DRAFT


def test_signing_needs_the_right_password(api_as, staff, today, session, clinic):
    patient = factories.patient(session, clinic, treatment_start_date=today)
    physician = api_as("physician1")
    draft = _order(physician, patient.id, "induction", ["20"], today, today)
    response = physician.post(f"/orders/{draft['id']}/sign", {"password": "not-my-password"})
    assert response.status_code == 403
    assert response.get_json()["code"] == "REAUTH_FAILED"


def test_above_ceiling_needs_a_second_physician(api_as, staff, today, session, clinic):
    from dispensing.models import Role

    factories.user(session, clinic, Role.PHYSICIAN, username="physician2")
    patient = factories.patient(session, clinic, treatment_start_date=today - timedelta(days=800))
    factories.signed_order(session, clinic, patient, staff["physician"], mg="200",
                           valid_from=today - timedelta(days=20), valid_until=today + timedelta(days=9))
    from dispensing.models import EcgResult

    session.add(EcgResult(patient_id=patient.id, taken_on=today - timedelta(days=3), qtc_ms=430,
                          recorded_by_id=staff["physician"].id))
    session.commit()
    physician = api_as("physician1")
    draft = _order(physician, patient.id, "maintenance", ["210"], today + timedelta(days=1),
                   today + timedelta(days=29))
    alone = _sign(physician, draft["id"], [{"code": "HIGH_DOSE_REVIEW", "reason": "Đã hội chẩn"}])
    assert alone.status_code == 422
    assert "DOSE_ABOVE_CEILING_COSIGN_REQUIRED" in _codes(alone.get_json()["decisions"], "BLOCK")
    wrong = _sign(physician, draft["id"], [{"code": "HIGH_DOSE_REVIEW", "reason": "Đã hội chẩn"}],
                  cosigner={"username": "physician1", "password": factories.PASSWORD})
    assert wrong.get_json()["code"] == "COSIGNER_INVALID"
    both = _sign(physician, draft["id"], [{"code": "HIGH_DOSE_REVIEW", "reason": "Đã hội chẩn"}],
                 cosigner={"username": "physician2", "password": factories.PASSWORD})
    assert both.status_code == 200, both.get_json()
    assert both.get_json()["cosigned_by_id"] is not None


def test_stop_and_suspend_are_signed_orders(api_as, staff, today, session, clinic):
    patient = factories.patient(session, clinic, treatment_start_date=today - timedelta(days=100))
    order = factories.signed_order(session, clinic, patient, staff["physician"], mg="60",
                                   valid_from=today - timedelta(days=5), valid_until=today + timedelta(days=20))
    session.commit()
    physician = api_as("physician1")
    suspended = physician.post(f"/patients/{patient.id}/suspend", {
        "from_date": (today + timedelta(days=2)).isoformat(), "until": (today + timedelta(days=4)).isoformat(),
        "reason": "Nằm viện", "password": factories.PASSWORD})
    assert suspended.status_code == 201
    during = physician.get(f"/patients/{patient.id}/counter-decision?date={(today + timedelta(days=3)).isoformat()}")
    assert during.get_json()["order_id"] is None
    assert "NO_ACTIVE_ORDER" in _codes(during.get_json()["decisions"], "BLOCK")
    after = physician.get(f"/patients/{patient.id}/counter-decision?date={(today + timedelta(days=5)).isoformat()}")
    assert after.get_json()["order_id"] == order.id
    stopped = physician.post(f"/patients/{patient.id}/stop", {
        "from_date": (today + timedelta(days=10)).isoformat(), "reason": "Chuyển cơ sở",
        "password": factories.PASSWORD})
    assert stopped.status_code == 201
    assert stopped.get_json()["supersedes_id"] == order.id
    gone = physician.get(f"/patients/{patient.id}/counter-decision?date={(today + timedelta(days=12)).isoformat()}")
    assert gone.get_json()["order_id"] is None
