"""Pharmacist pages (issue 7): stock, receipts, bottles and transfers, the reconciliation list and
a pump's worksheet, its live check (htmx), and the reports page."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.pages import register


def _pump_and_methadone(session: Session) -> tuple[int, int]:
    from dispensing.models import Location, LocationKind, Product

    pump = session.scalar(select(Location.id).where(Location.kind == LocationKind.PUMP).order_by(Location.id).limit(1))
    methadone = session.scalar(select(Product.id).where(Product.unit == "ml").order_by(Product.id).limit(1))
    return pump, methadone


def _worksheet(session: Session) -> str:
    pump, methadone = _pump_and_methadone(session)
    return f"/pharmacy/reconciliation/{pump}/{methadone}"


def _latest_receipt(session: Session) -> str:
    from dispensing.models import Receipt

    receipt = session.scalar(select(Receipt.id).order_by(Receipt.id.desc()).limit(1))
    return f"/pharmacy/receipts/{receipt}" if receipt else "/pharmacy/receipts/new"


register("pharmacy: stock by location, lot and bottle", "duocsi1", "/pharmacy/stock")
register("pharmacy: record a delivery", "duocsi1", "/pharmacy/receipts/new")
register("pharmacy: a receipt with bottle labels", "duocsi1", _latest_receipt)
register("pharmacy: bottles and transfers", "duocsi1", "/pharmacy/transfers")
register("pharmacy: reconciliation (today)", "duocsi1", "/pharmacy/reconciliation")
register("pharmacy: pump worksheet", "duocsi1", _worksheet)
register("pharmacy: worksheet check (htmx)", "duocsi1", lambda s: _worksheet(s) + "/preview", method="POST",
         data={"method": "cylinder", "value": "500"}, csrf_from="/pharmacy/reports", htmx=True)
register("pharmacy: registers and reports", "duocsi1", "/pharmacy/reports")
