"""A pharmacist's evening in a real browser, in Vietnamese: open the stock page, find today's open
reconciliation worksheet of counter 3's pump reservoir on the reconciliation page (the demo has
closed every earlier day), put the reservoir on the simulated balance (the ``sim://`` balance's pan
control) and read it through the MT-SICS driver, check the measured close against the expected one,
be refused with a wrong password, sign with the right one and close the day, then see it locked and
the stored record; finally download the day's register as a PDF.

Counter 3 is used because no other browser test works there today: a closed day refuses every
later movement at that location.

"Read balance" is a weighing request that counter 3's balance service answers (started here as
``run.py`` starts it in single-PC mode): the page polls until the weight is there; the web server
itself never opens the balance's port."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from dispensing import stock
from dispensing.demo import DEMO_PASSWORD
from dispensing.models import (
    Device,
    DeviceKind,
    Location,
    LocationKind,
    Lot,
    Product,
    Reconciliation,
)

pytestmark = pytest.mark.browser

RESERVOIR = "BOM-3"
BALANCE = "BAL-3"  # the balance at counter 3, the worksheet's default for its reservoir


@pytest.fixture(scope="module")
def balance_services(live_server):
    """The demo counters' balance services in this process, as ``run.py`` starts them."""
    from web.counter_service import start_in_process_balance_services, stop_in_process_services

    services = start_in_process_balance_services(live_server.database, poll_s=0.2)
    assert {s.name for s in services} >= {"Q3"}, "counter 3's balance has no service"
    yield services
    stop_in_process_services()


def _reservoir_today(live_server):
    """Counter 3's reservoir, methadone, today's expected close, its lot's density and the balance."""
    day = live_server.today
    with live_server.session() as session:
        reservoir = session.scalar(select(Location).where(Location.code == RESERVOIR))
        assert reservoir.kind is LocationKind.PUMP
        methadone = session.scalar(select(Product).where(Product.unit == "ml").order_by(Product.id))
        sheet = stock.worksheet(session, location_id=reservoir.id, product_id=methadone.id, day=day)
        held = stock.item_balances(session, reservoir.id, methadone.id, day)
        [density] = {session.get(Lot, lot_id).density_g_per_ml for (lot_id, _c), amount in held.items() if amount > 0}
        balance = session.scalar(select(Device).where(Device.kind == DeviceKind.BALANCE, Device.code == BALANCE))
        assert balance.port_url.startswith("sim://")
        assert session.scalar(select(Reconciliation).where(Reconciliation.location_id == reservoir.id,
                                                           Reconciliation.business_date == day)) is None
        session.expunge_all()
    return day, reservoir, methadone, sheet.expected_close, density, balance


def _vi(value: Decimal) -> str:
    return format(value, "f").replace(".", ",")


def test_pharmacist_reads_the_balance_and_closes_today(page, login, shot, live_server, tmp_path, balance_services):
    from web.pharmacy_balance import simulator_for

    day, reservoir, methadone, expected, density, balance = _reservoir_today(live_server)
    assert expected > 0
    # A little short of the ledger, inside both limits (± 0.5 % of the expected close and ± 2 ml).
    short = min(Decimal("1.5"), (expected * Decimal("0.004")).quantize(Decimal("0.1"), rounding=ROUND_DOWN))
    assert short > 0
    measured = (expected - short).quantize(Decimal("0.01"))
    grams = (measured * density).quantize(Decimal("0.01"))
    simulator_for(balance).load_g = Decimal(0)  # nothing on the pan until the page puts it there

    login(page, "duocsi1")
    page.get_by_role("navigation", name="Trình đơn chính").get_by_role("link", name="Tồn kho").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Kho thuốc gây nghiện")
    expect(page.locator(".fefo-first").first).to_be_visible()
    shot(page, "stock")

    # The reconciliation page opens on today, with today's worksheets still open.
    page.get_by_role("navigation", name="Trình đơn chính").get_by_role("link", name="Đối soát").click()
    expect(page.get_by_label("Ngày làm việc")).to_have_value(day.strftime("%d/%m/%Y"))
    row = page.locator("table.worksheets tbody tr", has_text=f"({RESERVOIR})")
    expect(row).to_contain_text("Chưa chốt")
    shot(page, "reconciliation-today")
    row.get_by_role("link", name=f"Bảng đối soát {RESERVOIR} {methadone.name}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(reservoir.name)
    expect(page.locator("#expected-close")).to_contain_text(" ml")
    expect(page.get_by_label("Cân", exact=True)).to_have_value(str(balance.id))

    page.get_by_label("Cân (khối lượng ÷ tỷ trọng của lô)").check()
    # The simulated stand-in for putting the reservoir on the pan: empty until typed.
    pan = page.get_by_label("Cân mô phỏng — khối lượng trên đĩa cân (g)")
    expect(pan).to_have_value("")
    # A refused weight comes back with its reason on the page (the 422 answer is swapped in).
    pan.fill("-5")
    page.get_by_role("button", name="Đặt lên cân mô phỏng").click()
    expect(page.locator("#sim-status .field-error")).to_be_visible()
    pan = page.get_by_label("Cân mô phỏng — khối lượng trên đĩa cân (g)")
    pan.fill(_vi(grams))
    page.get_by_role("button", name="Đặt lên cân mô phỏng").click()
    expect(page.locator("#sim-status")).to_contain_text("lên đĩa cân mô phỏng")
    assert simulator_for(balance).load_g == grams
    page.get_by_role("button", name="Đọc cân").click()
    # The request is answered by the counter's balance service; the page polls until it is.
    expect(page.locator("#reading-status")).to_contain_text("Số đọc ổn định")
    expect(page.get_by_role("button", name="Đọc cân")).to_be_enabled()
    expect(page.get_by_label("Khối lượng (g)")).to_have_value(_vi(grams))
    page.get_by_role("button", name="Kiểm tra so với tồn cuối dự kiến").click()
    expect(page.locator("#preview")).to_contain_text("Trong ngưỡng cho phép")
    expect(page.locator("#preview")).to_contain_text(f"Ghi nhận hao hụt: {_vi(short)} ml")
    shot(page, "worksheet-balance-read")

    # A wrong password closes nothing.
    page.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill("not-my-password")
    page.get_by_role("button", name="Ký và chốt sổ ngày").click()
    expect(page.locator("#form-error")).to_be_visible()
    with live_server.session() as session:
        assert session.scalar(select(Reconciliation).where(Reconciliation.location_id == reservoir.id,
                                                           Reconciliation.business_date == day)) is None
    page.get_by_label("Mật khẩu của bạn (bắt buộc để ký)").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Ký và chốt sổ ngày").click()
    expect(page.locator(".flash.info")).to_contain_text("Đã chốt sổ ngày và khóa")
    expect(page.get_by_role("heading", name="Ngày đã chốt sổ và khóa")).to_be_visible()
    expect(page.locator(".locked-record")).to_contain_text("Cân (khối lượng ÷ tỷ trọng của lô)")
    expect(page.get_by_role("button", name="Ký và chốt sổ ngày")).to_have_count(0)
    expect(page.get_by_label("Cân mô phỏng — khối lượng trên đĩa cân (g)")).to_have_count(0)
    shot(page, "day-locked")

    with live_server.session() as session:
        stored = session.scalar(select(Reconciliation).where(Reconciliation.location_id == reservoir.id,
                                                             Reconciliation.business_date == day))
        assert stored.status.value == "closed" and stored.measure_method.value == "balance"
        assert stored.measured_close == measured and stored.loss == short and stored.within_tolerance
        assert Decimal(stored.measure_detail["weight_g"]) == grams

    page.get_by_role("navigation", name="Trình đơn chính").get_by_role("link", name="Đối soát").click()
    expect(page.locator("table.worksheets tbody tr", has_text=f"({RESERVOIR})")).to_contain_text("Đã chốt")

    # The register of that day, as a PDF.
    page.get_by_role("navigation", name="Trình đơn chính").get_by_role("link", name="Sổ sách và báo cáo").click()
    page.get_by_label("Ngày làm việc").fill(day.strftime("%d/%m/%Y"))
    shot(page, "reports")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Tải sổ cấp phát hằng ngày").click()
    target = tmp_path / "register.pdf"
    download_info.value.save_as(target)
    assert target.read_bytes().startswith(b"%PDF")
