"""Pharmacist screens over HTTP: every page renders for a pharmacist and is refused to a nurse;
receipts from a pack scan (an invalid GTIN is refused, nothing written); bottles to a pump; the
reconciliation worksheet with the balance read from the MT-SICS simulator, the close within
tolerance, the close outside tolerance blocked until the discrepancy workflow is complete, and the
locked day; register and report downloads."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dispensing.clock import business_date, utcnow
from dispensing.models import (
    Container,
    ContainerAttachment,
    Device,
    DeviceKind,
    Receipt,
    ReceiptAnomaly,
    Reconciliation,
    ReconciliationStatus,
    StockMovement,
)
from tests import stock_world
from tests.e2e.conftest import Browser, csrf_token
from tests.factories import PASSWORD

# A valid GS1 pack code (GTIN 08936014580028 = the world's methadone, expiry 30/06/2027, lot L-7781)
# and the same with the GTIN's check digit wrong.
PACK_SCAN = "(01)08936014580028(17)270630(10)L-7781"
BAD_GTIN_SCAN = "(01)08936014580027(17)270630(10)L-7781"


@pytest.fixture
def world(session):
    world = stock_world.build(session)
    balance = Device(clinic_id=world.clinic.id, counter_id=world.counters[0].id, code="BAL-1",
                     kind=DeviceKind.BALANCE, driver="mt-sics", port_url="sim://mt-sics")
    session.add(balance)
    session.commit()
    world.balance = balance
    return world


@pytest.fixture
def today(world):
    return business_date(utcnow(), world.clinic.timezone)


def _sign_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    assert browser.login(user.username, PASSWORD).status_code == 302
    return browser


@pytest.fixture
def pharmacist(app, world):
    return _sign_in(app, world.pharmacist)


def _count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def _stocked(world, *bottles: str):
    """Bottles of methadone received into the safe today (the real clock: the web's business day)."""
    return world.receive(*bottles, now=utcnow())


def _on_pump(world, browser, pump=0) -> str:
    """Receive a 1000 ml bottle and attach it to a pump through the page; returns its label."""
    label = _stocked(world, "1000").containers[0].label_code
    response = browser.post("/pharmacy/transfers/attach", {"location_id": world.pumps[pump].id, "label_code": label},
                            token_from="/pharmacy/transfers")
    assert response.status_code == 302, _text(response)
    return label


def _day(today) -> str:
    return today.strftime("%d/%m/%Y")


# ---- access -------------------------------------------------------------------------------------


def _pages(world, today):
    return ["/pharmacy/stock", "/pharmacy/receipts/new", "/pharmacy/transfers", "/pharmacy/reconciliation",
            f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}?day={_day(today)}",
            "/pharmacy/reports"]


def test_every_page_renders_for_a_pharmacist(pharmacist, world, today, session):
    received = _stocked(world, "1000", "500")
    label = received.containers[0].label_code
    for path in _pages(world, today):
        response = pharmacist.client.get(path)
        assert response.status_code == 200, path
    stock_page = _text(pharmacist.client.get("/pharmacy/stock"))
    assert label in stock_page and "1.500 ml" in stock_page  # Vietnamese thousands mark, from the ledger
    assert 'class="fefo-first">' + label in stock_page
    receipt = pharmacist.client.get(f"/pharmacy/receipts/{received.receipt.id}")
    assert receipt.status_code == 200 and '<svg class="barcode"' in receipt.get_data(as_text=True)


def test_the_menu_shows_the_pharmacy_entries_to_a_pharmacist_only(app, world):
    pharmacist = _sign_in(app, world.pharmacist)
    nurse = _sign_in(app, world.nurse)
    assert 'href="/pharmacy/reconciliation"' in pharmacist.client.get("/").get_data(as_text=True)
    assert 'href="/pharmacy/reconciliation"' not in nurse.client.get("/").get_data(as_text=True)


def test_a_nurse_is_refused_every_page_and_every_action(app, world, today, session):
    _stocked(world, "1000")
    nurse = _sign_in(app, world.nurse)
    for path in _pages(world, today) + ["/pharmacy/reports/daily?format=pdf"]:
        assert nurse.client.get(path).status_code == 403, path
    token = csrf_token(nurse.client.get("/").get_data(as_text=True))
    before = _count(session, StockMovement)
    for path, data in [
        ("/pharmacy/transfers/attach", {"location_id": world.pumps[0].id, "label_code": "C1"}),
        (f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}/close",
         {"day": _day(today), "method": "cylinder", "value": "1000", "password": PASSWORD}),
        ("/pharmacy/receipts", {"supplier": "X", "password": PASSWORD}),
    ]:
        assert nurse.client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert _count(session, StockMovement) == before
    assert _count(session, Reconciliation) == 0


# ---- receipts -------------------------------------------------------------------------------------


def _receipt_form(world, **changes) -> dict:
    data = {
        "location_id": world.safe.id, "supplier": "CTCP Dược Danapha", "delivery_note_no": "PN-0091",
        "deliverer_name": "Nguyễn Văn Giao", "lot_count": "1", "lot0_product_id": world.methadone.id,
        "lot0_pack_scan": PACK_SCAN, "lot0_concentration": "10", "lot0_density": "1,04", "lot0_verified": "1",
        "lot0_bottles": "4", "lot0_b0_quantity": "1000", "lot0_b1_quantity": "1000",
        "lot0_b2_quantity": "990", "lot0_b2_nominal": "1000", "lot0_b2_anomaly": "short_volume",
        "lot0_b2_description": "Thiếu 10 ml", "password": PASSWORD, "action": "save",
    }
    data.update(changes)
    return data


def test_a_delivery_from_a_pack_scan_books_labelled_bottles_and_quarantines_the_anomaly(pharmacist, world, session):
    response = pharmacist.post("/pharmacy/receipts", _receipt_form(world), token_from="/pharmacy/receipts/new")
    assert response.status_code == 302, _text(response)
    receipt = session.scalar(select(Receipt).where(Receipt.delivery_note_no == "PN-0091"))
    assert [line.movement.quantity for line in receipt.lines] == [Decimal(1000), Decimal(1000), Decimal(990)]
    assert [line.quarantined for line in receipt.lines] == [False, False, True]
    lot = receipt.lines[0].lot
    assert (lot.lot_number, lot.gtin, lot.expiry_date.isoformat()) == ("L-7781", "08936014580028", "2027-06-30")
    assert lot.density_g_per_ml == Decimal("1.04")
    [anomaly] = receipt.anomalies
    assert anomaly.kind.value == "short_volume" and anomaly.receiver_id == world.pharmacist.id
    page = pharmacist.client.get(response.headers["Location"]).get_data(as_text=True)
    assert page.count('<svg class="barcode"') == 3
    for line in receipt.lines:
        assert line.container.label_code in page


def test_the_scan_field_fills_the_lot_or_says_why_not(pharmacist, world):
    token = pharmacist.token("/pharmacy/receipts/new")
    good = pharmacist.client.post("/pharmacy/receipts/scan", data={"lot": "0", "lot0_pack_scan": PACK_SCAN},
                                  headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert good.status_code == 200
    assert 'value="L-7781"' in good.get_data(as_text=True) and 'value="30/06/2027"' in good.get_data(as_text=True)
    bad = pharmacist.client.post("/pharmacy/receipts/scan", data={"lot": "0", "lot0_pack_scan": BAD_GTIN_SCAN},
                                 headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert bad.status_code == 422
    assert "GTIN" in _text(bad)
    assert 'class="field-error scan-error"' in bad.get_data(as_text=True)


def test_a_receipt_with_an_invalid_gtin_is_refused_and_nothing_is_written(pharmacist, world, session):
    before = (_count(session, Receipt), _count(session, StockMovement), _count(session, Container))
    for changes in ({"lot0_pack_scan": BAD_GTIN_SCAN},
                    {"lot0_pack_scan": "", "lot0_lot_number": "L-1", "lot0_expiry": "30/06/2027",
                     "lot0_gtin": "08936014580027"}):
        response = pharmacist.post("/pharmacy/receipts", _receipt_form(world, **changes),
                                   token_from="/pharmacy/receipts/new")
        assert response.status_code == 422, _text(response)
        page = _text(response)
        assert 'id="form-error"' in page and "GTIN" in page
        assert 'value="CTCP Dược Danapha"' in page  # the form comes back as typed
    assert (_count(session, Receipt), _count(session, StockMovement), _count(session, Container)) == before


@pytest.mark.parametrize("changes, status", [
    ({"lot0_b0_quantity": "một lít"}, 422),
    ({"lot0_b0_quantity": "1.000"}, 422),  # a thousand, or one? refused rather than guessed
    ({"lot0_expiry": "31/02/2027", "lot0_pack_scan": "", "lot0_lot_number": "L-9"}, 422),
    ({"password": ""}, 422),
    ({"password": "wrong-password"}, None),
    ({"lot0_b1_label": "C12", "lot0_b0_label": "C12"}, None),  # the second bottle's label is taken mid-way
    ({"lot0_b2_anomaly": "meteor"}, 422),
    ({"location_id": "999999"}, 404),
])
def test_bad_receipt_input_gives_a_message_and_writes_nothing(pharmacist, world, session, changes, status):
    before = (_count(session, Receipt), _count(session, StockMovement), _count(session, ReceiptAnomaly))
    response = pharmacist.post("/pharmacy/receipts", _receipt_form(world, **changes),
                               token_from="/pharmacy/receipts/new")
    assert 400 <= response.status_code < 500, _text(response)
    if status is not None:
        assert response.status_code == status
    assert 'id="form-error"' in response.get_data(as_text=True)
    assert (_count(session, Receipt), _count(session, StockMovement), _count(session, ReceiptAnomaly)) == before


def test_more_lot_and_bottle_rows_write_nothing(pharmacist, world, session):
    response = pharmacist.post("/pharmacy/receipts", _receipt_form(world, action="add_lot"),
                               token_from="/pharmacy/receipts/new")
    assert response.status_code == 200 and 'name="lot1_product_id"' in response.get_data(as_text=True)
    response = pharmacist.post("/pharmacy/receipts", _receipt_form(world, action="add_bottles_0"),
                               token_from="/pharmacy/receipts/new")
    assert 'name="lot0_b7_quantity"' in response.get_data(as_text=True)
    assert _count(session, Receipt) == 0


# ---- bottles and transfers -------------------------------------------------------------------------


def test_fefo_bottle_goes_to_the_pump_once_and_waste_needs_a_witness(pharmacist, world, session):
    early = world.receive("1000", lot_number="EARLY", expiry=world.default_expiry.replace(month=1), now=utcnow())
    _stocked(world, "1000")
    page = _text(pharmacist.client.get("/pharmacy/transfers"))
    first = early.containers[0].label_code
    assert f'<strong id="fefo-next">{first}</strong>' in page
    label = _on_pump(world, pharmacist, pump=0)
    attachment = session.scalar(select(ContainerAttachment).where(ContainerAttachment.detached_at.is_(None)))
    assert attachment.container.label_code == label
    second = pharmacist.post("/pharmacy/transfers/attach", {"location_id": world.pumps[0].id, "label_code": first},
                             token_from="/pharmacy/transfers")
    assert second.status_code == 409 and 'role="alert"' in second.get_data(as_text=True)
    assert _count(session, ContainerAttachment) == 1

    before = _count(session, StockMovement)
    refused = pharmacist.post("/pharmacy/transfers/waste", {
        "location_id": world.pumps[0].id, "label_code": label, "quantity": "5", "reason": "Đổ khi lắp chai",
        "password": PASSWORD}, token_from="/pharmacy/transfers")
    assert refused.status_code == 422 and 'value="Đổ khi lắp chai"' in refused.get_data(as_text=True)
    assert _count(session, StockMovement) == before
    done = pharmacist.post("/pharmacy/transfers/waste", {
        "location_id": world.pumps[0].id, "label_code": label, "quantity": "5", "reason": "Đổ khi lắp chai",
        "password": PASSWORD, "witness_username": world.pharmacist2.username, "witness_password": PASSWORD},
        token_from="/pharmacy/transfers")
    assert done.status_code == 302, _text(done)
    waste = session.scalar(select(StockMovement).order_by(StockMovement.id.desc()).limit(1))
    assert waste.kind.value == "waste" and waste.quantity == Decimal(5) and waste.witness_id == world.pharmacist2.id


def test_unknown_bottle_label_is_a_message_not_an_error(pharmacist, world):
    response = pharmacist.post("/pharmacy/transfers/move", {
        "from_location_id": world.safe.id, "to_location_id": world.quarantine.id, "label_code": "C999999"},
        token_from="/pharmacy/transfers")
    assert response.status_code == 404 and 'role="alert"' in response.get_data(as_text=True)


# ---- reconciliation ----------------------------------------------------------------------------------


def _close(browser, world, location, today, **data):
    return browser.post(f"/pharmacy/reconciliation/{location.id}/{world.methadone.id}/close",
                        {"day": _day(today), "password": PASSWORD, **data},
                        token_from=f"/pharmacy/reconciliation/{location.id}/{world.methadone.id}?day={_day(today)}")


def test_read_balance_fills_the_weight_and_a_close_within_tolerance_records_the_loss(pharmacist, world, today,
                                                                                     session, database):
    from web.pharmacy_balance import simulator_for

    _stocked(world, "1000")  # density 1.0400 g/ml
    simulator_for(world.balance).load_g = Decimal("1039.48")  # 999.50 ml on the pan: 0.5 ml short
    path = f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}"
    token = pharmacist.token(f"{path}?day={_day(today)}")
    reading = _read_balance(pharmacist, database, world, today, token)
    assert reading.status_code == 200, _text(reading)
    assert 'name="weight_g" value="1039,48"' in _text(reading)
    assert reading.headers["HX-Retarget"] == "#balance-reading"
    preview = pharmacist.client.post(f"{path}/preview", data={
        "day": _day(today), "method": "balance", "weight_g": "1039,48"}, headers={"X-CSRFToken": token})
    assert 'data-within="true"' in preview.get_data(as_text=True) and "0,5 ml" in _text(preview)

    closed = _close(pharmacist, world, world.safe, today, method="balance", weight_g="1039,48")
    assert closed.status_code == 302, _text(closed)
    row = session.scalar(select(Reconciliation))
    assert row.status is ReconciliationStatus.CLOSED and row.measure_method.value == "balance"
    assert (row.measured_close, row.loss, row.within_tolerance) == (Decimal("999.50"), Decimal("0.5"), True)
    page = _text(pharmacist.client.get(closed.headers["Location"]))
    assert 'class="card locked-record"' in page and 'class="close-form"' not in page
    assert "1.039,48 g" in page  # the weighing, the Vietnamese way
    again = _close(pharmacist, world, world.safe, today, method="cylinder", value="999,5")
    assert again.status_code == 409
    assert _count(session, Reconciliation) == 1


def test_an_unreadable_balance_is_a_message(pharmacist, world, today, database):
    from web.pharmacy_balance import simulator_for

    _stocked(world, "1000")
    simulator = simulator_for(world.balance)
    simulator.load_g = Decimal("9000")  # over the balance's capacity
    path = f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}"
    token = pharmacist.token(f"{path}?day={_day(today)}")
    try:
        reading = _read_balance(pharmacist, database, world, today, token, method="")
    finally:
        simulator.load_g = Decimal(0)
    assert reading.status_code == 422 and 'class="field-error"' in reading.get_data(as_text=True)
    assert "vượt quá tải trọng tối đa của cân" in _text(reading)  # the overload, in Vietnamese
    assert 'name="weight_g" value=""' in _text(reading)


def _read_balance(browser, database, world, today, token, **data):
    """Press "read balance" (202: a weighing request, and the status element that polls it), poll
    once before anything read it (still 202, polling), let counter 1's device service read the
    balance as single-PC mode does, and poll again: the final fragment."""
    from devices.weighing import BalanceService
    from web.counter_service import InProcessWeighingJobs

    path = f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}"
    form = {"day": _day(today), "balance_id": world.balance.id, "method": "balance", **data}
    asked = browser.client.post(f"{path}/read-balance", data=form, headers={"X-CSRFToken": token})
    assert asked.status_code == 202, _text(asked)
    assert 'id="read-balance"' in _text(asked) and "disabled>" in _text(asked)  # no second request meanwhile
    poll = re.search(r'hx-get="([^"]+/weighing/\d+)"', asked.get_data(as_text=True)).group(1)
    waiting = browser.client.get(poll, query_string=form)
    assert waiting.status_code == 202 and 'hx-trigger="load delay:500ms"' in waiting.get_data(as_text=True)
    assert 'name="weight_g"' not in waiting.get_data(as_text=True)  # only the status element while open
    service = BalanceService(InProcessWeighingJobs(database, world.counters[0].id), poll_s=0, name="Q1")
    try:
        assert service.step()
    finally:
        service.jobs.close()
    return browser.client.get(poll, query_string=form)


def test_a_weighing_nobody_reads_expires_with_a_reason_and_bad_requests_are_refused(pharmacist, world, today,
                                                                                     session, app):
    from datetime import timedelta

    from dispensing import weighing

    path = f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}"
    token = pharmacist.token(f"{path}?day={_day(today)}")
    stale = weighing.request_weighing(session, world.pharmacist, world.balance.id,
                                      now=utcnow() - timedelta(seconds=30))
    polled = pharmacist.client.get(f"{path}/weighing/{stale.id}", query_string={"day": _day(today)})
    assert polled.status_code == 422 and "Không nhận được số đọc kịp thời" in _text(polled)
    assert session.get(type(stale), stale.id, populate_existing=True).state.value == "expired"
    # A balance that is at no counter is refused with the reason; nothing is requested.
    loose = Device(clinic_id=world.clinic.id, counter_id=None, code="BAL-9", kind=DeviceKind.BALANCE,
                   driver="mt-sics", port_url="sim://mt-sics")
    session.add(loose)
    session.commit()
    before = _count(session, type(stale))
    for balance_id, words in ((loose.id, "không thuộc quầy nào"), ("", "Chọn một cân"), ("abc", "Chọn một cân"),
                              (world.devices[0].id, "Chọn một cân")):
        refused = pharmacist.client.post(f"{path}/read-balance", data={"day": _day(today), "balance_id": balance_id},
                                         headers={"X-CSRFToken": token})
        assert refused.status_code == 422 and words in _text(refused), balance_id
    assert _count(session, type(stale)) == before
    assert pharmacist.client.get(f"{path}/weighing/999999").status_code == 404
    assert pharmacist.client.get(f"{path}/weighing/{stale.id}?day=99/99/9999").status_code in (400, 422)
    nurse = _sign_in(app, world.nurse)
    assert nurse.client.get(f"{path}/weighing/{stale.id}").status_code == 403


def test_a_simulated_pan_control_shows_for_a_sim_balance_only(pharmacist, world, today, session):
    _stocked(world, "1000")
    path = f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}?day={_day(today)}"
    page = _text(pharmacist.client.get(path))
    assert 'id="sim_load_g" name="sim_load_g" value=""' in page  # empty: never the expected weight
    assert '<label for="sim_load_g">Cân mô phỏng — khối lượng trên đĩa cân (g)</label>' in page
    # A real port (rendered only, never opened): it sorts first, so the worksheet chooses it.
    real = Device(clinic_id=world.clinic.id, counter_id=world.counters[0].id, code="BAL-0",
                  kind=DeviceKind.BALANCE, driver="mt-sics", port_url="/dev/ttyUSB0")
    session.add(real)
    session.commit()
    page = _text(pharmacist.client.get(path))
    assert f'<option value="{real.id}" selected>BAL-0</option>' in page
    assert 'name="sim_load_g"' not in page and "Cân mô phỏng" not in page and "simulated-load" not in page


def _place(browser, world, today, token, balance_id, grams):
    return browser.client.post(
        f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}/simulated-load",
        data={"day": _day(today), "balance_id": balance_id, "sim_load_g": grams, "method": "balance"},
        headers={"X-CSRFToken": token})


def test_a_weight_put_on_the_simulated_pan_is_read_through_the_driver(pharmacist, world, today, database):
    from web.pharmacy_balance import simulator_for

    _stocked(world, "1000")  # density 1.0400 g/ml
    simulator = simulator_for(world.balance)
    simulator.load_g = Decimal(0)
    path = f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}"
    token = pharmacist.token(f"{path}?day={_day(today)}")
    try:
        placed = _place(pharmacist, world, today, token, world.balance.id, "987,6")
        assert placed.status_code == 200, _text(placed)
        assert "987,6 g" in _text(placed) and 'value="987,6"' in _text(placed)
        assert simulator.load_g == Decimal("987.6")
        reading = _read_balance(pharmacist, database, world, today, token, sim_load_g="987,6")
        assert reading.status_code == 200, _text(reading)
        assert 'name="weight_g" value="987,60"' in _text(reading)
        assert 'value="987,6"' in _text(reading)  # what was typed on the simulated pan stays
        preview = pharmacist.client.post(f"{path}/preview", data={
            "day": _day(today), "method": "balance", "weight_g": "987,60"}, headers={"X-CSRFToken": token})
        assert "<strong>949,62 ml</strong>" in _text(preview)  # 987,60 g ÷ 1,0400 g/ml
    finally:
        simulator.load_g = Decimal(0)


def test_the_simulated_pan_refuses_bad_weights_and_real_balances(pharmacist, world, today, session):
    from web.pharmacy_balance import simulator_for

    simulator = simulator_for(world.balance)
    simulator.load_g = Decimal("12.5")
    token = pharmacist.token(f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}?day={_day(today)}")
    for grams in ("", "abc", "-5", "1.234,5", "99999"):
        response = _place(pharmacist, world, today, token, world.balance.id, grams)
        assert response.status_code == 422, grams
        assert 'class="field-error"' in response.get_data(as_text=True), grams
    assert simulator.load_g == Decimal("12.5")  # nothing changed on the pan
    real = Device(clinic_id=world.clinic.id, counter_id=world.counters[0].id, code="BAL-0",
                  kind=DeviceKind.BALANCE, driver="mt-sics", port_url="/dev/ttyUSB0")
    session.add(real)
    session.commit()
    for balance_id in (real.id, "", "999999"):
        assert _place(pharmacist, world, today, token, balance_id, "100").status_code == 404, balance_id
    simulator.load_g = Decimal(0)


def test_outside_tolerance_the_day_closes_only_with_the_discrepancy_workflow(pharmacist, world, today, session):
    _stocked(world, "1000")
    base = {"method": "cylinder", "value": "980"}  # 20 ml short: outside ±0.5 % and ±2 ml
    listing = _text(pharmacist.client.get(f"/pharmacy/reconciliation?day={_day(today)}"))
    assert re.search(r'<td class="num">1\.000 ml</td> <td class="num">—</td>', listing), listing
    for extra, message in [
        ({}, "DISCREPANCY"),
        ({"reason": "unrecorded_spill"}, "NOTE"),
        ({"reason": "unrecorded_spill", "note": "Đổ vỡ khi chuyển chai, đang xác minh"}, "WITNESS"),
        ({"reason": "unrecorded_spill", "note": "Đổ vỡ", "witness_username": world.pharmacist2.username,
          "witness_password": "wrong"}, "REAUTH"),
    ]:
        response = _close(pharmacist, world, world.safe, today, **base, **extra)
        assert response.status_code in (403, 422), (message, _text(response))
        assert 'id="form-error"' in response.get_data(as_text=True)
        assert 'data-within="false"' in response.get_data(as_text=True)
        assert _count(session, Reconciliation, Reconciliation.status == ReconciliationStatus.CLOSED) == 0
        assert _count(session, StockMovement, StockMovement.kind == "adjustment") == 0

    closed = _close(pharmacist, world, world.safe, today, **base, reason="unrecorded_spill", note="Đổ vỡ khi chuyển chai",
                    witness_username=world.pharmacist2.username, witness_password=PASSWORD)
    assert closed.status_code == 302, _text(closed)
    row = session.scalar(select(Reconciliation))
    assert (row.within_tolerance, row.loss, row.witness_id) == (False, Decimal(20), world.pharmacist2.id)
    assert row.discrepancy_reason.value == "unrecorded_spill" and row.measure_method.value == "cylinder"
    listing = _text(pharmacist.client.get(f"/pharmacy/reconciliation?day={_day(today)}"))
    assert '<span class="locked">' in listing


def test_bad_measurements_are_messages_and_nothing_is_written(pharmacist, world, today, session):
    _stocked(world, "1000")
    for data in ({"method": "cylinder", "value": "abc"}, {"method": ""}, {"method": "balance", "weight_g": ""},
                 {"method": "pump", "value": "1000"}, {"method": "cylinder", "value": "1000", "password": ""},
                 {"method": "cylinder", "value": "-3"}):
        response = _close(pharmacist, world, world.safe, today, **data)
        assert 400 <= response.status_code < 500, (data, _text(response))
        assert 'id="form-error"' in response.get_data(as_text=True)
    assert _count(session, Reconciliation) == 0
    assert pharmacist.client.get(
        f"/pharmacy/reconciliation/{world.safe.id}/{world.methadone.id}?day=32/13/2026").status_code == 302
    assert pharmacist.client.get(f"/pharmacy/reconciliation/999999/{world.methadone.id}").status_code == 404


# ---- reports ----------------------------------------------------------------------------------------


def test_registers_and_reports_download_as_pdf_and_excel(pharmacist, world, today):
    _stocked(world, "1000")
    daily = pharmacist.client.get(f"/pharmacy/reports/daily?day={_day(today)}&format=pdf")
    assert daily.status_code == 200 and daily.mimetype == "application/pdf" and daily.data.startswith(b"%PDF")
    register = pharmacist.client.get(
        f"/pharmacy/reports/stock?first={_day(today)}&last={_day(today)}&product_id={world.methadone.id}&format=xlsx")
    assert register.status_code == 200 and register.data.startswith(b"PK")
    monthly = pharmacist.client.get(f"/pharmacy/reports/monthly?year={today.year}&month={today.month}&format=pdf")
    assert monthly.status_code == 200 and monthly.data.startswith(b"%PDF")
    bad = pharmacist.client.get("/pharmacy/reports/stock?first=hôm qua&last=&format=pdf")
    assert bad.status_code == 422 and 'role="alert"' in bad.get_data(as_text=True)
    assert pharmacist.client.get("/pharmacy/reports/monthly?year=2026&month=13").status_code == 422
