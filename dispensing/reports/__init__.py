"""Registers and reports of controlled-drug stock, as PDF (WeasyPrint) and Excel (openpyxl).

Builders return a ``ReportDocument`` (Vietnamese headings, exact figures from the ledger);
``render_pdf`` and ``render_xlsx`` turn any of them into a file.
"""

from dispensing.reports.documents import Column, ColumnKind, ReportDocument, format_quantity
from dispensing.reports.monthly import Forecast, monthly_report
from dispensing.reports.pdf import render_html, render_pdf
from dispensing.reports.registers import (
    daily_dispensing_register,
    patient_dose_history,
    stock_register,
)
from dispensing.reports.workbook import render_xlsx

__all__ = [
    "Column",
    "ColumnKind",
    "Forecast",
    "ReportDocument",
    "daily_dispensing_register",
    "format_quantity",
    "monthly_report",
    "patient_dose_history",
    "render_html",
    "render_pdf",
    "render_xlsx",
    "stock_register",
]
