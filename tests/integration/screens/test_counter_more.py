"""The counter screen around today's dose, over HTTP as htmx sends it: vomiting recorded minutes
after the dose and the physician's replacement dose dispensed from the panel; a void that needs a
witness (a wrong password writes nothing); take-home containers only when the clinic, the order
and the rules allow, filled through the pump, labelled (the label's barcode decodes) and returned;
a unit-dose medicine given from a GS1 pack scanned into the scan field (a wrong or expired pack
writes nothing); and a pharmacist can do none of it."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
import zxingcpp
from pypdf import PdfReader
from sqlalchemy import func, select

from dispensing import counter, stock
from dispensing.clock import utcnow
from dispensing.models import (
    Dose,
    DoseKind,
    DoseState,
    DoseVoid,
    Lot,
    MovementKind,
    Order,
    OrderKind,
    StockMovement,
    TakeHomeReturn,
    VomitEvent,
)
from tests import counter_world
from tests.e2e.conftest import Browser

HTMX = {"HX-Request": "true"}
PASSWORD = counter_world.PASSWORD
BUP_GTIN = "08936014580011"
OTHER_GTIN = "08904159100012"
CHECKLIST_NO = {name: "0" for name in ("drowsy", "slurred_speech", "pinpoint_pupils", "alcohol_smell",
                                       "unsteady_gait")}


@pytest.fixture
def world(session, settings):
    # The server reads the real clock: the clinic's day is built around now.
    return counter_world.build(session, settings=settings, now=utcnow())


class Counter:
    """A signed-in user at counter Q1, posting as htmx does."""

    def __init__(self, app, user, counter_id: int):
        self.browser = Browser(app.test_client())
        assert self.browser.login(user.username, PASSWORD).status_code == 302
        chosen = self.browser.post("/counter/choose", {"counter_id": counter_id}, token_from="/counter")
        assert chosen.status_code == 302
        page = self.browser.client.get("/counter").get_data(as_text=True)
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    def post(self, path: str, data: dict | None = None):
        return self.browser.client.post(path, data=data or {}, headers={**HTMX, "X-CSRFToken": self.token})

    def get(self, path: str, **headers):
        return self.browser.client.get(path, headers={**HTMX, **headers})

    def panel(self, patient):
        return _text(self.get(f"/counter/patients/{patient.id}"))

    def scan(self, value: str, patient=None):
        data = {"scan": value}
        if patient is not None:
            data["patient"] = str(patient.id)  # the panel's hidden field, sent with the scan form
        return self.post("/counter/scan", data)


def _text(response) -> str:
    return response.get_data(as_text=True)


def _key(html: str, action: str) -> str:
    form = html.split(f'action="{action}"')[1].split("</form>")[0]
    return re.search(r'name="key" value="([^"]+)"', form).group(1)


def _doses(session, patient, kind: DoseKind | None = None) -> list[Dose]:
    session.expire_all()
    query = select(Dose).where(Dose.patient_id == patient.id).order_by(Dose.id)
    if kind is not None:
        query = query.where(Dose.kind == kind)
    return list(session.scalars(query))


def _count(session, model, **where) -> int:
    session.expire_all()
    query = select(func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    return session.scalar(query)


def deliver(world, dose: Dose) -> Dose:
    """The counter's pump service fills the dose completely (as devices.service reports it)."""
    counter_id = dose.counter_id
    for state in ("programmed", "running"):
        counter.record_progress(world.session, counter_id, dose.id, state, now=world.now)
    outcome = counter.DeviceOutcome(outcome="COMPLETED", target_ml=dose.planned_ml, measured_ml=dose.planned_ml,
                                    reason=None, uncertain=False)
    counter.record_result(world.session, counter_id, dose.id, outcome, world.rulebook.for_clinic, now=world.now)
    world.session.expire_all()
    return world.session.get(Dose, dose.id)


def given_dose(world, mg="60", minutes_ago=20):
    """A patient whose dose today was given ``minutes_ago`` minutes ago."""
    world.stock.now = utcnow() - timedelta(minutes=minutes_ago)
    patient = world.patient(mg)
    world.assess(patient)
    dose = deliver(world, world.authorize(patient).dose)
    assert dose.state is DoseState.COMPLETED
    world.stock.now = utcnow()
    return patient, dose


# -- vomiting and the replacement dose ----------------------------------------------------------


def test_vomiting_is_recorded_minutes_after_the_dose_and_the_ordered_replacement_is_dispensed(app, world, session):
    patient, dose = given_dose(world)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    panel = nurse.panel(patient)
    assert f'action="/counter/doses/{dose.id}/vomit"' in panel and "Nôn sau uống" in panel

    for bad in ("", "mười", "99999", "²", "-5"):
        refused = nurse.post(f"/counter/doses/{dose.id}/vomit", {"minutes": bad, "seen_by_me": "1"})
        assert refused.status_code == 422 and "bao nhiêu phút" in _text(refused)
    future = nurse.post(f"/counter/doses/{dose.id}/vomit", {"minutes": "45", "seen_by_me": "1"})
    assert future.status_code == 422 and "sau khi uống" in _text(future)  # 45 min after is still to come
    assert _count(session, VomitEvent) == 0

    recorded = nurse.post(f"/counter/doses/{dose.id}/vomit", {"minutes": "10", "seen_by_me": "1"})
    assert recorded.status_code == 200, _text(recorded)
    [vomit] = session.scalars(select(VomitEvent)).all()
    assert (vomit.dose_id, vomit.observed_at, vomit.witness_id) == (
        dose.id, dose.finished_at + timedelta(minutes=10), world.nurse.id)
    html = _text(recorded)
    assert "Đã ghi nhận nôn" in html and "15–45 mg" in html  # 25–75 % of 60 mg, for the physician
    assert f'data-vomit="{dose.id}"' in html and "Nôn 10 phút sau khi uống" in html
    # Nothing to dispense until a physician orders it.
    assert "data-replacement" not in html and "data-dispense-button" not in html

    # The physician signs the replacement order on the same panel (re-authenticated).
    physician = Counter(app, world.physician, world.counters[0].id)
    order_action = f"/counter/doses/{dose.id}/replacement-order"
    assert f'action="{order_action}"' in physician.panel(patient)
    assert f'action="{order_action}"' not in nurse.panel(patient)
    wrong = physician.post(order_action, {"mg": "30", "password": "wrong-password"})
    assert wrong.status_code == 403 and "Mật khẩu không đúng" in _text(wrong)
    too_much = physician.post(order_action, {"mg": "50", "password": PASSWORD})
    assert too_much.status_code == 422 and 'data-code="VOMIT_REPLACEMENT_TOO_LARGE"' in _text(too_much)
    assert physician.post(order_action, {"mg": "ba mươi", "password": PASSWORD}).status_code == 422
    assert nurse.post(order_action, {"mg": "30", "password": PASSWORD}).status_code == 403
    signed = physician.post(order_action, {"mg": "30", "password": PASSWORD, "reason": "Nôn sau 10 phút"})
    assert signed.status_code == 200, _text(signed)
    session.expire_all()
    [order] = session.scalars(select(Order).where(Order.kind == OrderKind.REPLACEMENT,
                                                  Order.patient_id == patient.id)).all()
    assert (order.daily_total_mg, order.linked_dose_id, order.signed_by_id) == (
        Decimal("30.0"), dose.id, world.physician.id)
    panel = nurse.panel(patient)
    assert f'data-replacement="{order.id}"' in panel and "30 mg = 3,00 ml" in panel
    action = f"/counter/replacements/{order.id}/dispense"
    form = {"key": _key(panel, action)}
    first = nurse.post(action, form)
    assert first.status_code == 201, _text(first)
    assert nurse.post(action, form).status_code == 200  # the same form again: the same dose
    [replacement] = _doses(session, patient, DoseKind.REPLACEMENT)
    assert (replacement.state, replacement.planned_mg, replacement.planned_ml, replacement.linked_dose_id,
            replacement.order_id) == (DoseState.REQUESTED, Decimal("30.0"), Decimal("3.00"), dose.id, order.id)
    assert f'data-replacement="{order.id}"' not in _text(first)  # no longer due


# -- voids ----------------------------------------------------------------------------------


def test_a_void_needs_a_reason_and_a_witness_and_keeps_the_original(app, world, session):
    patient, dose = given_dose(world)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    action = f"/counter/doses/{dose.id}/void"
    assert f'action="{action}"' in nurse.panel(patient)
    from tests.e2e.screens.test_accessibility import _check

    _check(_text(nurse.browser.client.get(f"/counter?patient={patient.id}")), "/counter?patient=… (vomit, void)")
    form = {"reason": "Ghi nhầm người bệnh", "password": PASSWORD, "witness_username": world.witness.username,
            "witness_password": "not-the-password"}
    wrong = nurse.post(action, form)
    assert wrong.status_code == 403 and "Mật khẩu không đúng" in _text(wrong)
    assert "Ghi nhầm người bệnh" in _text(wrong)  # the reason typed stays in the form
    same_person = nurse.post(action, {**form, "witness_username": world.nurse.username,
                                      "witness_password": PASSWORD})
    assert same_person.status_code == 422 and "người khác" in _text(same_person)
    no_reason = nurse.post(action, {**form, "reason": " ", "witness_password": PASSWORD})
    assert no_reason.status_code == 422 and "lý do" in _text(no_reason).lower()
    assert _count(session, DoseVoid) == 0

    voided = nurse.post(action, {**form, "witness_password": PASSWORD})
    assert voided.status_code == 200, _text(voided)
    [void] = session.scalars(select(DoseVoid)).all()
    assert (void.dose_id, void.voided_by_id, void.witness_id, void.reason) == (
        dose.id, world.nurse.id, world.witness.id, "Ghi nhầm người bệnh")
    html = _text(voided)
    # The original record is still shown, with the void next to it; no further void or vomit.
    assert f'id="dose-{dose.id}"' in html and f'data-void="{dose.id}"' in html and "ĐÃ HỦY" in html
    assert f'action="{action}"' not in html and f'action="/counter/doses/{dose.id}/vomit"' not in html
    [stored] = _doses(session, patient)
    assert (stored.state, stored.delivered_ml) == (DoseState.COMPLETED, dose.delivered_ml)


# -- take-home ----------------------------------------------------------------------------------


def _take_home_patient(world, *, commitment=True, plan=None):
    world.clinic.take_home_enabled = True
    world.clinic.rules_take_home = "us-2024"
    world.session.commit()
    world.rule_set = world.rulebook.for_clinic(world.clinic)
    patient = world.patient(treatment_start_date=date(2024, 1, 10),
                            take_home_commitment_on=date(2025, 1, 5) if commitment else None)
    world.order(patient).take_home_plan = plan if plan is not None else {"max_days": 2}
    world.session.commit()
    world.assess(patient)
    return patient


def _take_home_form(world, html: str, days="2") -> dict:
    action = "/counter/patients/"
    key = re.search(r'data-take-home-form>.*?name="key" value="([^"]+)"', html, re.S).group(1)
    assert action in html
    return {"first_day": (world.today + timedelta(days=1)).isoformat(), "days": days, "key": key}


def test_take_home_is_offered_only_when_allowed_and_refused_with_the_reason(app, world, session):
    nurse = Counter(app, world.nurse, world.counters[0].id)
    ordinary = world.patient()
    world.assess(ordinary)
    assert "data-take-home" not in nurse.panel(ordinary)  # the clinic is not in the programme
    form = {"first_day": (world.today + timedelta(days=1)).isoformat(), "days": "2", "key": "take-home-screen-01"}
    refused = nurse.post(f"/counter/patients/{ordinary.id}/take-home", form)
    assert refused.status_code == 409 and "không tham gia chương trình cấp thuốc mang về" in _text(refused)

    no_commitment = _take_home_patient(world, commitment=False)
    panel = nurse.panel(no_commitment)
    assert "data-take-home-blocked" in panel and 'data-code="TAKE_HOME_COMMITMENT_MISSING"' in panel
    assert "data-take-home-form" not in panel
    blocked = nurse.post(f"/counter/patients/{no_commitment.id}/take-home", {**form, "key": "take-home-screen-02"})
    assert blocked.status_code == 422 and 'data-code="TAKE_HOME_COMMITMENT_MISSING"' in _text(blocked)

    no_plan = _take_home_patient(world, plan={})
    assert "data-take-home" not in nurse.panel(no_plan)
    too_many = _take_home_patient(world)
    over = nurse.post(f"/counter/patients/{too_many.id}/take-home", {**form, "days": "3",
                                                                       "key": "take-home-screen-03"})
    assert over.status_code == 409 and "y lệnh không cho phép" in _text(over).lower()
    bad_day = nurse.post(f"/counter/patients/{too_many.id}/take-home", {**form, "first_day": "mai"})
    assert bad_day.status_code == 422
    for days in ("²", "0", "x"):
        bad_days = nurse.post(f"/counter/patients/{too_many.id}/take-home", {**form, "days": days})
        assert bad_days.status_code == 422 and "từ 1 đến 31 ngày" in _text(bad_days)
    assert all(_doses(session, p, DoseKind.TAKE_HOME) == [] for p in (ordinary, no_commitment, no_plan, too_many))


def _decode_pdf(data: bytes) -> list[tuple[str, str]]:
    (page,) = PdfReader(io.BytesIO(data)).pages
    (embedded,) = page.images
    return [(r.text, r.format.name) for r in zxingcpp.read_barcodes(embedded.image)]


def test_take_home_containers_are_filled_labelled_and_returned(app, world, session):
    from tests.unit.devices.test_label_rendering import decode, svg_bars_to_image

    patient = _take_home_patient(world)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    panel = nurse.panel(patient)
    assert "data-take-home-form" in panel and "data-take-home-blocked" not in panel
    prepared = nurse.post(f"/counter/patients/{patient.id}/take-home", _take_home_form(world, panel))
    assert prepared.status_code == 201, _text(prepared)
    doses = _doses(session, patient, DoseKind.TAKE_HOME)
    assert [(d.business_date, d.state) for d in doses] == [
        (world.today + timedelta(days=1), DoseState.REQUESTED), (world.today + timedelta(days=2), DoseState.REQUESTED)]
    html = _text(prepared)
    assert all(f'hx-get="/counter/doses/{d.id}"' in html for d in doses)  # the pump's progress, per container
    assert "data-labels-link" not in html  # nothing to label before the pump has filled them

    for dose in doses:
        deliver(world, dose)
    panel = nurse.panel(patient)
    link = re.search(r'href="(/counter/labels\?[^"]+)"[^>]*data-labels-link', panel).group(1).replace("&amp;", "&")
    page = nurse.browser.client.get(link)
    assert page.status_code == 200
    text = _text(page)
    codes = [counter.take_home_label_code(d.id) for d in doses]
    for code in codes:
        assert f'data-label="{code}"' in text
    assert patient.full_name in text and "60 mg = 6,00 ml" in text and "CẢNH BÁO: Thuốc gây nghiện" in text
    assert (world.today + timedelta(days=1)).strftime("%d/%m/%Y") in text
    # The drawn label (SVG on the page) and the printer's PDF both decode to the container's code.
    svg = text.split(f'data-label="{codes[0]}"')[1].split("</svg>")[0] + "</svg>"
    svg = svg[svg.index("<svg"):]
    assert decode(svg_bars_to_image(svg)) == [(codes[0], "Code128")]
    pdf = nurse.browser.client.get(f"/counter/doses/{doses[1].id}/label.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert _decode_pdf(pdf.data) == [(codes[1], "Code128")]
    lines = session.scalars(select(StockMovement).where(StockMovement.dose_id.in_([d.id for d in doses]))).all()
    assert {(line.kind, line.quantity) for line in lines} == {(MovementKind.TAKE_HOME, Decimal("6.000"))}

    from tests.e2e.screens.test_accessibility import _check

    _check(text, "/counter/labels")
    _check(_text(nurse.browser.client.get(f"/counter?patient={patient.id}")), "/counter?patient=… (take-home)")

    # An empty container comes back: its label scanned with the patient open picks it.
    scanned = nurse.scan(codes[0], patient)
    assert scanned.status_code == 200
    assert re.search(rf'<option value="{doses[0].id}" selected', _text(scanned))
    unchosen = nurse.post("/counter/take-home/returns", {"patient_id": patient.id, "dose_id": doses[0].id})
    assert unchosen.status_code == 422
    returned = nurse.post("/counter/take-home/returns", {"patient_id": patient.id, "label": codes[0], "empty": "1"})
    assert returned.status_code == 200, _text(returned)
    again = nurse.post("/counter/take-home/returns", {"patient_id": patient.id, "dose_id": doses[0].id, "empty": "1"})
    assert again.status_code == 409
    left = {"patient_id": patient.id, "dose_id": doses[1].id, "empty": "0", "remaining_ml": "2,5"}
    assert nurse.post("/counter/take-home/returns", left).status_code == 422  # a witness must sign
    witnessed = nurse.post("/counter/take-home/returns", {**left, "witness_username": world.witness.username,
                                                          "witness_password": PASSWORD})
    assert witnessed.status_code == 200, _text(witnessed)
    session.expire_all()
    rows = {r.dose_id: r for r in session.scalars(select(TakeHomeReturn))}
    assert rows[doses[0].id].empty and (rows[doses[1].id].remaining_ml, rows[doses[1].id].witness_id) == (
        Decimal("2.500"), world.witness.id)


def test_labels_of_unfilled_or_observed_doses_are_refused(app, world, session):
    patient, dose = given_dose(world)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    assert nurse.get(f"/counter/doses/{dose.id}/label.pdf").status_code == 409
    assert nurse.get(f"/counter/labels?dose={dose.id}").status_code == 409
    assert nurse.get("/counter/labels").status_code == 422


# -- unit-dose medicines ------------------------------------------------------------------------


def _unit_dose_patient(world):
    world.bup.gtin = BUP_GTIN
    world.session.commit()
    delivery = stock.DeliveryIn(location_id=world.safe.id, supplier="CTCP Dược", delivery_note_no="PN-BUP-9",
                                deliverer_name="Nguyễn Văn Giao", lots=(stock.LotIn(
                                    product_id=world.bup.id, lot_number="BUP-L1", expiry_date=date(2030, 6, 30),
                                    loose_quantity=Decimal("100"), gtin=BUP_GTIN),))
    received = stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD,
                                      now=world.now - timedelta(days=1))
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.shelf.id, lot_id=received.receipt.lines[0].lot_id,
                         quantity=Decimal("30"), now=world.now - timedelta(hours=2))
    patient = world.patient()
    order = counter.sign_medication_order(world.session, world.physician, patient_id=patient.id,
                                          product_id=world.bup.id, units_per_administration=Decimal("2"),
                                          administrations_per_day=1, valid_from=world.today - timedelta(days=3),
                                          valid_until=world.today + timedelta(days=10), password=PASSWORD,
                                          now=world.now)
    world.assess(patient)  # buprenorphine is controlled: today's pre-dose check applies
    return patient, order


def pack(gtin=BUP_GTIN, expiry="300630", lot="BUP-L1") -> str:
    return f"]d201{gtin}17{expiry}10{lot}"


def _unit_form(html: str) -> dict:
    form = html.split("data-unit-dose>")[1].split("</form>")[0]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    fields.pop("csrf_token")
    return fields


def test_a_pack_scanned_with_the_patient_open_gives_the_ordered_medicine(app, world, session):
    patient, order = _unit_dose_patient(world)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    queue = _text(nurse.get("/counter/queue"))
    medicines = queue.split('data-group="medicines"')[1].split("</details>")[0]
    assert patient.full_name in medicines and world.bup.name in medicines and "2 đơn vị" in medicines
    panel = nurse.panel(patient)
    assert f'data-medication="{order.id}"' in panel and "quét vỉ thuốc" in panel
    assert f'name="patient" value="{patient.id}" form="scan-form"' in panel
    shelf = stock.balance(session, location_id=world.shelf.id, product_id=world.bup.id)

    # Without htmx (no script) the scan answers the whole page, the form in it.
    from tests.e2e.screens.test_accessibility import _check

    whole = nurse.browser.client.post("/counter/scan", data={"scan": pack(), "patient": patient.id,
                                                             "csrf_token": nurse.token})
    assert whole.status_code == 200 and "<html" in _text(whole) and "data-unit-dose" in _text(whole)
    _check(_text(whole), "/counter/scan (pack)")
    scanned = nurse.scan(pack(), patient)
    assert scanned.status_code == 200, _text(scanned)
    form = _unit_form(_text(scanned))
    assert (form["gtin"], form["lot"], form["expiry"], form["medication_order_id"]) == (
        BUP_GTIN, "BUP-L1", "2030-06-30", str(order.id))
    assert _doses(session, patient) == []  # a scan alone writes nothing

    unobserved = nurse.post(f"/counter/patients/{patient.id}/unit-dose", {**form, "units": "2"})
    assert unobserved.status_code == 422 and "data-unit-dose" in _text(unobserved)
    miscounted = nurse.post(f"/counter/patients/{patient.id}/unit-dose", {**form, "units": "3", "observed": "1"})
    assert miscounted.status_code == 422 and "đếm lại" in _text(miscounted)
    assert "data-unit-dose" in _text(miscounted)  # counted again on the same form
    assert _doses(session, patient) == []

    given = nurse.post(f"/counter/patients/{patient.id}/unit-dose", {**form, "units": "2", "observed": "1"})
    assert given.status_code == 201, _text(given)
    [dose] = _doses(session, patient)
    assert (dose.medication_order_id, dose.product_id, dose.state, dose.delivered_units, dose.nurse_id) == (
        order.id, world.bup.id, DoseState.COMPLETED, Decimal("2.000"), world.nurse.id)
    assert session.get(Lot, dose.lot_id).lot_number == "BUP-L1"
    assert stock.balance(session, location_id=world.shelf.id, product_id=world.bup.id) == shelf - 2
    html = _text(given)
    assert 'data-given="yes"' in html and "data-unit-dose" not in html
    assert f'action="/counter/doses/{dose.id}/void"' in html and f"/counter/doses/{dose.id}/vomit" not in html
    dosed = _text(nurse.get("/counter/queue")).split('data-group="dosed"')[1].split("</details>")[0]
    assert world.bup.name in dosed and 'data-group="medicines"' not in _text(nurse.get("/counter/queue"))
    # The same pack scanned again: nothing left to give today.
    again = nurse.scan(pack(), patient)
    assert again.status_code == 409 and len(_doses(session, patient)) == 1


def test_a_wrong_or_expired_pack_gets_a_message_and_writes_nothing(app, world, session):
    patient, order = _unit_dose_patient(world)
    expired = Lot(product_id=world.bup.id, lot_number="BUP-OLD", expiry_date=world.today - timedelta(days=1),
                  gtin=BUP_GTIN)
    session.add(expired)
    session.commit()
    nurse = Counter(app, world.nurse, world.counters[0].id)

    wrong = nurse.scan(pack(gtin=OTHER_GTIN), patient)
    assert wrong.status_code == 422 and "không phải thuốc theo y lệnh" in _text(wrong)
    old = expired.expiry_date.strftime("%y%m%d")
    too_old = nurse.scan(pack(expiry=old, lot="BUP-OLD"), patient)
    assert too_old.status_code == 422 and "đã hết hạn" in _text(too_old)
    assert "data-unit-dose" not in _text(wrong) + _text(too_old)
    # Posted without the scan step, the service refuses them just the same.
    form = _unit_form(_text(nurse.scan(pack(), patient)))
    for changed, message in (({"gtin": OTHER_GTIN}, "không phải thuốc theo y lệnh"),
                             ({"lot": "BUP-OLD", "expiry": expired.expiry_date.isoformat()}, "đã hết hạn"),
                             ({"expiry": "2030-05-31"}, "khác với hạn dùng của lô"),
                             ({"gtin": "123"}, "quét lại")):
        refused = nurse.post(f"/counter/patients/{patient.id}/unit-dose",
                             {**form, **changed, "units": "2", "observed": "1"})
        assert refused.status_code == 422 and message in _text(refused), (changed, _text(refused)[:600])
    # Without a patient open the pack is still not a card.
    assert "Đây không phải thẻ người bệnh" in _text(nurse.scan(pack()))
    assert _doses(session, patient) == []
    assert _count(session, StockMovement, product_id=world.bup.id, kind=MovementKind.DOSE) == 0


def test_a_pharmacist_can_do_none_of_it(app, world, session):
    patient, dose = given_dose(world)
    med_patient, order = _unit_dose_patient(world)
    nurse = Counter(app, world.nurse, world.counters[0].id)
    form = _unit_form(_text(nurse.scan(pack(), med_patient)))
    pharmacist = Counter(app, world.pharmacist, world.counters[0].id)
    panel = pharmacist.panel(patient)
    assert f"/counter/doses/{dose.id}/vomit" not in panel and f"/counter/doses/{dose.id}/void" not in panel
    refused = [
        pharmacist.post(f"/counter/doses/{dose.id}/vomit", {"minutes": "5", "seen_by_me": "1"}),
        pharmacist.post(f"/counter/doses/{dose.id}/void", {
            "reason": "x", "password": PASSWORD, "witness_username": world.witness.username,
            "witness_password": PASSWORD}),
        pharmacist.post(f"/counter/patients/{med_patient.id}/unit-dose", {**form, "units": "2", "observed": "1"}),
        pharmacist.post(f"/counter/patients/{patient.id}/take-home", {
            "first_day": (world.today + timedelta(days=1)).isoformat(), "days": "1", "key": "pharm-take-home-1"}),
    ]
    for response in refused:
        assert response.status_code == 403 and "không có quyền" in _text(response), _text(response)[:400]
    assert _count(session, VomitEvent) == 0 and _count(session, DoseVoid) == 0
    assert _doses(session, med_patient) == [] and _doses(session, patient, DoseKind.TAKE_HOME) == []
