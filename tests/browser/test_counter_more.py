"""A nurse gives a unit-dose medicine in a real browser, in Vietnamese, on the demo clinic: the
patient's card typed as a keyboard-wedge scanner types it, then the GS1 pack typed into the same
scan field (a wrong pack first: a message, nothing written), the units counted, the observation
ticked, F9 records it — and the stock leaves the counter shelf."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from dispensing.models import (
    Clinic,
    Counter,
    Dose,
    Lot,
    MedicationOrder,
    MovementKind,
    Patient,
    Product,
    StockMovement,
    User,
)

pytestmark = pytest.mark.browser


def _medication_due(live_server):
    """(worklist row, card, product, lot, another product with a GTIN) of a demo patient with a unit-dose medicine still to give
    today."""
    from dispensing import counter
    from dispensing.rulebook import RuleBook
    from dispensing.settings import load_settings

    rules_dir = load_settings(environ={}, overrides={"env": "testing", "secret_key": "x" * 40}).rules_dir
    with live_server.database.unit_of_work() as session:
        nurse = session.scalar(select(User).where(User.username == "dieuduong3"))
        q1 = session.scalar(select(Counter).where(Counter.code == "Q1"))
        rule_set = RuleBook(rules_dir).for_clinic(session.get(Clinic, nurse.clinic_id))
        rows = [r for r in counter.worklist(session, nurse, rule_set, counter_id=q1.id).rows
                if r.what == "medication" and r.status == "to_come"]
        assert rows, "the demo has no unit-dose medicine to give today"
        row = rows[0]
        order = session.get(MedicationOrder, row.medication_order_id)
        product = session.get(Product, order.product_id)
        lot = session.scalar(select(Lot).where(Lot.product_id == product.id).order_by(Lot.expiry_date))
        other = session.scalar(select(Product).where(Product.gtin.is_not(None), Product.id != product.id))
        card = session.get(Patient, row.patient_id).card_barcode
        session.expunge_all()
        return row, card, product, lot, other


def _pack(gtin: str, lot: Lot) -> str:
    return f"]d201{gtin}17{lot.expiry_date:%y%m%d}10{lot.lot_number}"


def test_nurse_gives_a_unit_dose_medicine_by_scanning_its_pack(page, login, shot, live_server):
    row, card, product, lot, other = _medication_due(live_server)
    login(page, "dieuduong3")
    page.goto("/counter")
    page.get_by_label(re.compile(r"Quầy 1 \(Q1\)")).check()
    page.get_by_role("button", name="Làm việc tại quầy này").click()
    scan = page.get_by_label("Quét thẻ, hoặc gõ tên hay mã bệnh nhân")
    expect(scan).to_be_focused()

    page.keyboard.type(card)
    page.keyboard.press("Enter")
    panel = page.locator("#patient-panel")
    expect(panel.get_by_role("heading", level=2)).to_have_text(row.patient_name)
    medicines = panel.locator("[data-medications]")
    expect(medicines).to_contain_text(product.name)
    expect(medicines).to_contain_text("quét vỉ thuốc vào ô quét")
    shot(page, "medicine-due")

    # The wrong medicine's pack: a message, no form, nothing written.
    page.keyboard.type(_pack(other.gtin, lot))
    page.keyboard.press("Enter")
    expect(page.locator("#patient-panel [data-message]")).to_contain_text("không phải thuốc theo y lệnh")
    expect(page.locator("form[data-unit-dose]")).to_have_count(0)
    shot(page, "wrong-pack")

    # The right pack, typed into the scan field as the scanner types it.
    page.keyboard.type(_pack(product.gtin, lot))
    page.keyboard.press("Enter")
    form = page.locator("form[data-unit-dose]")
    expect(form).to_contain_text(lot.lot_number)
    units = form.get_by_label(re.compile("Số đơn vị đã đếm"))
    expect(units).to_be_focused()
    page.keyboard.type("1")
    form.get_by_label("Tôi đã giám sát người bệnh uống thuốc").check()
    shot(page, "pack-scanned")
    page.keyboard.press("F9")
    expect(page.locator("#patient-panel [data-message]")).to_contain_text("Đã cấp")
    expect(page.locator('#patient-panel [data-medication] [data-given="yes"]')).to_have_count(1)
    expect(page.locator('#patient-panel [data-dose][data-kind="observed"]').first).to_contain_text(
        "Đã cấp và giám sát uống")
    shot(page, "medicine-given")

    with live_server.database.unit_of_work() as session:
        doses = session.scalars(select(Dose).where(Dose.patient_id == row.patient_id,
                                                   Dose.medication_order_id == row.medication_order_id,
                                                   Dose.business_date == live_server.today)).all()
        assert [(d.lot_id, d.delivered_units) for d in doses] == [(lot.id, 1)]
        [line] = session.scalars(select(StockMovement).where(StockMovement.dose_id == doses[0].id)).all()
        assert (line.kind, line.quantity, line.lot_id) == (MovementKind.DOSE, 1, lot.id)
