"""Registers and the monthly report: totals equal the ledger to the 0.01 ml; the PDF's text has
the Vietnamese headings and the same totals; the Excel file opens and sums to the same numbers."""

import io
import unicodedata
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import func, select

from dispensing import reports, stock
from dispensing.errors import PermissionDenied, ValidationFailed
from dispensing.models import DiscrepancyReason, Dose, MeasureMethod, MovementKind, StockMovement
from dispensing.reports.documents import format_quantity
from tests.stock_world import PASSWORD

D = Decimal


def _pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return unicodedata.normalize("NFC", "\n".join(page.extract_text() for page in reader.pages))


def _sheet_table(data: bytes, heading: str):
    """Return (header, data rows, totals row) of the report sheet."""
    sheet = load_workbook(io.BytesIO(data), data_only=True).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    start = next(i for i, row in enumerate(rows) if heading in row)
    header = rows[start]
    body = []
    for row in rows[start + 1:]:
        if row[0] == "Tổng cộng":
            return header, body, row
        if all(cell is None for cell in row):
            break
        body.append(row)
    return header, body, None


def _dec(value) -> Decimal:
    return D(str(value)).quantize(D("0.001"))


@pytest.fixture
def month(world):
    """February: a delivery, two pumps dosing for three days, a spill, priming, a return,
    closes with a loss and a surplus, a correction; March 1st: one more dose."""
    start = datetime(2026, 2, 10, 1, 0, tzinfo=UTC)
    world.now = start
    bottles = world.receive("1000", "1000", "500", "100").containers
    for pump in (0, 1):
        stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[pump].id,
                               container_id=bottles[pump].id, now=world.now)
    stock.record_priming(world.session, world.nurse, location_id=world.pumps[0].id, quantity=D("3.5"),
                         now=world.now)
    patients = [world.patient() for _ in range(4)]
    for day in range(3):
        world.now = start + timedelta(days=day)
        for i, patient in enumerate(patients):
            world.dose(i % 2, "8.35", patient=patient)
    stock.record_waste(world.session, world.nurse, location_id=world.pumps[1].id, quantity=D("2.25"),
                       reason="Đổ", password=PASSWORD, witness=world.witness(), now=world.now)
    stock.return_to_supplier(world.session, world.pharmacist, location_id=world.safe.id,
                             container_id=bottles[3].id, reason="Sai nhãn", password=PASSWORD, now=world.now)
    first_dose = world.session.scalar(select(StockMovement).where(StockMovement.kind == MovementKind.DOSE)
                                      .order_by(StockMovement.id))
    stock.correct_movement(world.session, world.pharmacist, movement_id=first_dose.id, delta=D("-0.35"),
                           reason="Bơm ghi thừa", password=PASSWORD, now=world.now)
    evening = world.now + timedelta(hours=10)
    for pump, off in ((0, D("-1.10")), (1, D("0.40"))):
        sheet = stock.worksheet(world.session, location_id=world.pumps[pump].id, product_id=world.methadone.id,
                                day=world.today)
        stock.close_day(world.session, world.pharmacist, location_id=world.pumps[pump].id,
                        product_id=world.methadone.id, day=world.today,
                        measurement=stock.Measurement(MeasureMethod.PUMP, value=sheet.expected_close + off),
                        password=PASSWORD, now=evening)
    world.now = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    world.dose(0, "8.35", patient=patients[0])
    return patients


def _ledger(world, kinds, first, last, *, leaving=True):
    m = StockMovement
    side = m.from_location_id if leaving else m.to_location_id
    other = m.to_location_id if leaving else m.from_location_id
    return world.session.scalar(select(func.coalesce(func.sum(m.quantity), 0)).where(
        m.kind.in_(kinds), side.is_not(None), other.is_(None), m.business_date.between(first, last),
        m.corrects_id.is_(None)))


def test_monthly_report_columns_equal_the_ledger_in_pdf_and_excel(world, month):
    document = reports.monthly_report(world.session, world.pharmacist, year=2026, month=2)
    [row] = [r for r in document.rows if r["name"] == world.methadone.name]
    first, last = date(2026, 2, 1), date(2026, 2, 28)
    received = _ledger(world, [MovementKind.RECEIPT], first, last, leaving=False)
    doses = _ledger(world, [MovementKind.DOSE], first, last)
    returned = _ledger(world, [MovementKind.RETURN], first, last)
    waste = _ledger(world, [MovementKind.WASTE, MovementKind.PRIMING], first, last)
    loss = _ledger(world, [MovementKind.ADJUSTMENT], first, last)
    surplus = _ledger(world, [MovementKind.ADJUSTMENT], first, last, leaving=False)
    assert (row["opening"], row["received"], row["total"]) == (D("0"), received, received)
    assert received == D("2600") and doses == D("100.20") and loss == D("1.10") and surplus == D("0.40")
    assert row["issued"] == doses - D("0.35") + returned  # the correction takes back 0.35 ml
    assert row["loss"] == waste + loss == D("6.85") and row["surplus"] == surplus
    closing = stock.balance(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id, end_of=last)
    assert row["closing"] == closing == row["total"] - row["issued"] - row["loss"] + row["surplus"]
    assert row["patients"] == 4 and row["forecast"] == row["issued"] + row["loss"]

    text = _pdf_text(reports.render_pdf(document))
    for heading in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "BÁO CÁO SỬ DỤNG THUỐC GÂY NGHIỆN (METHADONE)",
                    "Tháng 02 năm 2026", "Thông tư 14/2015/TT-BYT", "Tồn kho", "đầu kỳ", "Hao", "hụt", "Dư",
                    "thừa", "Số người bệnh", "đang điều trị", "Dự trù", "THỦ TRƯỞNG ĐƠN VỊ", "TRƯỞNG KHOA DƯỢC"):
        assert heading in text, heading
    for figure in (row["received"], row["issued"], row["loss"], row["surplus"], row["closing"]):
        assert format_quantity(figure) in text

    header, body, _totals = _sheet_table(reports.render_xlsx(document), "Tồn kho cuối kỳ")
    cells = dict(zip(header, next(r for r in body if r[1] == world.methadone.name), strict=True))
    assert _dec(cells["Nhập trong kỳ"]) == received
    assert _dec(cells["Xuất trong kỳ"]) == row["issued"]
    assert _dec(cells["Hao hụt"]) == row["loss"] and _dec(cells["Dư thừa"]) == row["surplus"]
    assert _dec(cells["Tồn kho cuối kỳ"]) == closing
    assert (_dec(cells["Tổng số"]) - _dec(cells["Xuất trong kỳ"]) - _dec(cells["Hao hụt"])
            + _dec(cells["Dư thừa"])) == closing


def test_a_forecast_more_than_half_above_use_needs_a_justification(world, month):
    use = D("104.95") + D("6.85") + D("100")
    with pytest.raises(ValidationFailed) as refused:
        reports.monthly_report(world.session, world.pharmacist, year=2026, month=2,
                               forecasts={world.methadone.id: reports.Forecast(use * 2)})
    assert refused.value.params["code"] == "FORECAST_JUSTIFICATION_REQUIRED"
    document = reports.monthly_report(
        world.session, world.pharmacist, year=2026, month=2,
        forecasts={world.methadone.id: reports.Forecast(use * 2, "Thêm 40 người bệnh chuyển đến")})
    row = next(r for r in document.rows if r["name"] == world.methadone.name)
    assert row["forecast"] == use * 2 and row["note"] == "Thêm 40 người bệnh chuyển đến"
    assert document.notes and "tăng" in document.notes[0]
    with pytest.raises(PermissionDenied):
        reports.monthly_report(world.session, world.nurse, year=2026, month=2)


def test_daily_register_lists_every_issue_with_corrections_and_sums_to_the_ledger(world, month):
    day = date(2026, 2, 12)
    document = reports.daily_dispensing_register(world.session, world.pharmacist, day=day)
    m = StockMovement
    ledger = world.session.scalar(select(func.sum(m.quantity)).where(m.kind == MovementKind.DOSE,
                                                                     m.business_date == day))
    assert ledger == D("33.40")
    assert document.totals["quantity"] == ledger - D("0.35")  # the correction booked that day
    assert [r["kind"] for r in document.rows].count("Uống tại chỗ") == 4
    assert any(r["kind"].startswith("Điều chỉnh") and r["quantity"] == D("-0.35") for r in document.rows)
    text = _pdf_text(reports.render_pdf(document))
    assert "SỔ CẤP PHÁT THUỐC HẰNG NGÀY" in text and "Ngày 12/02/2026" in text
    assert format_quantity(document.totals["quantity"]) in text
    header, body, totals = _sheet_table(reports.render_xlsx(document), "STT")
    column = header.index("Số lượng (ml)")
    assert sum((_dec(r[column]) for r in body), D(0)) == _dec(totals[column]) == document.totals["quantity"]


def test_stock_register_rolls_forward_day_by_day_to_the_ledger(world, month):
    document = reports.stock_register(world.session, world.pharmacist, first=date(2026, 2, 1),
                                      last=date(2026, 3, 1))
    rows = document.rows
    assert [r["date"] for r in rows] == [date(2026, 2, 10), date(2026, 2, 11), date(2026, 2, 12), date(2026, 3, 1)]
    for previous, row in zip(rows, rows[1:], strict=False):
        assert row["opening"] == previous["closing"]
    for row in rows:
        assert row["closing"] == (row["opening"] + row["received"] - row["issued"] - row["other_out"]
                                  - row["loss"] + row["surplus"])
    assert rows[0]["documents"].startswith("PN ")
    closing = stock.balance(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id,
                            end_of=date(2026, 3, 1))
    assert document.totals["closing"] == rows[-1]["closing"] == closing
    header, body, totals = _sheet_table(reports.render_xlsx(document), "Tồn đầu")
    for heading, key in (("Nhập", "received"), ("Xuất (cấp cho người bệnh)", "issued"), ("Hao hụt", "loss")):
        column = header.index(heading)
        assert sum((_dec(r[column]) for r in body), D(0)) == _dec(totals[column]) == document.totals[key]


def test_patient_history_books_what_the_ledger_booked(world, month):
    patient = month[0]
    document = reports.patient_dose_history(world.session, world.nurse, patient_id=patient.id,
                                            first=date(2026, 2, 1), last=date(2026, 3, 31))
    assert len(document.rows) == 4
    assert [r["quantity"] for r in document.rows] == [D("8.00"), D("8.35"), D("8.35"), D("8.35")]
    m = StockMovement
    lines = world.session.execute(select(m.quantity, m.from_location_id).join(Dose, Dose.id == m.dose_id)
                                  .where(Dose.patient_id == patient.id)).all()
    ledger = sum((quantity if source is not None else -quantity for quantity, source in lines), D(0))
    assert document.totals["quantity"] == ledger == D("33.05")
    with pytest.raises(ValidationFailed):
        reports.patient_dose_history(world.session, world.nurse, patient_id=patient.id, first=date(2026, 3, 1),
                                     last=date(2026, 2, 1))


def test_an_outside_tolerance_close_is_in_the_month_as_hao_hut(world):
    bottle = world.receive("1000").containers[0]
    stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id, container_id=bottle.id,
                           now=world.now)
    stock.close_day(world.session, world.pharmacist, location_id=world.pumps[0].id, product_id=world.methadone.id,
                    day=world.today, measurement=stock.Measurement(MeasureMethod.PUMP, value=D("950")),
                    password=PASSWORD, witness=world.witness(world.nurse),
                    discrepancy_reason=DiscrepancyReason.SUSPECTED_DIVERSION, investigation_note="Báo cáo công an",
                    now=world.now + timedelta(hours=9))
    row = next(r for r in reports.monthly_report(world.session, world.admin, year=2026, month=3).rows)
    assert (row["loss"], row["closing"]) == (D("50"), D("950"))
