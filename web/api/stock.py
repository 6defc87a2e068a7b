"""Stock API (kho thuốc gây nghiện): receipts and anomalies, bottles on pumps, transfers, witnessed
waste, priming and calibration liquid, returns, destruction, signed corrections, quarantine
decisions, balances, the reconciliation worksheet and close, the morning forecast and reminders.

Signatures travel as the signer's ``password`` (re-authentication) and, for two-person records, a
``witness`` {username, password} (the head of unit co-signs as ``unit_head`` {username, password}).
Quantities are decimal strings or numbers in the product's unit
(ml for liquids); balance readings are grams.
"""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_babel import lazy_gettext
from flask_smorest import Blueprint
from sqlalchemy import or_, select

from dispensing import stock
from dispensing.errors import NotFound, ValidationFailed
from dispensing.models import (
    AnomalyKind,
    Container,
    ContainerAttachment,
    DiscrepancyReason,
    Location,
    Lot,
    MeasureMethod,
    QuarantineOutcome,
    Receipt,
    ReceiptAnomaly,
    Reconciliation,
    Reminder,
    Role,
    StockForecast,
    StockMovement,
)
from dispensing.permissions import require_role
from dispensing.stock.ledger import balances_by_location
from dispensing.stock.signatures import require_same_clinic
from web import context
from web.auth import signed_in_user
from web.database import db
from web.errors import error_response, register_messages

blp = Blueprint("api_stock", __name__, description="Controlled-drug stock (kho thuốc gây nghiện)")


@blp.before_request
def _signed_in():
    """Every endpoint here needs a signed-in user: a JSON 401 otherwise."""
    if signed_in_user() is None:
        return error_response(401, "LOGIN_REQUIRED")
    return None


register_messages({
    "LOCATION_NOT_FOUND": lazy_gettext("Stock location not found."),
    "PRODUCT_NOT_FOUND": lazy_gettext("Product not found."),
    "LOT_NOT_FOUND": lazy_gettext("Lot not found."),
    "CONTAINER_NOT_FOUND": lazy_gettext("No bottle has this label."),
    "MOVEMENT_NOT_FOUND": lazy_gettext("Ledger line not found."),
    "RECEIPT_NOT_FOUND": lazy_gettext("Receipt not found."),
    "ANOMALY_NOT_FOUND": lazy_gettext("Anomaly record not found."),
    "QUANTITY_INVALID": lazy_gettext("The quantity must be a number."),
    "QUANTITY_NOT_POSITIVE": lazy_gettext("The quantity must be more than zero."),
    "QUANTITY_PRECISION": lazy_gettext("Quantities have at most three decimal places."),
    "DAY_CLOSED": lazy_gettext("This day is closed for this location: record a correction dated today instead."),
    "INSUFFICIENT_STOCK": lazy_gettext("The ledger does not hold that much of this lot or bottle here."),
    "LOT_EXPIRED": lazy_gettext("This lot has expired: it cannot go to a pump or counter or be dispensed."),
    "CONCENTRATION_NOT_VERIFIED": lazy_gettext("The lot's concentration has not been verified: it cannot be issued."),
    "CONCENTRATION_REQUIRED": lazy_gettext("Enter the lot's concentration (mg/ml)."),
    "CONCENTRATION_MISMATCH": lazy_gettext("The concentration differs from the one recorded for this lot."),
    "CONCENTRATION_ALREADY_VERIFIED": lazy_gettext("This lot's concentration is already verified."),
    "DENSITY_INVALID": lazy_gettext("The density must be more than zero."),
    "STOCK_QUARANTINED": lazy_gettext(
        "Quarantined stock cannot be issued until the pharmacist and the head of unit release it."),
    "QUARANTINE_RELEASE_NOT_ALLOWED": lazy_gettext(
        "Quarantined stock leaves quarantine only by a signed decision: release, return or destruction."),
    "QUARANTINE_DECISION_REQUIRED": lazy_gettext(
        "This stock is in quarantine without a signed decision: the pharmacist and the head of unit decide first "
        "whether it is returned to the supplier or destroyed."),
    "QUARANTINE_DECISION_MISMATCH": lazy_gettext(
        "The signed decision on this quarantined stock does not allow this: only stock kept for return goes back "
        "to the supplier, and only stock kept for destruction is destroyed."),
    "NO_QUARANTINE_LOCATION": lazy_gettext("The clinic has no quarantine location for bottles with anomalies."),
    "RECEIVE_LOCATION_INVALID": lazy_gettext("Stock is received into a safe or a counter shelf."),
    "SUPPLIER_REQUIRED": lazy_gettext("The supplier is required."),
    "DELIVERY_NOTE_REQUIRED": lazy_gettext("The delivery note number is required."),
    "DELIVERER_REQUIRED": lazy_gettext("The deliverer's name is required."),
    "RECEIPT_EMPTY": lazy_gettext("The delivery has no bottles or quantities."),
    "LOT_NUMBER_REQUIRED": lazy_gettext("The lot number is required."),
    "LOT_DETAILS_MISMATCH": lazy_gettext("This lot is already known with another expiry date or concentration."),
    "INVALID_GTIN": lazy_gettext("The GTIN's check digit is wrong: scan the pack again."),
    "GTIN_MISMATCH": lazy_gettext("The pack's GTIN belongs to another product."),
    "PACK_SCAN_REJECTED": lazy_gettext("The pack scan could not be read as a GS1 code with GTIN, lot and expiry."),
    "LIQUID_NEEDS_BOTTLES": lazy_gettext("Liquids are received in labelled bottles."),
    "LABEL_INVALID": lazy_gettext("A bottle label is C followed by digits."),
    "LABEL_TAKEN": lazy_gettext("Another bottle already has this label."),
    "ANOMALY_NEEDS_BOTTLE": lazy_gettext("This kind of anomaly must name the bottle it concerns."),
    "ANOMALY_LOT_INVALID": lazy_gettext("The anomaly refers to a lot that is not in this delivery."),
    "ANOMALY_DESCRIPTION_REQUIRED": lazy_gettext("Describe the anomaly."),
    "ANOMALY_ALREADY_SIGNED": lazy_gettext("The head of unit has already countersigned this record."),
    "UNIT_HEAD_IS_RECEIVER": lazy_gettext("The receiver cannot countersign as head of unit."),
    "UNIT_HEAD_ROLE_REQUIRED": lazy_gettext("Only a head of unit can sign this."),
    "UNIT_HEAD_REQUIRED": lazy_gettext("The head of unit must sign with their password."),
    "QUARANTINE_OUTCOME_INVALID": lazy_gettext("Choose release, return to the supplier or destruction."),
    "RELEASE_LOCATION_INVALID": lazy_gettext("Released stock goes back to a safe: choose the safe."),
    "NOT_IN_QUARANTINE": lazy_gettext("The ledger holds none of this bottle or lot in quarantine."),
    "QUARANTINE_ALREADY_DECIDED": lazy_gettext("A decision on this quarantined stock has already been signed."),
    "ANOMALY_NOT_COUNTERSIGNED": lazy_gettext(
        "The head of unit must countersign the anomaly record before deciding on this bottle."),
    "NOT_A_PUMP": lazy_gettext("This location is not a pump."),
    "PRODUCT_KIND_MISMATCH": lazy_gettext("This product cannot be used here."),
    "CONTAINER_EMPTY": lazy_gettext("The ledger holds nothing in this bottle."),
    "CONTAINER_NOT_IN_SAFE": lazy_gettext("Only a bottle in a safe can be attached to a pump."),
    "CONTAINER_NOT_HERE": lazy_gettext("This bottle is not at this location."),
    "PUMP_HAS_OPEN_BOTTLE": lazy_gettext("This pump already has an open bottle: detach it first."),
    "NO_OPEN_BOTTLE": lazy_gettext("No bottle is open on this pump."),
    "REMAINING_INVALID": lazy_gettext("What is left must be between 0 and the bottle's nominal volume."),
    "RETURN_LOCATION_INVALID": lazy_gettext("Choose a safe or quarantine for this stock."),
    "SAME_LOCATION": lazy_gettext("Choose two different locations."),
    "TRANSFER_NOT_ALLOWED": lazy_gettext("Pumps take and give back bottles by attaching and detaching them."),
    "ITEM_REQUIRED": lazy_gettext("Choose the lot or bottle."),
    "REASON_REQUIRED": lazy_gettext("A reason is required."),
    "WITNESS_REQUIRED": lazy_gettext("A witness must sign with their password."),
    "COSIGNER_IS_SIGNER": lazy_gettext("The second signature must be another person's."),
    "DESTRUCTION_EMPTY": lazy_gettext("The destruction record lists nothing to destroy."),
    "DESTRUCTION_LOCATION_INVALID": lazy_gettext("Detach the bottle from the pump before destroying it."),
    "RECORD_NO_REQUIRED": lazy_gettext("The record number is required."),
    "RECORD_NO_TAKEN": lazy_gettext("This record number is already used."),
    "METHOD_REQUIRED": lazy_gettext("The method of destruction is required."),
    "CORRECTION_ZERO": lazy_gettext("A correction must change the quantity."),
    "CORRECTION_OF_CORRECTION": lazy_gettext("Correct the original line, not a correction."),
    "CORRECTION_EXCEEDS_ORIGINAL": lazy_gettext("The correction takes back more than the line moved."),
    "CORRECTION_NOT_ALLOWED": lazy_gettext("A bottle moves whole: move it back instead of correcting the move."),
    "DOSE_NOT_FINAL": lazy_gettext("The dose is not finished yet."),
    "DOSE_NO_SOURCE": lazy_gettext("The dose's pump has no stock location."),
    "COUNTER_LOCATION_AMBIGUOUS": lazy_gettext("Choose the counter shelf."),
    "OUT_OF_STOCK": lazy_gettext("None of this medicine is at the counter."),
    "FUTURE_DAY": lazy_gettext("A day cannot be closed before it has begun."),
    "DAY_ALREADY_CLOSED": lazy_gettext("This day is already closed for this location."),
    "LATER_DAY_CLOSED": lazy_gettext("A later day is already closed for this location."),
    "DOSES_IN_FLIGHT": lazy_gettext("Doses at this pump are still in progress or unresolved."),
    "MEASURE_METHOD_NOT_ALLOWED": lazy_gettext("This way of measuring does not fit this product or location."),
    "MEASUREMENT_INVALID": lazy_gettext("Enter a reading of zero or more."),
    "DENSITY_MISSING": lazy_gettext("The lot has no density: measure with a cylinder or the pump instead."),
    "DENSITY_AMBIGUOUS": lazy_gettext("Several lots are held here: say which lot was weighed."),
    "SURPLUS_WITHOUT_LOT": lazy_gettext("A surplus was found where no stock was ever held."),
    "DISCREPANCY_ENTRY_REQUIRED": lazy_gettext("Outside tolerance: choose the reason for the discrepancy."),
    "INVESTIGATION_NOTE_REQUIRED": lazy_gettext("Outside tolerance: write the investigation note."),
})

STOCK_READERS = (Role.PHARMACIST, Role.PHYSICIAN, Role.ADMIN, Role.NURSE, Role.UNIT_HEAD)


# ---------------------------------------------------------------------------------------------
# Schemas

class WitnessSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = ma.fields.String(required=True, load_only=True)


class LocationSchema(ma.Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    name = ma.fields.String()
    kind = ma.fields.String()
    device_id = ma.fields.Integer(allow_none=True)
    open_bottle = ma.fields.String(allow_none=True)


class LotSchema(ma.Schema):
    id = ma.fields.Integer()
    product_id = ma.fields.Integer()
    lot_number = ma.fields.String()
    expiry_date = ma.fields.Date()
    gtin = ma.fields.String(allow_none=True)
    manufacturer = ma.fields.String(allow_none=True)
    concentration_mg_per_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    density_g_per_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    concentration_verified_at = ma.fields.AwareDateTime(allow_none=True)


class ContainerSchema(ma.Schema):
    id = ma.fields.Integer()
    label_code = ma.fields.String()
    lot = ma.fields.Nested(LotSchema)
    nominal_quantity = ma.fields.Decimal(as_string=True)
    where = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())


class AnomalyInSchema(ma.Schema):
    kind = ma.fields.Enum(AnomalyKind, by_value=True, required=True)
    description = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    expected_quantity = ma.fields.Decimal(allow_none=True, load_default=None)
    found_quantity = ma.fields.Decimal(allow_none=True, load_default=None)


class DeliveryAnomalySchema(AnomalyInSchema):
    lot_index = ma.fields.Integer(allow_none=True, load_default=None)


class BottleInSchema(ma.Schema):
    quantity = ma.fields.Decimal(required=True)
    nominal = ma.fields.Decimal(allow_none=True, load_default=None)
    label_code = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=64))
    anomaly = ma.fields.Nested(AnomalyInSchema, allow_none=True, load_default=None)


class LotInSchema(ma.Schema):
    product_id = ma.fields.Integer(required=True)
    # Either typed in, or read from the pack's GS1 barcode (GTIN, lot, expiry).
    pack_scan = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=200))
    lot_number = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=64))
    expiry_date = ma.fields.Date(allow_none=True, load_default=None)
    gtin = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=14))
    manufacturer = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=200))
    concentration_mg_per_ml = ma.fields.Decimal(allow_none=True, load_default=None)
    density_g_per_ml = ma.fields.Decimal(allow_none=True, load_default=None)
    concentration_verified = ma.fields.Boolean(load_default=False)
    bottles = ma.fields.List(ma.fields.Nested(BottleInSchema), load_default=list)
    loose_quantity = ma.fields.Decimal(allow_none=True, load_default=None)


class DeliverySchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    supplier = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    delivery_note_no = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    deliverer_name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    # The deliverer's organisation when it is not the supplier.
    deliverer_organisation = ma.fields.String(allow_none=True, load_default=None,
                                              validate=ma.validate.Length(max=200))
    note = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))
    lots = ma.fields.List(ma.fields.Nested(LotInSchema), required=True, validate=ma.validate.Length(min=1, max=50))
    anomalies = ma.fields.List(ma.fields.Nested(DeliveryAnomalySchema), load_default=list)
    password = ma.fields.String(required=True, load_only=True)


class ReceiptLineSchema(ma.Schema):
    lot_id = ma.fields.Integer()
    container_id = ma.fields.Integer(allow_none=True)
    label_code = ma.fields.Function(lambda line: line.container.label_code if line.container else None)
    quantity = ma.fields.Function(lambda line: str(line.movement.quantity))
    quarantined = ma.fields.Boolean()
    movement_id = ma.fields.Integer()


class AnomalySchema(ma.Schema):
    id = ma.fields.Integer()
    receipt_id = ma.fields.Integer()
    kind = ma.fields.Function(lambda row: row.kind.value)
    lot_id = ma.fields.Integer(allow_none=True)
    container_id = ma.fields.Integer(allow_none=True)
    description = ma.fields.String()
    expected_quantity = ma.fields.Decimal(as_string=True, allow_none=True)
    found_quantity = ma.fields.Decimal(as_string=True, allow_none=True)
    deliverer_name = ma.fields.String()
    deliverer_organisation = ma.fields.String()
    receiver_id = ma.fields.Integer()
    receiver_signed_at = ma.fields.AwareDateTime()
    unit_head_id = ma.fields.Integer(allow_none=True)
    unit_head_signed_at = ma.fields.AwareDateTime(allow_none=True)
    fully_signed = ma.fields.Boolean()


class ReceiptSchema(ma.Schema):
    id = ma.fields.Integer()
    business_date = ma.fields.Date()
    received_at = ma.fields.AwareDateTime()
    supplier = ma.fields.String()
    delivery_note_no = ma.fields.String()
    deliverer_name = ma.fields.String()
    location_id = ma.fields.Integer()
    received_by_id = ma.fields.Integer()
    note = ma.fields.String(allow_none=True)
    lines = ma.fields.List(ma.fields.Nested(ReceiptLineSchema))
    anomalies = ma.fields.List(ma.fields.Nested(AnomalySchema))


class PasswordSchema(ma.Schema):
    password = ma.fields.String(required=True, load_only=True)


class QuarantineDecisionInSchema(ma.Schema):
    """A bottle (``container_id`` or ``label_code``) or a whole lot (``lot_id``) in quarantine."""

    container_id = ma.fields.Integer(load_default=None)
    label_code = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))
    lot_id = ma.fields.Integer(load_default=None)
    outcome = ma.fields.Enum(QuarantineOutcome, by_value=True, required=True)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(max=2000))
    # The safe a released bottle goes back to.
    to_location_id = ma.fields.Integer(load_default=None)
    password = ma.fields.String(required=True, load_only=True)
    unit_head = ma.fields.Nested(WitnessSchema, allow_none=True, load_default=None)


class QuarantineDecisionSchema(ma.Schema):
    id = ma.fields.Integer()
    business_date = ma.fields.Date()
    decided_at = ma.fields.AwareDateTime()
    outcome = ma.fields.Function(lambda row: row.outcome.value)
    lot_id = ma.fields.Integer()
    container_id = ma.fields.Integer(allow_none=True)
    label_code = ma.fields.Function(lambda row: row.container.label_code if row.container else None)
    location_id = ma.fields.Integer()
    quantity = ma.fields.Decimal(as_string=True)
    entry_movement_id = ma.fields.Integer()
    release_movement_id = ma.fields.Integer(allow_none=True)
    anomaly_id = ma.fields.Integer(allow_none=True)
    reason = ma.fields.String()
    pharmacist_id = ma.fields.Integer()
    unit_head_id = ma.fields.Integer()


class QuarantinedItemSchema(ma.Schema):
    location_id = ma.fields.Integer()
    lot_id = ma.fields.Integer()
    lot_number = ma.fields.String()
    expiry_date = ma.fields.Date()
    container_id = ma.fields.Integer(allow_none=True)
    label_code = ma.fields.String(allow_none=True)
    quantity = ma.fields.Decimal(as_string=True)
    entry_movement_id = ma.fields.Integer(allow_none=True)
    anomaly_id = ma.fields.Integer(allow_none=True)
    anomaly_signed = ma.fields.Boolean()
    decision = ma.fields.Nested(QuarantineDecisionSchema, allow_none=True)


class VerifyLotSchema(PasswordSchema):
    concentration_mg_per_ml = ma.fields.Decimal(required=True)


class MovementSchema(ma.Schema):
    id = ma.fields.Integer()
    business_date = ma.fields.Date()
    occurred_at = ma.fields.AwareDateTime()
    kind = ma.fields.Function(lambda row: row.kind.value)
    product_id = ma.fields.Integer()
    lot_id = ma.fields.Integer()
    container_id = ma.fields.Integer(allow_none=True)
    from_location_id = ma.fields.Integer(allow_none=True)
    to_location_id = ma.fields.Integer(allow_none=True)
    quantity = ma.fields.Decimal(as_string=True)
    dose_id = ma.fields.Integer(allow_none=True)
    corrects_id = ma.fields.Integer(allow_none=True)
    amends_date = ma.fields.Date(allow_none=True)
    reason = ma.fields.String(allow_none=True)
    recorded_by_id = ma.fields.Integer()
    witness_id = ma.fields.Integer(allow_none=True)


class MovementQuerySchema(ma.Schema):
    location_id = ma.fields.Integer(load_default=None)
    business_date = ma.fields.Date(load_default=None)
    container_id = ma.fields.Integer(load_default=None)
    limit = ma.fields.Integer(load_default=200, validate=ma.validate.Range(min=1, max=2000))


class AttachSchema(ma.Schema):
    container_id = ma.fields.Integer(load_default=None)
    label_code = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))


class AttachmentSchema(ma.Schema):
    id = ma.fields.Integer()
    location_id = ma.fields.Integer()
    container_id = ma.fields.Integer()
    label_code = ma.fields.Function(lambda row: row.container.label_code)
    attached_at = ma.fields.AwareDateTime()
    attach_movement_id = ma.fields.Integer(allow_none=True)
    detached_at = ma.fields.AwareDateTime(allow_none=True)
    detach_movement_id = ma.fields.Integer(allow_none=True)
    remaining = ma.fields.Decimal(as_string=True, allow_none=True)


class DetachSchema(ma.Schema):
    remaining = ma.fields.Decimal(required=True)
    return_to_location_id = ma.fields.Integer(load_default=None)


class TransferSchema(ma.Schema):
    from_location_id = ma.fields.Integer(required=True)
    to_location_id = ma.fields.Integer(required=True)
    lot_id = ma.fields.Integer(load_default=None)
    container_id = ma.fields.Integer(load_default=None)
    quantity = ma.fields.Decimal(allow_none=True, load_default=None)
    reason = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class WasteSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    quantity = ma.fields.Decimal(required=True)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(max=2000))
    lot_id = ma.fields.Integer(load_default=None)
    container_id = ma.fields.Integer(load_default=None)
    password = ma.fields.String(required=True, load_only=True)
    witness = ma.fields.Nested(WitnessSchema, required=True)


class PumpLiquidSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    quantity = ma.fields.Decimal(required=True)
    reason = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class ReturnSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    lot_id = ma.fields.Integer(load_default=None)
    container_id = ma.fields.Integer(load_default=None)
    quantity = ma.fields.Decimal(allow_none=True, load_default=None)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(max=2000))
    password = ma.fields.String(required=True, load_only=True)


class DestructionItemSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    lot_id = ma.fields.Integer(load_default=None)
    container_id = ma.fields.Integer(load_default=None)
    quantity = ma.fields.Decimal(allow_none=True, load_default=None)


class DestructionSchema(ma.Schema):
    record_no = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    method = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    items = ma.fields.List(ma.fields.Nested(DestructionItemSchema), required=True,
                           validate=ma.validate.Length(min=1, max=200))
    password = ma.fields.String(required=True, load_only=True)
    witness = ma.fields.Nested(WitnessSchema, required=True)


class DestructionRecordSchema(ma.Schema):
    id = ma.fields.Integer()
    record_no = ma.fields.String()
    business_date = ma.fields.Date()
    destroyed_at = ma.fields.AwareDateTime()
    method = ma.fields.String()
    reason = ma.fields.String()
    pharmacist_id = ma.fields.Integer()
    witness_id = ma.fields.Integer()
    movement_ids = ma.fields.Function(lambda row: [line.movement_id for line in row.lines])


class CorrectionSchema(ma.Schema):
    movement_id = ma.fields.Integer(required=True)
    delta = ma.fields.Decimal(required=True)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(max=2000))
    password = ma.fields.String(required=True, load_only=True)
    witness = ma.fields.Nested(WitnessSchema, allow_none=True, load_default=None)


class BalanceQuerySchema(ma.Schema):
    location_id = ma.fields.Integer(load_default=None)
    product_id = ma.fields.Integer(load_default=None)
    lot_id = ma.fields.Integer(load_default=None)
    container_id = ma.fields.Integer(load_default=None)
    end_of = ma.fields.Date(load_default=None)
    at = ma.fields.AwareDateTime(load_default=None)


class BalanceSchema(ma.Schema):
    balance = ma.fields.Decimal(as_string=True)


class SuggestionQuerySchema(ma.Schema):
    product_id = ma.fields.Integer(required=True)


class SuggestionSchema(ma.Schema):
    container_id = ma.fields.Integer()
    label_code = ma.fields.String()
    lot_id = ma.fields.Integer()
    lot_number = ma.fields.String()
    expiry_date = ma.fields.Date()
    location_id = ma.fields.Integer()
    balance = ma.fields.Decimal(as_string=True)
    opened = ma.fields.Boolean()


class DayQuerySchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    product_id = ma.fields.Integer(required=True)
    business_date = ma.fields.Date(required=True)


class WorksheetSchema(ma.Schema):
    location_id = ma.fields.Integer()
    product_id = ma.fields.Integer()
    business_date = ma.fields.Date()
    opening = ma.fields.Decimal(as_string=True)
    received = ma.fields.Decimal(as_string=True)
    transferred_in = ma.fields.Decimal(as_string=True)
    transferred_out = ma.fields.Decimal(as_string=True)
    issued = ma.fields.Decimal(as_string=True)
    issued_by_kind = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Decimal(as_string=True))
    waste = ma.fields.Decimal(as_string=True)
    other_out = ma.fields.Decimal(as_string=True)
    adjusted = ma.fields.Decimal(as_string=True)
    expected_close = ma.fields.Decimal(as_string=True)


class MeasurementSchema(ma.Schema):
    method = ma.fields.Enum(MeasureMethod, by_value=True, required=True)
    value = ma.fields.Decimal(allow_none=True, load_default=None)
    # The balance's stable weight in grams (net of the bottle if tare_g is not given).
    weight_g = ma.fields.Decimal(allow_none=True, load_default=None)
    tare_g = ma.fields.Decimal(allow_none=True, load_default=None)
    lot_id = ma.fields.Integer(allow_none=True, load_default=None)


class PreviewSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    product_id = ma.fields.Integer(required=True)
    business_date = ma.fields.Date(required=True)
    measurement = ma.fields.Nested(MeasurementSchema, required=True)


class CloseSchema(PreviewSchema):
    password = ma.fields.String(required=True, load_only=True)
    witness = ma.fields.Nested(WitnessSchema, allow_none=True, load_default=None)
    discrepancy_reason = ma.fields.Enum(DiscrepancyReason, by_value=True, allow_none=True, load_default=None)
    investigation_note = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=5000))


class PreviewResultSchema(ma.Schema):
    worksheet = ma.fields.Nested(WorksheetSchema)
    measured_close = ma.fields.Decimal(as_string=True)
    measure_detail = ma.fields.Dict()
    variance = ma.fields.Decimal(as_string=True)
    variance_pct = ma.fields.Decimal(as_string=True, allow_none=True)
    within_tolerance = ma.fields.Boolean()


class ReconciliationSchema(ma.Schema):
    id = ma.fields.Integer()
    location_id = ma.fields.Integer()
    product_id = ma.fields.Integer()
    business_date = ma.fields.Date()
    status = ma.fields.Function(lambda row: row.status.value)
    opening = ma.fields.Decimal(as_string=True)
    received = ma.fields.Decimal(as_string=True)
    transferred_in = ma.fields.Decimal(as_string=True)
    transferred_out = ma.fields.Decimal(as_string=True)
    issued = ma.fields.Decimal(as_string=True)
    waste = ma.fields.Decimal(as_string=True)
    other_out = ma.fields.Decimal(as_string=True)
    adjusted = ma.fields.Decimal(as_string=True)
    expected_close = ma.fields.Decimal(as_string=True, allow_none=True)
    measured_close = ma.fields.Decimal(as_string=True, allow_none=True)
    measure_method = ma.fields.Function(lambda row: row.measure_method.value if row.measure_method else None)
    measure_detail = ma.fields.Dict(allow_none=True)
    variance = ma.fields.Decimal(as_string=True, allow_none=True)
    variance_pct = ma.fields.Decimal(as_string=True, allow_none=True)
    within_tolerance = ma.fields.Boolean(allow_none=True)
    loss = ma.fields.Decimal(as_string=True)
    surplus = ma.fields.Decimal(as_string=True)
    discrepancy_reason = ma.fields.Function(lambda row: row.discrepancy_reason.value if row.discrepancy_reason else None)
    investigation_note = ma.fields.String(allow_none=True)
    closed_by_id = ma.fields.Integer(allow_none=True)
    witness_id = ma.fields.Integer(allow_none=True)
    closed_at = ma.fields.AwareDateTime(allow_none=True)


class DateQuerySchema(ma.Schema):
    business_date = ma.fields.Date(load_default=None)


class ForecastSchema(ma.Schema):
    location_id = ma.fields.Integer()
    product_id = ma.fields.Integer()
    counter_id = ma.fields.Integer(allow_none=True)
    business_date = ma.fields.Date()
    needed = ma.fields.Decimal(as_string=True)
    on_hand = ma.fields.Decimal(as_string=True)
    shortfall = ma.fields.Decimal(as_string=True)
    bottles = ma.fields.List(ma.fields.String())
    detail = ma.fields.Dict()


class ReminderSchema(ma.Schema):
    id = ma.fields.Integer()
    business_date = ma.fields.Date()
    kind = ma.fields.Function(lambda row: row.kind.value)
    for_role = ma.fields.Function(lambda row: row.for_role.value)
    patient_id = ma.fields.Integer(allow_none=True)
    subject_type = ma.fields.String()
    subject_id = ma.fields.Integer()
    due_on = ma.fields.Date(allow_none=True)
    code = ma.fields.String()
    params = ma.fields.Dict()


# ---------------------------------------------------------------------------------------------
# Helpers

def _witness(data: dict | None) -> stock.Cosigner | None:
    return stock.Cosigner(data["username"], data["password"]) if data else None


def _lot_in(data: dict) -> stock.LotIn:
    lot_number, expiry, gtin = data["lot_number"], data["expiry_date"], data["gtin"]
    if data["pack_scan"]:
        from devices.scan import ScanKind, classify_scan

        scan = classify_scan(data["pack_scan"])
        if scan.kind is not ScanKind.MEDICINE_PACK or not scan.accepted:
            raise ValidationFailed("pack scan rejected", code="PACK_SCAN_REJECTED")
        lot_number, expiry, gtin = lot_number or scan.lot, expiry or scan.expiry, gtin or scan.gtin
    if not lot_number or expiry is None:
        raise ValidationFailed("lot number and expiry required", code="LOT_NUMBER_REQUIRED")
    bottles = tuple(
        stock.BottleIn(
            quantity=bottle["quantity"], nominal=bottle["nominal"], label_code=bottle["label_code"],
            anomaly=stock.AnomalyIn(**bottle["anomaly"]) if bottle["anomaly"] else None,
        )
        for bottle in data["bottles"]
    )
    return stock.LotIn(
        product_id=data["product_id"], lot_number=lot_number, expiry_date=expiry, bottles=bottles,
        loose_quantity=data["loose_quantity"], concentration_mg_per_ml=data["concentration_mg_per_ml"],
        density_g_per_ml=data["density_g_per_ml"], gtin=gtin, manufacturer=data["manufacturer"],
        concentration_verified=data["concentration_verified"],
    )


def _measurement(data: dict) -> stock.Measurement:
    return stock.Measurement(method=data["method"], value=data["value"], weight_g=data["weight_g"],
                             tare_g=data["tare_g"], lot_id=data["lot_id"])


def _location(location_id: int) -> Location:
    location = db().get(Location, location_id)
    if location is None:
        raise NotFound("location", code="LOCATION_NOT_FOUND")
    require_same_clinic(context.actor(), location.clinic_id)
    return location


def _reader():
    require_role(context.actor(), *STOCK_READERS)
    return context.actor()


# ---------------------------------------------------------------------------------------------
# Reading

@blp.route("/locations")
class Locations(MethodView):
    @blp.response(200, LocationSchema(many=True))
    def get(self):
        """The clinic's stock locations, each pump with its open bottle."""
        user = _reader()
        rows = db().scalars(select(Location).where(Location.clinic_id == user.clinic_id).order_by(Location.id)).all()
        open_bottles = {location_id: label for location_id, label in db().execute(
            select(ContainerAttachment.location_id, Container.label_code).join(Container)
            .where(ContainerAttachment.detached_at.is_(None), ContainerAttachment.clinic_id == user.clinic_id))}
        return [{"id": r.id, "code": r.code, "name": r.name, "kind": r.kind.value, "device_id": r.device_id,
                 "open_bottle": open_bottles.get(r.id)} for r in rows]


@blp.route("/balance")
class Balance(MethodView):
    @blp.arguments(BalanceQuerySchema, location="query")
    @blp.response(200, BalanceSchema)
    def get(self, args):
        """Stock held from the ledger, narrowed by location, product, lot or bottle; at the end of a
        business day (``end_of``), at an instant (``at``) or now."""
        user = _reader()
        if args["location_id"] is not None:
            _location(args["location_id"])
        return {"balance": stock.balance(db(), clinic_id=user.clinic_id, **args)}


@blp.route("/lots")
class Lots(MethodView):
    @blp.arguments(SuggestionQuerySchema, location="query")
    @blp.response(200, LotSchema(many=True))
    def get(self, args):
        """Lots of a product, first expiry first."""
        _reader()
        return db().scalars(select(Lot).where(Lot.product_id == args["product_id"]).order_by(Lot.expiry_date))


@blp.route("/lots/<int:lot_id>/verify")
class LotVerify(MethodView):
    @blp.arguments(VerifyLotSchema)
    @blp.response(200, LotSchema)
    def post(self, data, lot_id):
        """Sign that the lot's concentration was verified (a lot without it cannot be issued)."""
        return stock.verify_lot_concentration(db(), context.actor(), lot_id,
                                              concentration_mg_per_ml=data["concentration_mg_per_ml"],
                                              password=data["password"])


@blp.route("/containers/<string:label_code>")
class ContainerItem(MethodView):
    @blp.response(200, ContainerSchema)
    def get(self, label_code):
        """A bottle by its label, with where the ledger holds it."""
        user = _reader()
        container = db().scalar(select(Container).where(Container.label_code == label_code.strip().upper()))
        if container is None or container.clinic_id != user.clinic_id:
            raise NotFound("container", code="CONTAINER_NOT_FOUND")
        where = {str(loc): str(amount) for loc, amount in balances_by_location(db(), container_id=container.id).items()}
        return {"id": container.id, "label_code": container.label_code, "lot": container.lot,
                "nominal_quantity": container.nominal_quantity, "where": where}


@blp.route("/bottles/suggestions")
class Suggestions(MethodView):
    @blp.arguments(SuggestionQuerySchema, location="query")
    @blp.response(200, SuggestionSchema(many=True))
    def get(self, args):
        """Bottles that may go to a pump today, first-expiry first-out (FEFO)."""
        user = _reader()
        return stock.suggest_bottles(db(), clinic_id=user.clinic_id, product_id=args["product_id"],
                                     day=context.today())


@blp.route("/movements")
class Movements(MethodView):
    @blp.arguments(MovementQuerySchema, location="query")
    @blp.response(200, MovementSchema(many=True))
    def get(self, args):
        """Ledger lines, newest first, by location, business date or bottle."""
        user = _reader()
        query = select(StockMovement).where(StockMovement.clinic_id == user.clinic_id)
        if args["location_id"] is not None:
            query = query.where(or_(StockMovement.from_location_id == args["location_id"],
                                    StockMovement.to_location_id == args["location_id"]))
        if args["business_date"] is not None:
            query = query.where(StockMovement.business_date == args["business_date"])
        if args["container_id"] is not None:
            query = query.where(StockMovement.container_id == args["container_id"])
        return db().scalars(query.order_by(StockMovement.id.desc()).limit(args["limit"]))


# ---------------------------------------------------------------------------------------------
# Receipts

@blp.route("/receipts")
class Receipts(MethodView):
    @blp.arguments(DeliverySchema)
    @blp.response(201, ReceiptSchema)
    def post(self, data):
        """Record a delivery signed by the receiving pharmacist; bottles with an anomaly go to
        quarantine with an anomaly record signed by the deliverer (name) and the receiver."""
        delivery = stock.DeliveryIn(
            location_id=data["location_id"], supplier=data["supplier"], delivery_note_no=data["delivery_note_no"],
            deliverer_name=data["deliverer_name"], deliverer_organisation=data["deliverer_organisation"],
            note=data["note"],
            lots=tuple(_lot_in(item) for item in data["lots"]),
            anomalies=tuple(
                (item["lot_index"], stock.AnomalyIn(item["kind"], item["description"], item["expected_quantity"],
                                                     item["found_quantity"]))
                for item in data["anomalies"]
            ),
        )
        return stock.receive_delivery(db(), context.actor(), delivery, password=data["password"]).receipt


@blp.route("/receipts/<int:receipt_id>")
class ReceiptItem(MethodView):
    @blp.response(200, ReceiptSchema)
    def get(self, receipt_id):
        user = _reader()
        receipt = db().get(Receipt, receipt_id)
        if receipt is None or receipt.clinic_id != user.clinic_id:
            raise NotFound("receipt", code="RECEIPT_NOT_FOUND")
        return receipt


@blp.route("/anomalies")
class Anomalies(MethodView):
    @blp.response(200, AnomalySchema(many=True))
    def get(self):
        """Anomaly records still waiting for the head of unit's countersignature."""
        user = _reader()
        return db().scalars(select(ReceiptAnomaly).where(ReceiptAnomaly.clinic_id == user.clinic_id,
                                                         ReceiptAnomaly.unit_head_id.is_(None))
                            .order_by(ReceiptAnomaly.id))


@blp.route("/anomalies/<int:anomaly_id>/countersign")
class AnomalyCountersign(MethodView):
    @blp.arguments(PasswordSchema)
    @blp.response(200, AnomalySchema)
    def post(self, data, anomaly_id):
        """The head of unit (role ``unit_head``) countersigns an anomaly record."""
        return stock.countersign_anomaly(db(), context.actor(), anomaly_id, password=data["password"])


@blp.route("/quarantine")
class Quarantine(MethodView):
    @blp.response(200, QuarantinedItemSchema(many=True))
    def get(self):
        """What the ledger holds in quarantine, each bottle with its anomaly record's state and the
        signed decision on it (none while undecided)."""
        user = _reader()
        return stock.quarantined_items(db(), clinic_id=user.clinic_id)


@blp.route("/quarantine/decisions")
class QuarantineDecisions(MethodView):
    @blp.arguments(QuarantineDecisionInSchema)
    @blp.response(201, QuarantineDecisionSchema(many=True))
    def post(self, data):
        """Decide on a quarantined bottle or lot, signed by the pharmacist (``password``) and the head
        of unit (``unit_head``): release to a safe (the bottle may then be issued), or keep it for
        return to the supplier or destruction. One decision per stay in quarantine."""
        unit_head = _witness(data.pop("unit_head"))
        return stock.decide_quarantine(db(), context.actor(), unit_head=unit_head, **data)


# ---------------------------------------------------------------------------------------------
# Movements

@blp.route("/pumps/<int:location_id>/attach")
class PumpAttach(MethodView):
    @blp.arguments(AttachSchema)
    @blp.response(201, AttachmentSchema)
    def post(self, data, location_id):
        """Move a bottle from the safe onto the pump (one open bottle per pump)."""
        return stock.attach_container(db(), context.actor(), location_id=location_id,
                                      container_id=data["container_id"], label_code=data["label_code"])


@blp.route("/pumps/<int:location_id>/detach")
class PumpDetach(MethodView):
    @blp.arguments(DetachSchema)
    @blp.response(200, AttachmentSchema)
    def post(self, data, location_id):
        """Take the open bottle off the pump; what is left goes back to the safe."""
        return stock.detach_container(db(), context.actor(), location_id=location_id, remaining=data["remaining"],
                                      return_to_location_id=data["return_to_location_id"])


@blp.route("/transfers")
class Transfers(MethodView):
    @blp.arguments(TransferSchema)
    @blp.response(201, MovementSchema)
    def post(self, data):
        """Move stock between a safe, a counter shelf and quarantine."""
        return stock.transfer_stock(db(), context.actor(), **data)


@blp.route("/waste")
class Waste(MethodView):
    @blp.arguments(WasteSchema)
    @blp.response(201, MovementSchema)
    def post(self, data):
        """Record a witnessed spill or waste (two signatures)."""
        witness = _witness(data.pop("witness"))
        return stock.record_waste(db(), context.actor(), witness=witness, **data)


@blp.route("/priming")
class Priming(MethodView):
    @blp.arguments(PumpLiquidSchema)
    @blp.response(201, MovementSchema)
    def post(self, data):
        """Record liquid used to prime a pump."""
        return stock.record_priming(db(), context.actor(), **data)


@blp.route("/calibration-liquid")
class CalibrationLiquid(MethodView):
    @blp.arguments(PumpLiquidSchema)
    @blp.response(201, MovementSchema)
    def post(self, data):
        """Record liquid used to calibrate a pump."""
        return stock.record_calibration_liquid(db(), context.actor(), **data)


@blp.route("/returns")
class Returns(MethodView):
    @blp.arguments(ReturnSchema)
    @blp.response(201, MovementSchema)
    def post(self, data):
        """Return stock to the supplier (signed)."""
        return stock.return_to_supplier(db(), context.actor(), **data)


@blp.route("/destructions")
class Destructions(MethodView):
    @blp.arguments(DestructionSchema)
    @blp.response(201, DestructionRecordSchema)
    def post(self, data):
        """Destroy stock under a destruction record signed by the pharmacist and a witness."""
        items = [stock.DestructionItem(**item) for item in data["items"]]
        return stock.destroy_stock(db(), context.actor(), record_no=data["record_no"], method=data["method"],
                                   reason=data["reason"], items=items, password=data["password"],
                                   witness=_witness(data["witness"]))


@blp.route("/corrections")
class Corrections(MethodView):
    @blp.arguments(CorrectionSchema)
    @blp.response(201, MovementSchema)
    def post(self, data):
        """Book a signed correction line referencing the line it corrects (dated today; an
        amendment when the corrected line is on an earlier, possibly closed, day)."""
        witness = _witness(data.pop("witness"))
        return stock.correct_movement(db(), context.actor(), witness=witness, **data)


# ---------------------------------------------------------------------------------------------
# Reconciliation, forecast, reminders

@blp.route("/worksheet")
class WorksheetView(MethodView):
    @blp.arguments(DayQuerySchema, location="query")
    @blp.response(200, WorksheetSchema)
    def get(self, args):
        """The §12 figures of a location, product and day from the ledger (before the close)."""
        _reader()
        _location(args["location_id"])
        sheet = stock.worksheet(db(), location_id=args["location_id"], product_id=args["product_id"],
                                day=args["business_date"])
        return _sheet(sheet)


def _sheet(sheet: stock.Worksheet) -> dict:
    return {**sheet.__dict__, "expected_close": sheet.expected_close}


@blp.route("/reconciliations/preview")
class ReconciliationPreview(MethodView):
    @blp.arguments(PreviewSchema)
    @blp.response(200, PreviewResultSchema)
    def post(self, data):
        """What closing the day with this measurement would record (nothing is written)."""
        preview = stock.preview_close(db(), context.actor(), location_id=data["location_id"],
                                      product_id=data["product_id"], day=data["business_date"],
                                      measurement=_measurement(data["measurement"]))
        return {"worksheet": _sheet(preview.worksheet), "measured_close": preview.measured_close,
                "measure_detail": preview.measure_detail, "variance": preview.variance,
                "variance_pct": preview.variance_pct, "within_tolerance": preview.within_tolerance}


@blp.route("/reconciliations/close")
class ReconciliationClose(MethodView):
    @blp.arguments(CloseSchema)
    @blp.response(200, ReconciliationSchema)
    def post(self, data):
        """Close the day (chốt sổ): signed by the pharmacist; outside tolerance also a discrepancy
        reason, an investigation note and a witness's signature."""
        return stock.close_day(
            db(), context.actor(), location_id=data["location_id"], product_id=data["product_id"],
            day=data["business_date"], measurement=_measurement(data["measurement"]), password=data["password"],
            witness=_witness(data["witness"]), discrepancy_reason=data["discrepancy_reason"],
            investigation_note=data["investigation_note"],
        )


@blp.route("/reconciliations")
class Reconciliations(MethodView):
    @blp.arguments(DateQuerySchema, location="query")
    @blp.response(200, ReconciliationSchema(many=True))
    def get(self, args):
        """The reconciliations (open worksheets and closed days) of a business date (default today)."""
        user = _reader()
        day = args["business_date"] or context.today()
        return db().scalars(select(Reconciliation).where(Reconciliation.clinic_id == user.clinic_id,
                                                         Reconciliation.business_date == day)
                            .order_by(Reconciliation.location_id, Reconciliation.product_id))


@blp.route("/forecast")
class ForecastView(MethodView):
    @blp.arguments(DateQuerySchema, location="query")
    @blp.response(200, ForecastSchema(many=True))
    def get(self, args):
        """The morning forecast: volume each pump needs and the bottles to bring (FEFO)."""
        user = _reader()
        day = args["business_date"] or context.today()
        return db().scalars(select(StockForecast).where(StockForecast.clinic_id == user.clinic_id,
                                                        StockForecast.business_date == day)
                            .order_by(StockForecast.location_id))


@blp.route("/reminders")
class Reminders(MethodView):
    @blp.arguments(DateQuerySchema, location="query")
    @blp.response(200, ReminderSchema(many=True))
    def get(self, args):
        """Reminders for the signed-in user's roles (default: today's)."""
        user = _reader()
        day = args["business_date"] or context.today()
        return db().scalars(select(Reminder).where(
            Reminder.clinic_id == user.clinic_id, Reminder.business_date == day,
            Reminder.for_role.in_(list(user.roles)), Reminder.dismissed_at.is_(None)).order_by(Reminder.id))
