"""Head of unit and quarantine screens over HTTP: the unit head countersigns a receipt's anomaly
record with the password re-entered (a pharmacist or a nurse cannot; a wrong or missing password
and a second countersignature are messages; nothing is written then); the pharmacist decides on the
quarantined bottle with the head of unit co-signing on the same form, after which the bottle goes to
a pump; a missing or wrong co-signer and a second decision are messages and write nothing; the
follow-up return to the supplier and destruction record."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dispensing import stock
from dispensing.clock import utcnow
from dispensing.models import (
    AnomalyKind,
    AuditEvent,
    ContainerAttachment,
    DestructionRecord,
    MovementKind,
    QuarantineDecision,
    QuarantineOutcome,
    StockMovement,
)
from dispensing.stock.ledger import balances_by_location
from tests import stock_world
from tests.e2e.conftest import Browser, csrf_token
from tests.factories import PASSWORD


@pytest.fixture
def world(session):
    return stock_world.build(session)


def _sign_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    assert browser.login(user.username, PASSWORD).status_code == 302
    return browser


@pytest.fixture
def unit_head(app, world):
    return _sign_in(app, world.unit_head)


@pytest.fixture
def pharmacist(app, world):
    return _sign_in(app, world.pharmacist)


def _count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.get_data(as_text=True)))


def _message(app, code: str) -> str:
    """The page's message for a reason code, in the language a new session gets."""
    from web.errors import message_for

    with app.test_request_context("/"):
        return message_for(code)


def _short_bottle(world, label: str = "") -> tuple:
    """A delivery with one good bottle and one 990 ml bottle (short volume) booked into quarantine;
    returns (the quarantined bottle, its anomaly record). The real clock: the web's business day."""
    anomaly = stock.AnomalyIn(AnomalyKind.SHORT_VOLUME, "Thiếu 10 ml so với nhãn")
    lot = stock.LotIn(
        product_id=world.methadone.id, lot_number="DNP-Q1", expiry_date=world.default_expiry,
        bottles=(stock.BottleIn(quantity=Decimal("1000")),
                 stock.BottleIn(quantity=Decimal("990"), nominal=Decimal("1000"), anomaly=anomaly)),
        concentration_mg_per_ml=Decimal("10"), density_g_per_ml=Decimal("1.04"), gtin=stock_world.METHADONE_GTIN,
        concentration_verified=True,
    )
    delivery = stock.DeliveryIn(location_id=world.safe.id, supplier="CTCP Dược Danapha", delivery_note_no="PN-Q77",
                                deliverer_name="Nguyễn Văn Giao", deliverer_organisation="Vận tải Hòa Bình",
                                lots=(lot,))
    result = stock.receive_delivery(world.session, world.pharmacist, delivery, password=PASSWORD, now=utcnow())
    return result.quarantined[0], result.anomalies[0]


def _countersigned(world):
    bottle, anomaly = _short_bottle(world)
    stock.countersign_anomaly(world.session, world.unit_head, anomaly.id, password=PASSWORD, now=utcnow())
    return bottle, anomaly


def _key(world, bottle) -> str:
    return f"{world.quarantine.id}:{bottle.lot_id}:{bottle.id}"


def _decision(world, bottle, **changes) -> dict:
    data = {"item": _key(world, bottle), "outcome": "release", "to_location_id": world.safe.id,
            "reason": "Thiếu 10 ml, niêm phong còn nguyên: dùng được", "password": PASSWORD,
            "unit_head_username": world.unit_head.username, "unit_head_password": PASSWORD}
    data.update(changes)
    return data


# ---- the head of unit's page ---------------------------------------------------------------------------


def test_the_unit_head_sees_the_record_and_countersigns_it(app, unit_head, world, session):
    bottle, anomaly = _short_bottle(world)
    home = unit_head.client.get("/").get_data(as_text=True)
    assert 'href="/unit-head/anomalies"' in home and 'href="/pharmacy/stock"' not in home
    page = _text(unit_head.client.get("/unit-head/anomalies"))
    record = page[page.index(f'id="anomaly-{anomaly.id}"'):]
    for shown in ("PN-Q77", "CTCP Dược Danapha", bottle.label_code, "DNP-Q1", "Thiếu 10 ml so với nhãn",
                  "Nguyễn Văn Giao (Vận tải Hòa Bình)", world.pharmacist.full_name, "990", "1.000"):
        assert shown in record, shown
    assert f'action="/unit-head/anomalies/{anomaly.id}/countersign"' in page

    response = unit_head.post(f"/unit-head/anomalies/{anomaly.id}/countersign", {"password": PASSWORD},
                              token_from="/unit-head/anomalies")
    assert response.status_code == 302, _text(response)
    session.refresh(anomaly)
    assert anomaly.unit_head_id == world.unit_head.id and anomaly.unit_head_signed_at is not None
    assert _count(session, AuditEvent, AuditEvent.action == "stock.anomaly.signed",
                  AuditEvent.actor_id == world.unit_head.id) == 1
    after = _text(unit_head.client.get("/unit-head/anomalies"))
    assert f'id="signed-{anomaly.id}"' in after and f'id="anomaly-{anomaly.id}"' not in after
    assert 'id="none-pending"' in after


def test_a_second_countersignature_is_a_message(app, unit_head, world, session):
    _bottle, anomaly = _countersigned(world)
    events = _count(session, AuditEvent)
    response = unit_head.post(f"/unit-head/anomalies/{anomaly.id}/countersign", {"password": PASSWORD},
                              token_from="/unit-head/anomalies")
    assert response.status_code == 409
    assert 'id="form-error"' in response.get_data(as_text=True)
    assert _message(app, "ANOMALY_ALREADY_SIGNED") in _text(response)
    assert _count(session, AuditEvent) == events


@pytest.mark.parametrize("password, status, code", [
    ("not-the-password", 403, "REAUTH_FAILED"),
    ("", 422, "SIGNATURE_PASSWORD_REQUIRED"),
])
def test_a_wrong_or_missing_password_signs_nothing(app, unit_head, world, session, password, status, code):
    _bottle, anomaly = _short_bottle(world)
    events = _count(session, AuditEvent)
    response = unit_head.post(f"/unit-head/anomalies/{anomaly.id}/countersign", {"password": password},
                              token_from="/unit-head/anomalies")
    assert response.status_code == status
    page = _text(response)
    assert f'id="error-{anomaly.id}"' in page and _message(app, code) in page
    session.refresh(anomaly)
    assert anomaly.unit_head_id is None
    assert _count(session, AuditEvent) == events


def test_a_pharmacist_sees_the_records_read_only_and_cannot_countersign(app, pharmacist, world, session):
    _bottle, anomaly = _short_bottle(world)
    page = _text(pharmacist.client.get("/unit-head/anomalies"))
    assert f'id="anomaly-{anomaly.id}"' in page and "/countersign" not in page
    # The receipt page's pending countersignature leads to this page.
    receipt = pharmacist.client.get(f"/pharmacy/receipts/{anomaly.receipt_id}").get_data(as_text=True)
    assert f'href="/unit-head/anomalies#anomaly-{anomaly.id}"' in receipt

    events = _count(session, AuditEvent)
    response = pharmacist.post(f"/unit-head/anomalies/{anomaly.id}/countersign", {"password": PASSWORD},
                               token_from="/unit-head/anomalies")
    assert response.status_code == 403
    assert _message(app, "UNIT_HEAD_ROLE_REQUIRED") in _text(response)
    session.refresh(anomaly)
    assert anomaly.unit_head_id is None and _count(session, AuditEvent) == events


def test_a_nurse_is_refused_the_page_and_the_signature(app, world, session):
    _bottle, anomaly = _short_bottle(world)
    nurse = _sign_in(app, world.nurse)
    assert nurse.client.get("/unit-head/anomalies").status_code == 403
    assert nurse.client.get("/pharmacy/quarantine").status_code == 403
    assert 'href="/unit-head/anomalies"' not in nurse.client.get("/").get_data(as_text=True)
    token = csrf_token(nurse.client.get("/").get_data(as_text=True))
    response = nurse.client.post(f"/unit-head/anomalies/{anomaly.id}/countersign",
                                 data={"password": PASSWORD, "csrf_token": token})
    assert response.status_code == 403
    for path in ("/pharmacy/quarantine/decide", "/pharmacy/quarantine/return", "/pharmacy/quarantine/destroy"):
        assert nurse.client.post(path, data={"password": PASSWORD, "csrf_token": token}).status_code == 403, path
    session.refresh(anomaly)
    assert anomaly.unit_head_id is None


def test_the_unit_head_cannot_use_the_pharmacist_quarantine_form(app, unit_head, world, session):
    bottle, _anomaly = _countersigned(world)
    token = csrf_token(unit_head.client.get("/unit-head/anomalies").get_data(as_text=True))
    response = unit_head.client.post("/pharmacy/quarantine/decide", data={**_decision(world, bottle),
                                                                          "csrf_token": token})
    assert response.status_code == 403
    assert _count(session, QuarantineDecision) == 0


# ---- quarantine: the pharmacist's decision co-signed by the head of unit ------------------------------


def test_a_release_signed_by_both_makes_the_bottle_go_to_a_pump(pharmacist, world, session):
    bottle, anomaly = _short_bottle(world)
    page = _text(pharmacist.client.get("/pharmacy/quarantine"))
    row = page[page.index(f'id="item-{_key(world, bottle).replace(":", "-")}"'):]
    assert bottle.label_code in row and 'href="/unit-head/anomalies#anomaly-' in row  # waits for the countersignature
    assert f'value="{_key(world, bottle)}"' not in page  # not offered for a decision yet
    stock.countersign_anomaly(world.session, world.unit_head, anomaly.id, password=PASSWORD, now=utcnow())
    page = _text(pharmacist.client.get(f"/pharmacy/quarantine?item={_key(world, bottle)}"))
    assert f'<option value="{_key(world, bottle)}" selected>' in page

    # Before the release the bottle cannot go to a pump.
    refused = pharmacist.post("/pharmacy/transfers/attach", {"location_id": world.pumps[0].id,
                                                             "label_code": bottle.label_code},
                              token_from="/pharmacy/transfers")
    assert refused.status_code in (409, 422)

    response = pharmacist.post("/pharmacy/quarantine/decide", _decision(world, bottle),
                               token_from="/pharmacy/quarantine")
    assert response.status_code == 302, _text(response)
    [decision] = session.scalars(select(QuarantineDecision)).all()
    assert (decision.outcome, decision.pharmacist_id, decision.unit_head_id, decision.container_id) == (
        QuarantineOutcome.RELEASE, world.pharmacist.id, world.unit_head.id, bottle.id)
    assert balances_by_location(session, container_id=bottle.id) == {world.safe.id: Decimal("990")}
    after = _text(pharmacist.client.get("/pharmacy/quarantine"))
    assert 'id="nothing-quarantined"' in after and 'id="decisions"' in after

    # The stock page shows it in the safe, usable; then it goes to a pump.
    stock_page = _text(pharmacist.client.get("/pharmacy/stock"))
    safe_section = stock_page[stock_page.index(f'id="loc-{world.safe.id}"'):stock_page.index(
        f'id="loc-{world.quarantine.id}"')]
    row = safe_section[safe_section.index(bottle.label_code):]
    row = row[:row.index("</tr>")]
    assert "quarantined" not in row
    attached = pharmacist.post("/pharmacy/transfers/attach", {"location_id": world.pumps[0].id,
                                                              "label_code": bottle.label_code},
                               token_from="/pharmacy/transfers")
    assert attached.status_code == 302, _text(attached)
    assert session.scalar(select(ContainerAttachment.container_id).where(
        ContainerAttachment.location_id == world.pumps[0].id, ContainerAttachment.detached_at.is_(None))) == bottle.id


@pytest.mark.parametrize("changes, status, code", [
    ({"unit_head_username": "", "unit_head_password": ""}, 422, "UNIT_HEAD_REQUIRED"),
    ({"unit_head_password": "wrong-password"}, 403, "REAUTH_FAILED"),
    ({"unit_head_username": "pharmacist2"}, 403, "UNIT_HEAD_ROLE_REQUIRED"),
    ({"password": ""}, 422, "SIGNATURE_PASSWORD_REQUIRED"),
    ({"password": "wrong-password"}, 403, "REAUTH_FAILED"),
    ({"reason": " "}, 422, "REASON_REQUIRED"),
    ({"outcome": ""}, 422, "QUARANTINE_OUTCOME_INVALID"),
    ({"outcome": "sell"}, 422, "QUARANTINE_OUTCOME_INVALID"),
    ({"to_location_id": ""}, 422, "RELEASE_LOCATION_INVALID"),
    ({"to_location_id": "quarantine"}, 422, "RELEASE_LOCATION_INVALID"),
    ({"item": ""}, 422, "ITEM_REQUIRED"),
    ({"item": "9999:1:1"}, 422, "NOT_IN_QUARANTINE"),
])
def test_a_refused_decision_is_a_message_and_writes_nothing(app, pharmacist, world, session, changes, status, code):
    bottle, _anomaly = _countersigned(world)
    if changes.get("unit_head_username") == "pharmacist2":
        changes = {**changes, "unit_head_username": world.pharmacist2.username}
    if changes.get("to_location_id") == "quarantine":
        changes = {**changes, "to_location_id": world.quarantine.id}
    before = (_count(session, QuarantineDecision), _count(session, StockMovement), _count(session, AuditEvent))
    response = pharmacist.post("/pharmacy/quarantine/decide", _decision(world, bottle, **changes),
                               token_from="/pharmacy/quarantine")
    assert response.status_code == status, _text(response)
    page = _text(response)
    assert 'id="decide-error"' in page and _message(app, code) in page
    assert "Thiếu 10 ml, niêm phong" in page or changes.get("reason")  # the form comes back as typed
    assert 'value="wrong-password"' not in page and f'value="{PASSWORD}"' not in page
    assert (_count(session, QuarantineDecision), _count(session, StockMovement), _count(session, AuditEvent)) == before


def test_no_decision_before_the_countersignature(app, pharmacist, world, session):
    bottle, _anomaly = _short_bottle(world)
    response = pharmacist.post("/pharmacy/quarantine/decide", _decision(world, bottle),
                               token_from="/pharmacy/quarantine")
    assert response.status_code == 422
    assert _message(app, "ANOMALY_NOT_COUNTERSIGNED") in _text(response)
    assert _count(session, QuarantineDecision) == 0


def test_a_second_decision_is_refused_with_a_message(app, pharmacist, world, session):
    bottle, _anomaly = _countersigned(world)
    first = pharmacist.post("/pharmacy/quarantine/decide", _decision(world, bottle, outcome="destruction",
                                                                     reason="Chai nứt"),
                            token_from="/pharmacy/quarantine")
    assert first.status_code == 302, _text(first)
    page = _text(pharmacist.client.get("/pharmacy/quarantine"))
    assert f'<option value="{_key(world, bottle)}"' not in page  # no longer offered for a decision
    before = (_count(session, QuarantineDecision), _count(session, StockMovement))
    second = pharmacist.post("/pharmacy/quarantine/decide", _decision(world, bottle), token_from="/pharmacy/quarantine")
    assert second.status_code == 409
    assert _message(app, "QUARANTINE_ALREADY_DECIDED") in _text(second)
    assert (_count(session, QuarantineDecision), _count(session, StockMovement)) == before
    [decision] = session.scalars(select(QuarantineDecision)).all()
    assert decision.outcome is QuarantineOutcome.DESTRUCTION


# ---- follow-ups: return to the supplier, destruction ----------------------------------------------


def test_a_bottle_kept_for_return_is_returned_to_the_supplier(app, pharmacist, world, session):
    bottle, _anomaly = _countersigned(world)
    assert pharmacist.post("/pharmacy/quarantine/decide", _decision(world, bottle, outcome="return_to_supplier"),
                           token_from="/pharmacy/quarantine").status_code == 302
    page = _text(pharmacist.client.get("/pharmacy/quarantine"))
    assert 'id="return"' in page and 'id="destroy"' not in page
    refused = pharmacist.post("/pharmacy/quarantine/return", {"item": _key(world, bottle), "reason": "Trả NCC",
                                                              "password": "wrong-password"},
                              token_from="/pharmacy/quarantine")
    assert refused.status_code == 403 and _message(app, "REAUTH_FAILED") in _text(refused)
    assert _count(session, StockMovement, StockMovement.kind == MovementKind.RETURN) == 0
    response = pharmacist.post("/pharmacy/quarantine/return", {"item": _key(world, bottle), "reason": "Trả NCC",
                                                               "password": PASSWORD},
                               token_from="/pharmacy/quarantine")
    assert response.status_code == 302, _text(response)
    [line] = session.scalars(select(StockMovement).where(StockMovement.kind == MovementKind.RETURN)).all()
    assert (line.container_id, line.quantity, line.from_location_id) == (bottle.id, Decimal("990"),
                                                                         world.quarantine.id)
    assert stock.quarantined_items(session, clinic_id=world.clinic.id) == []


def test_a_bottle_kept_for_destruction_is_destroyed_with_a_witness(app, pharmacist, world, session):
    bottle, _anomaly = _countersigned(world)
    assert pharmacist.post("/pharmacy/quarantine/decide", _decision(world, bottle, outcome="destruction",
                                                                     reason="Chai nứt"),
                           token_from="/pharmacy/quarantine").status_code == 302
    form = {"item": _key(world, bottle), "record_no": "BBH-2026-01", "method": "Đốt tại lò",
            "reason": "Chai thiếu thể tích", "password": PASSWORD}
    missing = pharmacist.post("/pharmacy/quarantine/destroy", form, token_from="/pharmacy/quarantine")
    assert missing.status_code == 422 and _message(app, "WITNESS_REQUIRED") in _text(missing)
    assert 'value="BBH-2026-01"' in missing.get_data(as_text=True)
    nothing = pharmacist.post("/pharmacy/quarantine/destroy", {**form, "item": ""}, token_from="/pharmacy/quarantine")
    assert nothing.status_code == 422 and _message(app, "DESTRUCTION_EMPTY") in _text(nothing)
    assert _count(session, DestructionRecord) == 0
    response = pharmacist.post("/pharmacy/quarantine/destroy",
                               {**form, "witness_username": world.pharmacist2.username, "witness_password": PASSWORD},
                               token_from="/pharmacy/quarantine")
    assert response.status_code == 302, _text(response)
    [record] = session.scalars(select(DestructionRecord)).all()
    assert (record.record_no, record.witness_id) == ("BBH-2026-01", world.pharmacist2.id)
    assert _count(session, StockMovement, StockMovement.kind == MovementKind.DESTRUCTION,
                  StockMovement.container_id == bottle.id) == 1
    assert stock.quarantined_items(session, clinic_id=world.clinic.id) == []


def test_unit_head_page_lists_quarantined_bottles_read_only(unit_head, world):
    bottle, anomaly = _short_bottle(world)
    page = _text(unit_head.client.get("/unit-head/anomalies"))
    held = page[page.index('id="quarantine-h"'):]
    assert bottle.label_code in held and f'href="#anomaly-{anomaly.id}"' in held
    assert "/pharmacy/quarantine" not in page  # the pharmacist's page is not offered to the unit head
