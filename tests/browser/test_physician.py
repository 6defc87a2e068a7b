"""A physician's day in a real browser, in Vietnamese: register a patient with a photo, open the
chart, write the first induction order watching the rule decisions change as the dose is typed,
sign it with the password, then write day 2's increase, acknowledge its warning with a reason and
sign it; both orders show on the chart."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from dispensing.models import Order, OrderStatus, Patient

pytestmark = pytest.mark.browser


def _portrait_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (120, 150), (120, 160, 190))
    ImageDraw.Draw(image).ellipse((35, 20, 85, 70), fill=(240, 240, 240))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _decisions(page):
    return page.locator("#decisions")


def test_physician_registers_a_patient_and_signs_orders(page, login, shot, live_server, tmp_path):
    login(page, "bacsi1")
    expect(page.get_by_role("navigation", name="Trình đơn chính")).to_contain_text("Việc cần làm")
    page.get_by_role("link", name="Bệnh nhân").click()
    page.get_by_role("link", name="Đăng ký bệnh nhân mới").click()

    # Registration.
    page.get_by_label("Họ và tên").fill("Nguyễn Thị Thử Nghiệm")
    page.get_by_label("Ngày sinh").fill("17/05/1991")
    page.get_by_label("Giới tính").select_option("female")
    page.get_by_label("Ngày bắt đầu điều trị").fill(live_server.today.strftime("%d/%m/%Y"))
    shot(page, "registration")
    page.get_by_role("button", name="Đăng ký", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Nguyễn Thị Thử Nghiệm")
    expect(page.locator(".flash.info")).to_contain_text("Đã đăng ký người bệnh")
    expect(page.locator(".facts")).to_contain_text("17/05/1991")

    # Photo from a file (the webcam path posts the same field).
    photo = tmp_path / "anh.png"
    photo.write_bytes(_portrait_png())
    page.get_by_label("Tệp ảnh (JPEG, PNG hoặc WebP, tối đa 5 MB)").set_input_files(str(photo))
    page.get_by_role("button", name="Tải ảnh lên").click()
    expect(page.get_by_role("img", name="Ảnh của Nguyễn Thị Thử Nghiệm")).to_be_visible()
    expect(page.locator("#orders")).to_contain_text("Hôm nay không có y lệnh hiệu lực")
    shot(page, "chart-new-patient")

    # Day 1: 35 mg is above the induction start range — the BLOCK appears while typing.
    page.get_by_role("link", name="Y lệnh mới").click()
    expect(page.get_by_label("Giai đoạn")).to_have_value("induction")
    dose = page.get_by_label("Liều (mg), lần 1")
    dose.fill("35")
    block = _decisions(page).locator('[data-code="INDUCTION_FIRST_DOSE_TOO_HIGH"]')
    expect(block).to_be_visible()
    expect(block).to_have_class(re.compile(r"\bblock\b"))
    expect(_decisions(page).locator("[data-outcome]")).to_have_attribute("data-outcome", "BLOCK")
    shot(page, "order-35mg-blocked")

    # 20 mg clears it.
    dose.fill("20")
    expect(block).to_have_count(0)
    expect(_decisions(page).locator("[data-outcome]")).not_to_have_attribute("data-outcome", "BLOCK")
    shot(page, "order-20mg-cleared")

    # A wrong password signs nothing.
    page.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill("not-my-password")
    page.get_by_role("button", name="Ký y lệnh").click()
    expect(page.locator(".flash.error")).to_contain_text("Mật khẩu không đúng")
    expect(page.get_by_label("Liều (mg), lần 1")).to_have_value("20")

    for code in _decisions(page).locator('.decision.warn input[name="ack"]').all():
        code.check()
    page.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill("MMT-demo-2026")
    page.get_by_role("button", name="Ký y lệnh").click()
    expect(page.locator(".flash.info")).to_contain_text("Đã ký y lệnh")
    expect(page.locator("#orders")).to_contain_text("Dò liều, 20 mg/ngày")
    shot(page, "chart-day1-signed")

    # Day 2: 25 mg is an early increase — a WARN that needs a written reason.
    page.get_by_role("link", name="Y lệnh mới").click()
    tomorrow = live_server.today + timedelta(days=1)
    expect(page.get_by_label("Từ ngày (ngày đầu)")).to_have_value(tomorrow.strftime("%d/%m/%Y"))
    expect(page.get_by_label("Đến ngày (ngày cuối)")).to_have_value(tomorrow.strftime("%d/%m/%Y"))
    page.get_by_label("Liều (mg), lần 1").fill("25")
    warn = _decisions(page).locator('[data-code="INDUCTION_EARLY_INCREASE"]')
    expect(warn).to_be_visible()
    expect(warn).to_have_class(re.compile(r"\bwarn\b"))

    # Signing without acknowledging is refused by the server, and says why.
    page.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill("MMT-demo-2026")
    page.get_by_role("button", name="Ký y lệnh").click()
    expect(page.locator(".flash.error")).to_contain_text("xác nhận mọi cảnh báo")
    warn = _decisions(page).locator('[data-code="INDUCTION_EARLY_INCREASE"]')
    warn.get_by_role("checkbox").check()
    warn.get_by_label("Lý do (bắt buộc)").fill("Còn hội chứng cai, COWS 14")
    shot(page, "order-day2-warning-acknowledged")
    page.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill("MMT-demo-2026")
    page.get_by_role("button", name="Ký y lệnh").click()
    expect(page.locator(".flash.info")).to_contain_text("Đã ký y lệnh")
    rows = page.locator("#orders tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("25 mg")
    expect(rows.first).to_contain_text(tomorrow.strftime("%d/%m/%Y"))
    expect(rows.nth(1)).to_contain_text("20 mg")
    expect(rows.first).to_contain_text("Đã ký")
    shot(page, "chart-two-orders")

    # Stored: two signed orders, the second with its acknowledged reason; one draft reused.
    with live_server.database.unit_of_work() as session:
        patient = session.query(Patient).filter_by(full_name="Nguyễn Thị Thử Nghiệm").one()
        orders = session.query(Order).filter_by(patient_id=patient.id).order_by(Order.id).all()
        assert [(o.status, str(o.daily_total_mg)) for o in orders] == [
            (OrderStatus.SIGNED, "20.000"), (OrderStatus.SIGNED, "25.000")]
        assert [(a.reason_code, a.reason) for a in orders[1].acknowledgements] == [
            ("INDUCTION_EARLY_INCREASE", "Còn hội chứng cai, COWS 14")]
        assert patient.photo is not None


def test_physician_task_list_and_printable_card(page, login, shot):
    login(page, "bacsi1")
    page.get_by_role("navigation", name="Trình đơn chính").get_by_role("link", name="Việc cần làm").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Việc cần làm ngày")
    expect(page.get_by_role("heading", name=re.compile("Bị chặn tại quầy vì bỏ liều"))).to_be_visible()
    shot(page, "tasks")
    page.get_by_role("link", name="Bệnh nhân").click()
    page.get_by_label("Tên, mã bệnh nhân hoặc quét thẻ").fill("P000001")
    page.keyboard.press("Enter")
    expect(page.locator(".facts")).to_contain_text("P000001")
    expect(page.locator("svg.dose-chart")).to_be_visible()
    shot(page, "chart-demo-patient")
    page.get_by_role("link", name="In thẻ").click()
    card = page.locator(".patient-card svg")
    expect(card).to_be_visible()
    expect(card.locator('g.barcode[data-value="P000001"]')).to_have_count(1)
    expect(card).to_contain_text("THẺ ĐIỀU TRỊ METHADONE")
    shot(page, "card")
