"""The monthly report of controlled-drug use, with the columns of TT 14/2015/TT-BYT Phụ lục 1:
opening, received, total, issued, hao hụt, dư thừa, closing, patients in treatment and the
forecast for the next period (a forecast more than 50 % above this period's use needs a written
justification); three signatures.

Issued is everything that left the clinic other than loss (doses, take-home, replacements,
returns, destruction); hao hụt is spill, priming and calibration liquid and the close's shortages;
dư thừa the close's surpluses. Transfers between the clinic's own locations do not count. So
closing = total − issued − hao hụt + dư thừa, and closing is checked against the ledger balance.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from dispensing.errors import ValidationFailed
from dispensing.models import Clinic, Dose, Lot, Product, Role, StockMovement, User
from dispensing.permissions import require_role
from dispensing.reports.documents import Column, ColumnKind, ReportDocument, place_and_date
from dispensing.stock.ledger import (
    PATIENT_KINDS,
    Term,
    balance,
    clinic_terms_by_day,
    sum_terms,
)

Q = ColumnKind.QUANTITY
# Forecasts above this multiple of the period's use need a written justification (+50 %).
FORECAST_JUSTIFY_ABOVE = Decimal("1.5")


@dataclass(frozen=True)
class Forecast:
    quantity: Decimal
    justification: str | None = None


def month_bounds(year: int, month: int) -> tuple[date, date]:
    if not 1 <= month <= 12 or not 2000 <= year <= 2100:
        raise ValidationFailed("no such month", code="PERIOD_INVALID")
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def _products(session: Session) -> list[Product]:
    """Controlled products with lots (rows that stay all zero are left out of the report)."""
    with_lots = select(Lot.product_id).distinct()
    return list(session.scalars(select(Product).where(Product.id.in_(with_lots), Product.controlled.is_(True))
                                .order_by(Product.id)))


def _patients(session: Session, clinic_id: int, product_id: int, first: date, last: date) -> int:
    return session.scalar(
        select(func.count(distinct(Dose.patient_id))).select_from(StockMovement)
        .join(Dose, Dose.id == StockMovement.dose_id)
        .where(StockMovement.clinic_id == clinic_id, StockMovement.product_id == product_id,
               StockMovement.kind.in_(list(PATIENT_KINDS)), StockMovement.business_date.between(first, last))
    ) or 0


def monthly_report(
    session: Session, user: User, *, year: int, month: int, forecasts: Mapping[int, Forecast] | None = None,
) -> ReportDocument:
    """Return the month's report. ``forecasts`` maps product id → next period's forecast (default:
    this period's use). Raises PermissionDenied, ValidationFailed (PERIOD_INVALID,
    FORECAST_INVALID, FORECAST_JUSTIFICATION_REQUIRED)."""
    require_role(user, Role.PHARMACIST, Role.PHYSICIAN, Role.ADMIN)
    first, last = month_bounds(year, month)
    clinic = session.get(Clinic, user.clinic_id)
    forecasts = dict(forecasts or {})
    rows, notes = [], []
    for product in _products(session):
        opening = balance(session, clinic_id=clinic.id, product_id=product.id, end_of=first - timedelta(days=1))
        terms = sum_terms(clinic_terms_by_day(session, clinic_id=clinic.id, product_id=product.id,
                                              first=first, last=last).values())
        received = terms[Term.RECEIVED]
        issued = terms[Term.ISSUED] + terms[Term.OTHER_OUT]
        loss = terms[Term.WASTE] + terms[Term.LOSS]
        surplus = terms[Term.SURPLUS]
        total = opening + received
        closing = total - issued - loss + surplus
        ledger_closing = balance(session, clinic_id=clinic.id, product_id=product.id, end_of=last)
        if closing != ledger_closing:  # pragma: no cover - a line of a kind the terms do not know
            raise RuntimeError(f"monthly report does not add up to the ledger: {closing} != {ledger_closing}")
        used = issued + loss
        forecast = forecasts.pop(product.id, None) or Forecast(used)
        if not isinstance(forecast.quantity, Decimal) or forecast.quantity < 0:
            raise ValidationFailed("forecast must be ≥ 0", code="FORECAST_INVALID")
        justification = (forecast.justification or "").strip()
        if forecast.quantity > used * FORECAST_JUSTIFY_ABOVE and not justification:
            raise ValidationFailed("forecast > 150 % of this period's use needs a justification",
                                   code="FORECAST_JUSTIFICATION_REQUIRED", product_id=product.id)
        if not any((opening, received, issued, loss, surplus, closing)):
            continue
        rows.append({
            "no": len(rows) + 1, "name": product.name, "strength": product.strength or "", "unit": product.unit,
            "opening": opening, "received": received, "total": total, "issued": issued, "loss": loss,
            "surplus": surplus, "closing": closing,
            "patients": _patients(session, clinic.id, product.id, first, last),
            "forecast": forecast.quantity, "note": justification,
        })
        if justification:
            increase = ((forecast.quantity / used - 1) * 100).quantize(Decimal(1), ROUND_HALF_UP) if used else None
            notes.append(f"Giải trình dự trù {product.name}"
                         f"{f' (tăng {increase}% so với kỳ trước)' if increase is not None else ''}: {justification}")
    if forecasts:
        raise ValidationFailed("forecast for a product not in the report", code="FORECAST_INVALID")
    columns = [
        Column("no", "STT", ColumnKind.INTEGER, 5), Column("name", "Tên thuốc", width=26),
        Column("strength", "Nồng độ, hàm lượng", width=12), Column("unit", "Đơn vị tính", width=9),
        Column("opening", "Tồn kho đầu kỳ", Q, 12), Column("received", "Nhập trong kỳ", Q, 12),
        Column("total", "Tổng số", Q, 12), Column("issued", "Xuất trong kỳ", Q, 12),
        Column("loss", "Hao hụt", Q, 10), Column("surplus", "Dư thừa", Q, 10),
        Column("closing", "Tồn kho cuối kỳ", Q, 12),
        Column("patients", "Số người bệnh đang điều trị", ColumnKind.INTEGER, 11),
        Column("forecast", "Dự trù kỳ tới", Q, 12), Column("note", "Ghi chú", width=20),
    ]
    return ReportDocument(
        code=f"bao-cao-thang-{year}-{month:02d}",
        title="BÁO CÁO SỬ DỤNG THUỐC GÂY NGHIỆN (METHADONE)",
        subtitle=[f"Tháng {month:02d} năm {year} (từ ngày {first:%d/%m/%Y} đến ngày {last:%d/%m/%Y})",
                  "Mẫu Phụ lục 1 — Thông tư 14/2015/TT-BYT"],
        columns=columns, rows=rows, notes=notes,
        organisation=[clinic.name.upper(), f"Mã cơ sở: {clinic.code}"],
        place_and_date=place_and_date("", last).lstrip(", ").capitalize(),
        signatures=["NGƯỜI LẬP BÁO CÁO", "TRƯỞNG KHOA DƯỢC", "THỦ TRƯỞNG ĐƠN VỊ"],
        summary={"products": [{k: row[k] for k in ("opening", "received", "total", "issued", "loss", "surplus",
                                                   "closing", "patients", "forecast")} for row in rows]},
    )
