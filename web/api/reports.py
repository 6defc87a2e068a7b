"""Reports API: the daily dispensing register, the receipts/issues/stock register, the monthly
report (TT 14/2015 Phụ lục 1) and a patient's dose history, as JSON, PDF or Excel (``format``).
The documents themselves are Vietnamese legal forms."""

from __future__ import annotations

from decimal import Decimal

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_babel import lazy_gettext
from flask_smorest import Blueprint

from dispensing import reports
from web import context
from web.auth import signed_in_user
from web.database import db
from web.errors import error_response, register_messages

blp = Blueprint("api_reports", __name__, description="Registers and reports (sổ sách, báo cáo)")


@blp.before_request
def _signed_in():
    """Every endpoint here needs a signed-in user: a JSON 401 otherwise."""
    if signed_in_user() is None:
        return error_response(401, "LOGIN_REQUIRED")
    return None


register_messages({
    "PERIOD_INVALID": lazy_gettext("Choose a period of one day to one year."),
    "FORECAST_INVALID": lazy_gettext("A forecast is a quantity of zero or more for a product in the report."),
    "FORECAST_JUSTIFICATION_REQUIRED": lazy_gettext(
        "The forecast is more than 50 % above this period's use: write a justification."),
})

PDF = "application/pdf"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILE_RESPONSES = {
    "200": {"description": "The report as JSON, or the file when format is pdf or xlsx",
            "content": {PDF: {"schema": {"type": "string", "format": "binary"}},
                        XLSX: {"schema": {"type": "string", "format": "binary"}}}},
}


class FormatSchema(ma.Schema):
    format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(["json", "pdf", "xlsx"]))


class DailyQuerySchema(FormatSchema):
    business_date = ma.fields.Date(load_default=None)
    product_id = ma.fields.Integer(load_default=None)


class PeriodQuerySchema(FormatSchema):
    first = ma.fields.Date(required=True)
    last = ma.fields.Date(required=True)


class StockRegisterQuerySchema(PeriodQuerySchema):
    product_id = ma.fields.Integer(load_default=None)


class MonthQuerySchema(FormatSchema):
    year = ma.fields.Integer(required=True)
    month = ma.fields.Integer(required=True)


class ForecastInSchema(ma.Schema):
    product_id = ma.fields.Integer(required=True)
    quantity = ma.fields.Decimal(required=True)
    justification = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class MonthlyRequestSchema(MonthQuerySchema):
    forecasts = ma.fields.List(ma.fields.Nested(ForecastInSchema), load_default=list)


class ColumnSchema(ma.Schema):
    key = ma.fields.String()
    heading = ma.fields.String()
    kind = ma.fields.Function(lambda column: column.kind.value)


class ReportSchema(ma.Schema):
    code = ma.fields.String()
    title = ma.fields.String()
    subtitle = ma.fields.List(ma.fields.String())
    columns = ma.fields.List(ma.fields.Nested(ColumnSchema))
    rows = ma.fields.Method("_rows")
    totals = ma.fields.Method("_totals")
    notes = ma.fields.List(ma.fields.String())
    summary = ma.fields.Method("_summary")

    @staticmethod
    def _plain(value):
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dict):
            return {key: ReportSchema._plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [ReportSchema._plain(item) for item in value]
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return value

    def _rows(self, document):
        return [self._plain(row) for row in document.rows]

    def _totals(self, document):
        return self._plain(document.totals) if document.totals is not None else None

    def _summary(self, document):
        return self._plain(document.summary)


def _respond(document: reports.ReportDocument, fmt: str):
    if fmt == "pdf":
        body, mimetype, suffix = reports.render_pdf(document), PDF, "pdf"
    elif fmt == "xlsx":
        body, mimetype, suffix = reports.render_xlsx(document), XLSX, "xlsx"
    else:
        return document
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{document.code}.{suffix}"'})


@blp.route("/daily-register")
class DailyRegister(MethodView):
    @blp.arguments(DailyQuerySchema, location="query")
    @blp.response(200, ReportSchema)
    @blp.doc(responses=FILE_RESPONSES)
    def get(self, args):
        """Sổ cấp phát hằng ngày: every dose, take-home and replacement of a business day."""
        document = reports.daily_dispensing_register(db(), context.actor(), day=args["business_date"] or context.today(),
                                                     product_id=args["product_id"])
        return _respond(document, args["format"])


@blp.route("/stock-register")
class StockRegister(MethodView):
    @blp.arguments(StockRegisterQuerySchema, location="query")
    @blp.response(200, ReportSchema)
    @blp.doc(responses=FILE_RESPONSES)
    def get(self, args):
        """Sổ theo dõi xuất, nhập, tồn kho thuốc gây nghiện for a period."""
        document = reports.stock_register(db(), context.actor(), first=args["first"], last=args["last"],
                                          product_id=args["product_id"])
        return _respond(document, args["format"])


@blp.route("/monthly")
class Monthly(MethodView):
    @blp.arguments(MonthQuerySchema, location="query")
    @blp.response(200, ReportSchema)
    @blp.doc(responses=FILE_RESPONSES)
    def get(self, args):
        """Monthly report (TT 14/2015 Phụ lục 1) with each forecast equal to this month's use."""
        document = reports.monthly_report(db(), context.actor(), year=args["year"], month=args["month"])
        return _respond(document, args["format"])

    @blp.arguments(MonthlyRequestSchema)
    @blp.response(200, ReportSchema)
    @blp.doc(responses=FILE_RESPONSES)
    def post(self, data):
        """Monthly report with the forecasts given (above +50 % a justification is required)."""
        forecasts = {item["product_id"]: reports.Forecast(item["quantity"], item["justification"])
                     for item in data["forecasts"]}
        document = reports.monthly_report(db(), context.actor(), year=data["year"], month=data["month"],
                                          forecasts=forecasts)
        return _respond(document, data["format"])


@blp.route("/patients/<int:patient_id>/dose-history")
class PatientHistory(MethodView):
    @blp.arguments(PeriodQuerySchema, location="query")
    @blp.response(200, ReportSchema)
    @blp.doc(responses=FILE_RESPONSES)
    def get(self, args, patient_id):
        """A patient's doses in a period with what the ledger booked for each."""
        document = reports.patient_dose_history(db(), context.actor(), patient_id=patient_id, first=args["first"],
                                                last=args["last"])
        return _respond(document, args["format"])
