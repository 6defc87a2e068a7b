"""Excel rendering with openpyxl: the same document as the PDF, figures as numbers."""

from __future__ import annotations

import io
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from dispensing.reports.documents import ColumnKind, ReportDocument

QUANTITY_FORMAT = "#,##0.00#"
_thin = Side(style="thin")
_border = Border(left=_thin, right=_thin, top=_thin, bottom=_thin)


def _value(kind: ColumnKind, value):
    if value is None:
        return None
    if kind is ColumnKind.QUANTITY:
        return Decimal(value)
    return value


def render_xlsx(document: ReportDocument) -> bytes:
    """Return the .xlsx bytes of ``document``: title lines, a header row, data rows, a totals row."""
    book = Workbook()
    sheet = book.active
    sheet.title = document.code[:31]
    width = len(document.columns)
    line = 1
    for text in [*document.organisation, document.title, *document.subtitle]:
        sheet.cell(row=line, column=1, value=text).font = Font(bold=text == document.title,
                                                                size=13 if text == document.title else 10)
        sheet.merge_cells(start_row=line, start_column=1, end_row=line, end_column=width)
        sheet.cell(row=line, column=1).alignment = Alignment(horizontal="center")
        line += 1
    line += 1
    header_row = line
    for index, column in enumerate(document.columns, start=1):
        cell = sheet.cell(row=line, column=index, value=column.heading)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="EEEEEE")
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        cell.border = _border
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    for row in document.rows:
        line += 1
        for index, column in enumerate(document.columns, start=1):
            cell = sheet.cell(row=line, column=index, value=_value(column.kind, row.get(column.key)))
            cell.border = _border
            if column.kind is ColumnKind.QUANTITY:
                cell.number_format = QUANTITY_FORMAT
            elif column.kind is ColumnKind.DATE:
                cell.number_format = "DD/MM/YYYY"
    if document.totals is not None:
        line += 1
        for index, column in enumerate(document.columns, start=1):
            value = _value(column.kind, document.totals.get(column.key))
            if index == 1 and value is None:
                value = document.totals_label
            cell = sheet.cell(row=line, column=index, value=value)
            cell.font = Font(bold=True)
            cell.border = _border
            if column.kind is ColumnKind.QUANTITY:
                cell.number_format = QUANTITY_FORMAT
    sheet.freeze_panes = sheet.cell(row=header_row + 1, column=1)
    for note in document.notes:
        line += 2
        sheet.cell(row=line, column=1, value=note)
    if document.place_and_date:
        line += 2
        sheet.cell(row=line, column=max(1, width - 3), value=document.place_and_date)
    if document.signatures:
        line += 1
        step = max(1, width // len(document.signatures))
        for index, title in enumerate(document.signatures):
            sheet.cell(row=line, column=1 + index * step, value=title).font = Font(bold=True)
            sheet.cell(row=line + 1, column=1 + index * step, value="(Ký, ghi rõ họ tên)")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
