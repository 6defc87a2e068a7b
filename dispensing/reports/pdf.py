"""PDF rendering with WeasyPrint from one Jinja2 template (no Flask): DejaVu Sans covers every
Vietnamese letter, so diacritics print and extract correctly."""

from __future__ import annotations

import warnings

from jinja2 import Environment, PackageLoader, select_autoescape

from dispensing.reports.documents import NATIONAL_HEADER, ColumnKind, ReportDocument, format_cell

_environment = Environment(
    loader=PackageLoader("dispensing.reports", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(document: ReportDocument) -> str:
    rows = [[format_cell(column, row.get(column.key)) for column in document.columns] for row in document.rows]
    totals = None
    if document.totals is not None:
        totals = [format_cell(column, document.totals.get(column.key)) for column in document.columns]
        totals[0] = totals[0] or document.totals_label
    numeric = [column.kind in (ColumnKind.QUANTITY, ColumnKind.INTEGER) for column in document.columns]
    return _environment.get_template("report.html").render(
        document=document, rows=rows, totals=totals, numeric=numeric, national=NATIONAL_HEADER,
    )


def _weasyprint_html():
    # Imported on first use: it is slow to import and only reports need it. Without the system's
    # libharfbuzz-subset it warns at import that future versions will need it; PDFs are still
    # correct (fonts are subset by fontTools), so that one packaging warning is silenced.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HarfBuzz-Subset", category=DeprecationWarning)
        from weasyprint import HTML
    return HTML


def render_pdf(document: ReportDocument) -> bytes:
    """Return the PDF bytes of ``document``."""
    return _weasyprint_html()(string=render_html(document)).write_pdf()
