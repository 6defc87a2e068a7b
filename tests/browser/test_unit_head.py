"""The head of unit and the quarantine in a real browser, in Vietnamese: a delivery's 990 ml bottle
was booked into quarantine with an anomaly record (prepared through the service, as the pharmacist's
receipt form does); the head of unit signs in, finds the record from the menu, is refused with a
wrong password, then countersigns; the pharmacist opens the quarantine page and releases the bottle
to the safe with the head of unit co-signing on the same form; the stock page then shows the bottle
in the safe, usable."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from dispensing import stock
from dispensing.clock import utcnow
from dispensing.demo import DEMO_PASSWORD
from dispensing.models import (
    AnomalyKind,
    Location,
    LocationKind,
    Product,
    QuarantineDecision,
    QuarantineOutcome,
    ReceiptAnomaly,
    User,
)

pytestmark = pytest.mark.browser


def _quarantined_bottle(live_server) -> tuple[int, str, str]:
    """Receive a good and a short bottle as ``duocsi1``; returns (anomaly id, label, item key)."""
    with live_server.session() as session:
        pharmacist = session.scalar(select(User).where(User.username == "duocsi1"))
        safe = session.scalar(select(Location).where(Location.kind == LocationKind.SAFE).order_by(Location.id))
        methadone = session.scalar(select(Product).where(Product.unit == "ml").order_by(Product.id))
        lot = stock.LotIn(
            product_id=methadone.id, lot_number=f"BT-{uuid.uuid4().hex[:6].upper()}",
            expiry_date=live_server.today + timedelta(days=400),
            bottles=(stock.BottleIn(quantity=Decimal("1000")),
                     stock.BottleIn(quantity=Decimal("990"), nominal=Decimal("1000"), anomaly=stock.AnomalyIn(
                         AnomalyKind.SHORT_VOLUME, "Chai thiếu 10 ml so với nhãn, niêm phong còn nguyên"))),
            concentration_mg_per_ml=Decimal("10"), density_g_per_ml=Decimal("1.04"), concentration_verified=True,
        )
        delivery = stock.DeliveryIn(
            location_id=safe.id, supplier="CTCP Dược Danapha", delivery_note_no=f"PN-{uuid.uuid4().hex[:5].upper()}",
            deliverer_name="Nguyễn Văn Giao", deliverer_organisation="Vận tải Hòa Bình", lots=(lot,))
        result = stock.receive_delivery(session, pharmacist, delivery, password=DEMO_PASSWORD, now=utcnow())
        bottle, anomaly = result.quarantined[0], result.anomalies[0]
        [item] = [i for i in stock.quarantined_items(session, clinic_id=pharmacist.clinic_id)
                  if i.container_id == bottle.id]
        return anomaly.id, bottle.label_code, f"{item.location_id}:{item.lot_id}:{bottle.id}"


def test_unit_head_countersigns_and_the_pharmacist_releases_from_quarantine(page, login, shot, live_server):
    anomaly_id, label, key = _quarantined_bottle(live_server)
    menu = page.get_by_role("navigation", name="Trình đơn chính")

    # The head of unit countersigns the anomaly record.
    login(page, "truongdonvi")
    menu.get_by_role("link", name="Biên bản bất thường").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Biên bản bất thường chờ ký xác nhận")
    record = page.locator(f"#anomaly-{anomaly_id}")
    expect(record).to_contain_text(label)
    expect(record).to_contain_text("Thiếu thể tích")
    expect(record).to_contain_text("Nguyễn Văn Giao (Vận tải Hòa Bình)")
    expect(record).to_contain_text("DS. Hoàng Văn Nam")
    shot(page, "anomaly-to-countersign")
    record.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill("khong-dung-mat-khau")
    record.get_by_role("button", name="Ký xác nhận biên bản").click()
    expect(page.locator(f"#error-{anomaly_id}")).to_be_visible()
    shot(page, "wrong-password-refused")
    record.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill(DEMO_PASSWORD)
    record.get_by_role("button", name="Ký xác nhận biên bản").click()
    expect(page.locator(".flash.info")).to_contain_text("Đã ký xác nhận biên bản bất thường")
    expect(page.locator(f"#signed-{anomaly_id}")).to_contain_text("BS. Trịnh Quốc Khánh")
    shot(page, "countersigned")

    # The pharmacist releases the bottle to the safe; the head of unit co-signs on the same form.
    page.context.clear_cookies()
    login(page, "duocsi1")
    menu.get_by_role("link", name="Khu biệt trữ").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Khu biệt trữ")
    row = page.locator(f"#item-{key.replace(':', '-')}")
    expect(row).to_contain_text("đã ký xác nhận")
    row.get_by_role("link", name="Quyết định").click()
    form = page.locator("form#decide")
    expect(form.get_by_label("Chai hoặc lô")).to_have_value(key)
    form.get_by_label("Giải phóng về két thuốc").check()
    form.get_by_label("Lý do quyết định").fill("Thiếu 10 ml, niêm phong nguyên vẹn: dùng được, ghi nhận đúng thể tích")
    form.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill(DEMO_PASSWORD)
    form.get_by_label("Trưởng đơn vị: tên đăng nhập").fill("truongdonvi")
    form.get_by_label("Trưởng đơn vị: mật khẩu").fill(DEMO_PASSWORD)
    shot(page, "decision-form")
    form.get_by_role("button", name="Ký quyết định").click()
    expect(page.locator(".flash.info")).to_contain_text("đã được giải phóng khỏi khu biệt trữ")
    expect(page.locator("#decisions")).to_contain_text(label)
    shot(page, "released")

    menu.get_by_role("link", name="Tồn kho").click()
    safe_row = page.locator("section.location-stock:not(.quarantine) tr", has_text=label)
    expect(safe_row).to_have_count(1)
    expect(safe_row).to_contain_text("990")
    expect(safe_row).not_to_contain_text("Đang biệt trữ")
    shot(page, "stock-after-release")

    with live_server.session() as session:
        decision = session.scalar(select(QuarantineDecision).where(QuarantineDecision.anomaly_id == anomaly_id))
        head = session.scalar(select(User).where(User.username == "truongdonvi"))
        assert decision.outcome is QuarantineOutcome.RELEASE and decision.unit_head_id == head.id
        assert session.get(ReceiptAnomaly, anomaly_id).unit_head_id == head.id
