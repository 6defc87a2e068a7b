"""The stock and report API over HTTP: receive with a pack scan, attach, waste, correct, close,
download registers; refusals are JSON with a reason code."""

import io
from datetime import date, timedelta
from decimal import Decimal

from openpyxl import load_workbook
from sqlalchemy import func, select

from dispensing import stock
from dispensing.models import (
    AuditEvent,
    MovementKind,
    QuarantineDecision,
    ReceiptAnomaly,
    Reconciliation,
    ReconciliationStatus,
    StockMovement,
)
from tests.stock_world import METHADONE_GTIN, PASSWORD

D = Decimal
API = "/api/v1/stock"
# Expiry dates on the real clock (GS1 dates are YYMMDD; day 28 exists in every month).
EXPIRY = (date.today() + timedelta(days=400)).replace(day=28)  # noqa: DTZ011 - a calendar date, no instant


def _delivery(world, **extra):
    return {
        "location_id": world.safe.id, "supplier": "CTCP Dược Danapha", "delivery_note_no": "PN-2026-031",
        "deliverer_name": "Nguyễn Văn Giao", "password": PASSWORD,
        "lots": [{
            "product_id": world.methadone.id, "pack_scan": f"(01){METHADONE_GTIN}(17){EXPIRY:%y%m%d}(10)DNP2606",
            "concentration_mg_per_ml": "10.000", "density_g_per_ml": "1.0400", "concentration_verified": True,
            "bottles": [{"quantity": "1000"}, {"quantity": "1000"},
                        {"quantity": "990", "nominal": "1000",
                         "anomaly": {"kind": "short_volume", "description": "Thiếu 10 ml", "expected_quantity": "1000",
                                     "found_quantity": "990"}}],
        }],
        **extra,
    }


def test_the_openapi_document_lists_the_stock_and_report_endpoints(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/stock/receipts", "/api/v1/stock/pumps/{location_id}/attach", "/api/v1/stock/waste",
                 "/api/v1/stock/corrections", "/api/v1/stock/reconciliations/close", "/api/v1/stock/balance",
                 "/api/v1/stock/destructions", "/api/v1/stock/anomalies/{anomaly_id}/countersign",
                 "/api/v1/stock/quarantine", "/api/v1/stock/quarantine/decisions",
                 "/api/v1/reports/monthly", "/api/v1/reports/daily-register", "/api/v1/reports/stock-register",
                 "/api/v1/reports/patients/{patient_id}/dose-history"):
        assert path in paths, path


def test_a_day_at_the_pump_through_the_api(client, world, sign_in):
    headers = sign_in(world.pharmacist)
    response = client.post(f"{API}/receipts", json=_delivery(world), headers=headers)
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()
    assert [line["quarantined"] for line in receipt["lines"]] == [False, False, True]
    assert receipt["anomalies"][0]["kind"] == "short_volume" and not receipt["anomalies"][0]["fully_signed"]
    lot = world.session.get(StockMovement, receipt["lines"][0]["movement_id"]).lot
    assert (lot.lot_number, lot.expiry_date, lot.gtin) == ("DNP2606", EXPIRY, METHADONE_GTIN)

    suggestions = client.get(f"{API}/bottles/suggestions", query_string={"product_id": world.methadone.id}).get_json()
    assert len(suggestions) == 2
    response = client.post(f"{API}/pumps/{world.pumps[0].id}/attach",
                           json={"label_code": suggestions[0]["label_code"]}, headers=headers)
    assert response.status_code == 201
    again = client.post(f"{API}/pumps/{world.pumps[0].id}/attach", json={"label_code": suggestions[1]["label_code"]},
                        headers=headers)
    assert (again.status_code, again.get_json()["code"]) == (409, "PUMP_HAS_OPEN_BOTTLE")

    for _ in range(5):
        world.dose(0, "7.50")
    waste = client.post(f"{API}/waste", headers=headers, json={
        "location_id": world.pumps[0].id, "quantity": "1.25", "reason": "Đổ khi lau bơm", "password": PASSWORD,
        "witness": {"username": world.nurse.username, "password": PASSWORD}})
    assert waste.status_code == 201 and waste.get_json()["witness_id"] == world.nurse.id
    balance = client.get(f"{API}/balance", query_string={"location_id": world.pumps[0].id}).get_json()
    assert D(balance["balance"]) == D("961.25")

    day = world.today.isoformat()
    close = {"location_id": world.pumps[0].id, "product_id": world.methadone.id, "business_date": day,
             "measurement": {"method": "balance", "weight_g": "1108.00", "tare_g": "150.00"}, "password": PASSWORD}
    preview = client.post(f"{API}/reconciliations/preview", headers=headers,
                          json={k: v for k, v in close.items() if k != "password"}).get_json()
    # 958 g ÷ 1.04 = 921.15 ml: 40.10 ml short, outside tolerance.
    assert (preview["measured_close"], preview["variance"], preview["within_tolerance"]) == (
        "921.15", "-40.100", False)
    refused = client.post(f"{API}/reconciliations/close", json=close, headers=headers)
    assert (refused.status_code, refused.get_json()["code"]) == (422, "DISCREPANCY_ENTRY_REQUIRED")
    close.update(discrepancy_reason="unrecorded_spill", investigation_note="Bình chứa bị rò, đã báo trưởng khoa",
                 witness={"username": world.pharmacist2.username, "password": PASSWORD})
    closed = client.post(f"{API}/reconciliations/close", json=close, headers=headers)
    assert closed.status_code == 200, closed.get_json()
    body = closed.get_json()
    assert (body["status"], body["loss"], body["within_tolerance"], body["witness_id"]) == (
        "closed", "40.100", False, world.pharmacist2.id)
    assert body["measure_detail"]["density_g_per_ml"] == "1.0400"
    assert world.session.scalar(select(Reconciliation.status).where(Reconciliation.id == body["id"])) \
        is ReconciliationStatus.CLOSED
    late = client.post(f"{API}/priming", json={"location_id": world.pumps[0].id, "quantity": "2"}, headers=headers)
    assert (late.status_code, late.get_json()["code"]) == (409, "DAY_CLOSED")
    reminders = client.get(f"{API}/reminders", query_string={"business_date": day}).get_json()
    assert any(r["kind"] == "stock_discrepancy" for r in reminders)


def test_corrections_and_anomaly_countersigning_through_the_api(client, world, sign_in):
    bottle = world.receive("1000").containers[0]
    world.receive("1000", anomaly=stock.AnomalyIn("broken_seal", "Niêm phong rách"))
    headers = sign_in(world.pharmacist)
    line = world.session.scalar(select(StockMovement).where(StockMovement.container_id == bottle.id))
    response = client.post(f"{API}/corrections", headers=headers, json={
        "movement_id": line.id, "delta": "-5", "reason": "Chai thiếu 5 ml", "password": PASSWORD})
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["kind"], response.get_json()["corrects_id"]) == ("correction", line.id)
    wrong = client.post(f"{API}/corrections", headers=headers, json={
        "movement_id": line.id, "delta": "-5", "reason": "x", "password": "not-my-password"})
    assert (wrong.status_code, wrong.get_json()["code"]) == (403, "REAUTH_FAILED")
    anomaly = world.session.scalar(select(ReceiptAnomaly))
    refused = client.post(f"{API}/anomalies/{anomaly.id}/countersign", json={"password": PASSWORD}, headers=headers)
    assert (refused.status_code, refused.get_json()["code"]) == (403, "UNIT_HEAD_ROLE_REQUIRED")
    client.delete("/api/v1/session", headers=headers)
    admin = sign_in(world.admin)  # an administrator is not head of unit either
    refused = client.post(f"{API}/anomalies/{anomaly.id}/countersign", json={"password": PASSWORD}, headers=admin)
    assert (refused.status_code, refused.get_json()["code"]) == (403, "UNIT_HEAD_ROLE_REQUIRED")
    client.delete("/api/v1/session", headers=admin)
    head = sign_in(world.unit_head)
    wrong = client.post(f"{API}/anomalies/{anomaly.id}/countersign", json={"password": "not-it"}, headers=head)
    assert (wrong.status_code, wrong.get_json()["code"]) == (403, "REAUTH_FAILED")
    signed = client.post(f"{API}/anomalies/{anomaly.id}/countersign", json={"password": PASSWORD}, headers=head)
    assert signed.status_code == 200 and signed.get_json()["fully_signed"]
    assert signed.get_json()["deliverer_organisation"] == "CTCP Dược Danapha"
    assert world.session.scalar(select(AuditEvent).where(AuditEvent.action == "stock.anomaly.signed",
                                                         AuditEvent.actor_id == world.unit_head.id)) is not None


def test_refusals_are_json_with_codes(client, world, sign_in):
    assert client.get(f"{API}/locations").status_code == 401
    headers = sign_in(world.nurse)
    refused = client.post(f"{API}/receipts", json=_delivery(world), headers=headers)
    assert (refused.status_code, refused.get_json()["code"]) == (403, "PERMISSION_DENIED")
    assert client.post(f"{API}/receipts", json=_delivery(world)).status_code == 400  # no CSRF token
    client.delete("/api/v1/session", headers=headers)
    headers = sign_in(world.pharmacist)
    bad = client.post(f"{API}/receipts", json={**_delivery(world), "lots": "many"}, headers=headers)
    assert (bad.status_code, bad.get_json()["code"]) == (422, "VALIDATION_FAILED")
    scan = _delivery(world)
    scan["lots"][0]["pack_scan"] = f"(01)08936014580029(17){EXPIRY:%y%m%d}(10)X"
    rejected = client.post(f"{API}/receipts", json=scan, headers=headers)
    assert (rejected.status_code, rejected.get_json()["code"]) == (422, "PACK_SCAN_REJECTED")
    locations = client.get(f"{API}/locations").get_json()
    assert {location["kind"] for location in locations} == {"safe", "quarantine", "counter", "pump"}


def test_reports_download_as_json_pdf_and_excel(client, world, sign_in):
    bottle = world.receive("1000").containers[0]
    headers = sign_in(world.pharmacist)
    client.post(f"{API}/pumps/{world.pumps[0].id}/attach", json={"container_id": bottle.id}, headers=headers)
    patient = world.patient()
    world.dose(0, "9.00", patient=patient)
    month = {"year": world.today.year, "month": world.today.month}
    body = client.get("/api/v1/reports/monthly", query_string=month).get_json()
    assert body["title"].startswith("BÁO CÁO SỬ DỤNG THUỐC")
    assert body["rows"][0]["issued"] == "9.000" and body["rows"][0]["closing"] == "991.000"
    pdf = client.get("/api/v1/reports/monthly", query_string={**month, "format": "pdf"})
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    xlsx = client.get("/api/v1/reports/daily-register",
                      query_string={"business_date": world.today.isoformat(), "format": "xlsx"})
    assert xlsx.status_code == 200 and "attachment" in xlsx.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(xlsx.data)).active
    assert any(row[3] == patient.full_name for row in sheet.iter_rows(values_only=True))
    justified = client.post("/api/v1/reports/monthly", headers=headers, json={
        **month, "forecasts": [{"product_id": world.methadone.id, "quantity": "100"}]})
    assert (justified.status_code, justified.get_json()["code"]) == (422, "FORECAST_JUSTIFICATION_REQUIRED")
    history = client.get(f"/api/v1/reports/patients/{patient.id}/dose-history",
                         query_string={"first": (world.today - timedelta(days=30)).isoformat(),
                                       "last": world.today.isoformat()}).get_json()
    assert history["totals"]["quantity"] == "9.000"
    register = client.get("/api/v1/reports/stock-register", query_string={
        "first": world.today.isoformat(), "last": world.today.isoformat()}).get_json()
    assert (register["summary"]["received"], register["summary"]["closing"]) == ("1000.000", "991.000")
    assert world.session.scalar(select(StockMovement.kind).where(StockMovement.dose_id.is_not(None))) \
        is MovementKind.DOSE


def test_quarantine_decisions_through_the_api(client, world, sign_in):
    broken = stock.AnomalyIn("broken_seal", "Niêm phong rách")
    released, kept = world.receive("1000", "1000", anomaly=broken).quarantined
    for anomaly in world.session.scalars(select(ReceiptAnomaly)):
        stock.countersign_anomaly(world.session, world.unit_head, anomaly.id, password=PASSWORD, now=world.now)
    headers = sign_in(world.pharmacist)
    release = {"container_id": released.id, "outcome": "release", "reason": "Niêm phong phụ rách, chai nguyên",
               "to_location_id": world.safe.id, "password": PASSWORD}

    alone = client.post(f"{API}/quarantine/decisions", json=release, headers=headers)
    assert (alone.status_code, alone.get_json()["code"]) == (422, "UNIT_HEAD_REQUIRED")
    colleague = client.post(f"{API}/quarantine/decisions", headers=headers, json={
        **release, "unit_head": {"username": world.pharmacist2.username, "password": PASSWORD}})
    assert (colleague.status_code, colleague.get_json()["code"]) == (403, "UNIT_HEAD_ROLE_REQUIRED")
    wrong = client.post(f"{API}/quarantine/decisions", headers=headers, json={
        **release, "unit_head": {"username": world.unit_head.username, "password": "not-it"}})
    assert (wrong.status_code, wrong.get_json()["code"]) == (403, "REAUTH_FAILED")
    assert world.session.scalar(select(func.count()).select_from(QuarantineDecision)) == 0

    release["unit_head"] = {"username": world.unit_head.username, "password": PASSWORD}
    decided = client.post(f"{API}/quarantine/decisions", json=release, headers=headers)
    assert decided.status_code == 201, decided.get_json()
    (body,) = decided.get_json()
    assert (body["outcome"], body["label_code"], body["quantity"], body["unit_head_id"]) == (
        "release", released.label_code, "1000.000", world.unit_head.id)
    again = client.post(f"{API}/quarantine/decisions", json=release, headers=headers)
    assert (again.status_code, again.get_json()["code"]) == (409, "QUARANTINE_ALREADY_DECIDED")
    assert world.session.scalar(select(AuditEvent).where(AuditEvent.action == "stock.quarantine.decided",
                                                         AuditEvent.actor_id == world.unit_head.id)) is not None

    listed = client.get(f"{API}/quarantine").get_json()
    assert [(item["label_code"], item["decision"]) for item in listed] == [(kept.label_code, None)]
    attached = client.post(f"{API}/pumps/{world.pumps[0].id}/attach", json={"label_code": released.label_code},
                           headers=headers)
    assert attached.status_code == 201, attached.get_json()
    refused = client.post(f"{API}/pumps/{world.pumps[1].id}/attach", json={"label_code": kept.label_code},
                          headers=headers)
    assert (refused.status_code, refused.get_json()["code"]) == (422, "STOCK_QUARANTINED")

    keep = client.post(f"{API}/quarantine/decisions", headers=headers, json={
        "label_code": kept.label_code, "outcome": "destruction", "reason": "Nghi pha loãng", "password": PASSWORD,
        "unit_head": {"username": world.unit_head.username, "password": PASSWORD}})
    assert keep.status_code == 201 and keep.get_json()[0]["release_movement_id"] is None
    listed = client.get(f"{API}/quarantine").get_json()
    assert [(item["label_code"], item["decision"]["outcome"]) for item in listed] == [(kept.label_code, "destruction")]
    # Kept for destruction: it is not returned to the supplier, and is destroyed with a witness.
    returned = client.post(f"{API}/returns", headers=headers, json={
        "location_id": world.quarantine.id, "container_id": kept.id, "reason": "Trả NCC", "password": PASSWORD})
    assert (returned.status_code, returned.get_json()["code"]) == (422, "QUARANTINE_DECISION_MISMATCH")
    assert returned.get_json()["message"].startswith("Quyết định đã ký đối với thuốc biệt trữ này")  # Vietnamese
    destroyed = client.post(f"{API}/destructions", headers=headers, json={
        "record_no": "BBH-API-1", "method": "Đốt tại lò", "reason": "Nghi pha loãng", "password": PASSWORD,
        "items": [{"location_id": world.quarantine.id, "container_id": kept.id}],
        "witness": {"username": world.pharmacist2.username, "password": PASSWORD}})
    assert destroyed.status_code == 201, destroyed.get_json()
    assert client.get(f"{API}/quarantine").get_json() == []
    client.delete("/api/v1/session", headers=headers)
    head = sign_in(world.unit_head)  # the head of unit reads quarantine but cannot decide alone
    assert client.get(f"{API}/quarantine").status_code == 200
    alone = client.post(f"{API}/quarantine/decisions", headers=head, json={
        **release, "container_id": kept.id, "unit_head": None})
    assert (alone.status_code, alone.get_json()["code"]) == (403, "PERMISSION_DENIED")
