"""Counter API (quầy cấp phát): worklist, identify (card scan or search), pre-dose assessment,
authorise, dose status while the pump works, resolving UNKNOWN doses, completing a partial,
vomiting and replacement orders, voids, take-home preparation, labels and returns, unit-dose
medicines, and counter agent tokens.

Writes need the CSRF token (``X-CSRFToken``) like every API write. Authorising takes the client's
``idempotency_key``: sending the same request again returns the same dose (200 instead of 201).
Signatures travel as ``password`` (re-authentication) and a ``witness`` {username, password}.
Volumes are decimal strings in ml, doses in mg, unit-dose quantities in units.
"""

from __future__ import annotations

from decimal import Decimal

import marshmallow as ma
from flask import Response, current_app, url_for
from flask.views import MethodView
from flask_babel import lazy_gettext
from flask_smorest import Blueprint
from sqlalchemy import select

from devices.scan import LabelType, ScanKind, classify_scan
from dispensing import counter
from dispensing.errors import NotFound, ValidationFailed
from dispensing.models import Counter, Dose, DoseEvent, DoseVoid, MedicationOrder, Role
from dispensing.orders import decision_json
from dispensing.patients import get_patient
from dispensing.permissions import require_role
from dispensing.stock.signatures import Cosigner
from web import context
from web.api.patients import DecisionSchema
from web.database import db
from web.errors import register_messages

blp = Blueprint("api_counter", __name__, description="The dose at the counter (quầy cấp phát)")

register_messages({
    "DOSE_BLOCKED": lazy_gettext("The rules block this dose; see the decisions."),
    "TAKE_HOME_BLOCKED": lazy_gettext("The rules do not allow these take-home doses; see the decisions."),
    "REPLACEMENT_BLOCKED": lazy_gettext("The rules do not allow this replacement dose; see the decisions."),
    "ALREADY_DOSED": lazy_gettext("This dose has already been given or is being given today."),
    "IDEMPOTENCY_KEY_INVALID": lazy_gettext("The request has no valid request key; reload the page."),
    "IDEMPOTENCY_KEY_REUSED": lazy_gettext("This request key was already used for another request."),
    "CARD_UNKNOWN": lazy_gettext("No patient has this card."),
    "SCAN_NOT_A_PATIENT_CARD": lazy_gettext("This is not a patient card: scan the patient's card."),
    "SCAN_EMPTY": lazy_gettext("Nothing was scanned."),
    "SCAN_UNRECOGNISED": lazy_gettext("The scanned code is not a card, label or medicine pack of this clinic."),
    "SCAN_INVALID_GTIN_CHECK_DIGIT": lazy_gettext("The pack's GTIN check digit is wrong: scan again."),
    "SCAN_INVALID_GTIN": lazy_gettext("The pack's GTIN is not valid."),
    "SCAN_GS1_PARSE_ERROR": lazy_gettext("The pack code could not be read."),
    "SCAN_MISSING_GTIN": lazy_gettext("The pack code has no GTIN."),
    "SCAN_MISSING_LOT": lazy_gettext("The pack code has no lot number: scan the code with lot and expiry."),
    "SCAN_MISSING_EXPIRY": lazy_gettext("The pack code has no expiry date: scan the code with lot and expiry."),
    "SCAN_INVALID_EXPIRY": lazy_gettext("The pack's expiry date is not valid."),
    "SCAN_SYMBOLOGY_MISMATCH": lazy_gettext("The barcode type does not match its content."),
    "COUNTER_INACTIVE": lazy_gettext("This counter is switched off."),
    "COUNTER_HAS_NO_PUMP": lazy_gettext("This counter has no pump."),
    "CALIBRATION_MISSING": lazy_gettext("The pump has never been calibrated: calibrate it before dispensing."),
    "CALIBRATION_NOT_PASSED": lazy_gettext("The pump's last calibration failed: calibrate it again before dispensing."),
    "CALIBRATION_EXPIRED": lazy_gettext("The pump's calibration has expired: calibrate it before dispensing."),
    "OVER_CEILING": lazy_gettext("The volume is above this pump's limit."),
    "PART_INVALID": lazy_gettext("The order has no such part today."),
    "PART_NOT_YET_DUE": lazy_gettext("This part of the dose is not due yet."),
    "COWS_INVALID": lazy_gettext("The COWS score is between 0 and 48."),
    "DOSE_NOT_FOUND": lazy_gettext("Dose not found."),
    "DOSE_OTHER_COUNTER": lazy_gettext("This dose belongs to another counter."),
    "DOSE_STATE_CONFLICT": lazy_gettext("The dose is no longer waiting for this step."),
    "DOSE_NOT_REQUESTED": lazy_gettext("The pump has already started this dose; it can no longer be cancelled."),
    "DOSE_NOT_UNKNOWN": lazy_gettext("Only a dose whose outcome is unknown is resolved."),
    "DOSE_NOT_PARTIAL": lazy_gettext("Only a partial dose can be completed."),
    "DOSE_NOT_TAKEN": lazy_gettext("This dose was not given."),
    "DOSE_VOIDED": lazy_gettext("This dose record has been voided."),
    "DAY_OVER": lazy_gettext("A partial dose can only be completed on the same day."),
    "COMPLETION_IN_PROGRESS": lazy_gettext("The rest of this dose is already on its way."),
    "NOTHING_LEFT_TO_GIVE": lazy_gettext("Nothing is left to give of this dose."),
    "RESOLUTION_INVALID": lazy_gettext("Say whether the dose was given, partly given or not given."),
    "RESOLUTION_ML_INVALID": lazy_gettext("Enter the volume given in ml (two decimals); partly given is less than planned."),
    "DEVICE_RESULT_INVALID": lazy_gettext("The device sent a result that cannot be read."),
    "VOMIT_TIME_INVALID": lazy_gettext("The time of vomiting must be after the dose and not in the future."),
    "VOMIT_KIND_INVALID": lazy_gettext("Vomiting is recorded for doses taken at the counter."),
    "REPLACEMENT_NOT_INDICATED": lazy_gettext("A replacement needs recorded vomiting or a voided record."),
    "REPLACEMENT_DOSE_INVALID": lazy_gettext("Enter the replacement dose in mg (one decimal), at most the original dose."),
    "REPLACEMENT_ALREADY_ORDERED": lazy_gettext("A replacement has already been ordered for this dose."),
    "REPLACEMENT_ALREADY_GIVEN": lazy_gettext("This replacement dose has already been given."),
    "ORDER_EXPIRED": lazy_gettext("This order is not valid today."),
    "TAKE_HOME_NOT_ENABLED": lazy_gettext("This clinic is not in the take-home programme."),
    "ORDER_NO_TAKE_HOME": lazy_gettext("The order does not allow these take-home doses."),
    "TAKE_HOME_DAYS_INVALID": lazy_gettext("Take-home doses cover 1 to 31 days."),
    "NOT_TAKE_HOME": lazy_gettext("This is not a take-home dose."),
    "TAKE_HOME_NOT_FILLED": lazy_gettext("This take-home container was not filled completely."),
    "ALREADY_RETURNED": lazy_gettext("This container has already been returned."),
    "TAKE_HOME_REMAINING_INVALID": lazy_gettext("Enter what was left in the container, in ml, no more than was given."),
    "TAKE_HOME_LABEL_INVALID": lazy_gettext("This is not a take-home label."),
    "MEDICATION_ORDER_NOT_FOUND": lazy_gettext("Medication order not found."),
    "MEDICATION_ORDER_NOT_IN_FORCE": lazy_gettext("This medication order is not in force today."),
    "MEDICATION_ORDER_STOPPED": lazy_gettext("This medication order is already stopped."),
    "MEDICATION_UNITS_INVALID": lazy_gettext("Enter the units per administration (more than zero)."),
    "ADMINISTRATIONS_INVALID": lazy_gettext("A medicine is given one to three times a day."),
    "ADMINISTRATION_INVALID": lazy_gettext("The order has no such administration today."),
    "UNITS_MISMATCH": lazy_gettext("Count again: the units differ from the order."),
    "PACK_WRONG_PRODUCT": lazy_gettext("This pack is not the ordered medicine."),
    "PACK_LOT_UNKNOWN": lazy_gettext("This lot is not in the stock records."),
    "PACK_EXPIRY_MISMATCH": lazy_gettext("The pack's expiry date differs from the lot's record."),
    "PACK_LOT_NOT_AT_COUNTER": lazy_gettext("This lot is not held at the counter."),
    "AGENT_TOKEN_INVALID": lazy_gettext("The counter agent's token is not valid."),
})

NURSE_ETC = (Role.NURSE, Role.PHYSICIAN, Role.PHARMACIST, Role.ADMIN)


# ---------------------------------------------------------------------------------------------
# Schemas


class DoseAcknowledgementSchema(ma.Schema):
    code = ma.fields.String(required=True)
    reason = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=2000))


class CounterWitnessSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = ma.fields.String(required=True, load_only=True)


class DoseEventSchema(ma.Schema):
    state = ma.fields.String()
    occurred_at = ma.fields.AwareDateTime()
    user_id = ma.fields.Integer(allow_none=True)
    detail = ma.fields.Dict(allow_none=True)


class DoseSchema(ma.Schema):
    id = ma.fields.Integer()
    patient_id = ma.fields.Integer()
    kind = ma.fields.String()
    state = ma.fields.String()
    part_no = ma.fields.Integer(allow_none=True)
    business_date = ma.fields.Date()
    planned_mg = ma.fields.Decimal(as_string=True)
    planned_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    delivered_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    device_reading_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    planned_units = ma.fields.Decimal(as_string=True, allow_none=True)
    delivered_units = ma.fields.Decimal(as_string=True, allow_none=True)
    order_id = ma.fields.Integer(allow_none=True)
    medication_order_id = ma.fields.Integer(allow_none=True)
    linked_dose_id = ma.fields.Integer(allow_none=True)
    counter_id = ma.fields.Integer(allow_none=True)
    device_id = ma.fields.Integer(allow_none=True)
    lot_id = ma.fields.Integer(allow_none=True)
    container_id = ma.fields.Integer(allow_none=True)
    nurse_id = ma.fields.Integer()
    witness_id = ma.fields.Integer(allow_none=True)
    requested_at = ma.fields.AwareDateTime()
    finished_at = ma.fields.AwareDateTime(allow_none=True)
    failure_reason = ma.fields.String(allow_none=True)
    voided = ma.fields.Boolean()
    in_flight = ma.fields.Boolean()
    label_code = ma.fields.String(allow_none=True)
    events = ma.fields.List(ma.fields.Nested(DoseEventSchema))


class DoseListSchema(ma.Schema):
    doses = ma.fields.List(ma.fields.Nested(DoseSchema))
    decisions = ma.fields.List(ma.fields.Nested(DecisionSchema))


class PumpSchema(ma.Schema):
    counter_id = ma.fields.Integer()
    counter_code = ma.fields.String()
    device_id = ma.fields.Integer(allow_none=True)
    device_code = ma.fields.String(allow_none=True)
    ready = ma.fields.Boolean()
    problems = ma.fields.List(ma.fields.String())
    lot_number = ma.fields.String(allow_none=True)
    lot_expiry = ma.fields.Date(allow_none=True)
    container_label = ma.fields.String(allow_none=True)
    concentration_mg_per_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    calibration_valid_until = ma.fields.AwareDateTime(allow_none=True)
    ceiling_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    agent = ma.fields.Boolean()


class PartViewSchema(ma.Schema):
    part_no = ma.fields.Integer()
    mg = ma.fields.Decimal(as_string=True)
    ml = ma.fields.Decimal(as_string=True, allow_none=True)
    not_before = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    dose_id = ma.fields.Integer(allow_none=True)


class MedicationOrderSchema(ma.Schema):
    id = ma.fields.Integer()
    patient_id = ma.fields.Integer()
    product_id = ma.fields.Integer()
    product_name = ma.fields.Function(lambda o: o.product.name)
    units_per_administration = ma.fields.Decimal(as_string=True)
    administrations_per_day = ma.fields.Integer()
    valid_from = ma.fields.Date()
    valid_until = ma.fields.Date(allow_none=True)
    stopped_on = ma.fields.Date(allow_none=True)
    instructions = ma.fields.String(allow_none=True)
    signed_by_id = ma.fields.Integer()
    signed_at = ma.fields.AwareDateTime()


class MedicationDueSchema(ma.Schema):
    order = ma.fields.Nested(MedicationOrderSchema)
    administrations = ma.fields.List(ma.fields.Dict())


class PanelSchema(ma.Schema):
    patient = ma.fields.Dict()
    date = ma.fields.Date()
    order = ma.fields.Dict(allow_none=True)
    outcome = ma.fields.String()
    blocked = ma.fields.Boolean()
    missed_days = ma.fields.Integer()
    suggested_mg = ma.fields.Dict(allow_none=True)
    parts = ma.fields.List(ma.fields.Nested(PartViewSchema))
    decisions = ma.fields.List(ma.fields.Nested(DecisionSchema))
    flags = ma.fields.List(ma.fields.Dict())
    ecg_due = ma.fields.List(ma.fields.Dict())
    assessment = ma.fields.Dict(allow_none=True)
    pump = ma.fields.Nested(PumpSchema, allow_none=True)
    doses = ma.fields.List(ma.fields.Nested(DoseSchema))
    medications = ma.fields.List(ma.fields.Nested(MedicationDueSchema))
    replacement_orders = ma.fields.List(ma.fields.Dict())
    take_home_possible = ma.fields.Boolean()
    actions = ma.fields.List(ma.fields.Dict())
    rule_set_version = ma.fields.String()
    scanned_dose_id = ma.fields.Integer(allow_none=True)


class WorklistRowSchema(ma.Schema):
    patient_id = ma.fields.Integer()
    patient_code = ma.fields.String()
    patient_name = ma.fields.String()
    what = ma.fields.String()
    part_no = ma.fields.Integer()
    status = ma.fields.String()
    reasons = ma.fields.List(ma.fields.String())
    mg = ma.fields.Decimal(as_string=True, allow_none=True)
    units = ma.fields.Decimal(as_string=True, allow_none=True)
    product_name = ma.fields.String(allow_none=True)
    phase = ma.fields.String(allow_none=True)
    order_id = ma.fields.Integer(allow_none=True)
    medication_order_id = ma.fields.Integer(allow_none=True)
    not_before = ma.fields.String(allow_none=True)
    dose_id = ma.fields.Integer(allow_none=True)
    dose_state = ma.fields.String(allow_none=True)
    counter_id = ma.fields.Integer(allow_none=True)
    missed_days = ma.fields.Integer()


class WorklistSchema(ma.Schema):
    date = ma.fields.Date()
    counter_id = ma.fields.Integer(allow_none=True)
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    rows = ma.fields.List(ma.fields.Nested(WorklistRowSchema))


class WorklistArgs(ma.Schema):
    counter_id = ma.fields.Integer()
    date = ma.fields.Date()


class PanelArgs(ma.Schema):
    counter_id = ma.fields.Integer()


class IdentifySchema(ma.Schema):
    scan = ma.fields.String(validate=ma.validate.Length(max=512))
    patient_id = ma.fields.Integer()
    counter_id = ma.fields.Integer()


class AssessmentWriteSchema(ma.Schema):
    drowsy = ma.fields.Boolean(load_default=False)
    slurred_speech = ma.fields.Boolean(load_default=False)
    pinpoint_pupils = ma.fields.Boolean(load_default=False)
    alcohol_smell = ma.fields.Boolean(load_default=False)
    unsteady_gait = ma.fields.Boolean(load_default=False)
    cows = ma.fields.Integer(allow_none=True, load_default=None, strict=True)
    note = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class AssessmentSchema(ma.Schema):
    id = ma.fields.Integer()
    patient_id = ma.fields.Integer()
    business_date = ma.fields.Date()
    assessed_at = ma.fields.AwareDateTime()
    positive = ma.fields.Boolean()
    cows = ma.fields.Integer(allow_none=True)
    decisions = ma.fields.List(ma.fields.Nested(DecisionSchema))


class AuthorizeSchema(ma.Schema):
    patient_id = ma.fields.Integer(required=True)
    counter_id = ma.fields.Integer(required=True)
    part_no = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=3))
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=8, max=64))
    acknowledgements = ma.fields.List(ma.fields.Nested(DoseAcknowledgementSchema), load_default=list)


class ResolveSchema(ma.Schema):
    outcome = ma.fields.String(required=True, validate=ma.validate.OneOf(counter.Resolution.ALL))
    delivered_ml = ma.fields.Decimal(allow_none=True, load_default=None)
    password = ma.fields.String(required=True, load_only=True)
    witness = ma.fields.Nested(CounterWitnessSchema, required=True)
    note = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class CompleteSchema(ma.Schema):
    counter_id = ma.fields.Integer(required=True)
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=8, max=64))


class CancelSchema(ma.Schema):
    reason = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class VomitSchema(ma.Schema):
    observed_at = ma.fields.AwareDateTime(required=True)
    seen_by_me = ma.fields.Boolean(load_default=True)
    witness = ma.fields.Nested(CounterWitnessSchema, allow_none=True, load_default=None)
    note = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class VomitResultSchema(ma.Schema):
    id = ma.fields.Integer()
    dose_id = ma.fields.Integer()
    observed_at = ma.fields.AwareDateTime()
    witnessed = ma.fields.Boolean()
    replacement_min_mg = ma.fields.Decimal(as_string=True, allow_none=True)
    replacement_max_mg = ma.fields.Decimal(as_string=True, allow_none=True)
    decisions = ma.fields.List(ma.fields.Nested(DecisionSchema))


class ReplacementOrderSchema(ma.Schema):
    mg = ma.fields.Decimal(required=True)
    password = ma.fields.String(required=True, load_only=True)
    reason = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))
    acknowledgements = ma.fields.List(ma.fields.Nested(DoseAcknowledgementSchema), load_default=list)


class ReplacementOrderOutSchema(ma.Schema):
    id = ma.fields.Integer()
    patient_id = ma.fields.Integer()
    linked_dose_id = ma.fields.Integer()
    mg = ma.fields.Decimal(as_string=True, attribute="daily_total_mg")
    valid_from = ma.fields.Date()
    signed_by_id = ma.fields.Integer()
    decisions = ma.fields.List(ma.fields.Dict(), allow_none=True)


class ReplacementDoseSchema(ma.Schema):
    order_id = ma.fields.Integer(required=True)
    counter_id = ma.fields.Integer(required=True)
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=8, max=64))


class VoidSchema(ma.Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    password = ma.fields.String(required=True, load_only=True)
    witness = ma.fields.Nested(CounterWitnessSchema, required=True)


class VoidOutSchema(ma.Schema):
    id = ma.fields.Integer()
    dose_id = ma.fields.Integer()
    reason = ma.fields.String()
    voided_at = ma.fields.AwareDateTime()
    voided_by_id = ma.fields.Integer()
    witness_id = ma.fields.Integer()


class TakeHomeSchema(ma.Schema):
    patient_id = ma.fields.Integer(required=True)
    counter_id = ma.fields.Integer(required=True)
    first_day = ma.fields.Date(required=True)
    days = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=31))
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=8, max=53))
    acknowledgements = ma.fields.List(ma.fields.Nested(DoseAcknowledgementSchema), load_default=list)


class TakeHomeReturnSchema(ma.Schema):
    scan = ma.fields.String(validate=ma.validate.Length(max=64))
    dose_id = ma.fields.Integer()
    empty = ma.fields.Boolean(required=True)
    remaining_ml = ma.fields.Decimal(allow_none=True, load_default=None)
    witness = ma.fields.Nested(CounterWitnessSchema, allow_none=True, load_default=None)
    note = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))


class TakeHomeReturnOutSchema(ma.Schema):
    id = ma.fields.Integer()
    dose_id = ma.fields.Integer()
    returned_at = ma.fields.AwareDateTime()
    empty = ma.fields.Boolean()
    remaining_ml = ma.fields.Decimal(as_string=True, allow_none=True)
    witness_id = ma.fields.Integer(allow_none=True)


class MedicationOrderWriteSchema(ma.Schema):
    patient_id = ma.fields.Integer(required=True)
    product_id = ma.fields.Integer(required=True)
    units_per_administration = ma.fields.Decimal(required=True)
    administrations_per_day = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=3))
    valid_from = ma.fields.Date(required=True)
    valid_until = ma.fields.Date(allow_none=True, load_default=None)
    instructions = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))
    password = ma.fields.String(required=True, load_only=True)


class MedicationOrderStopSchema(ma.Schema):
    stopped_on = ma.fields.Date(required=True)
    password = ma.fields.String(required=True, load_only=True)


class UnitDoseSchema(ma.Schema):
    patient_id = ma.fields.Integer(required=True)
    medication_order_id = ma.fields.Integer(required=True)
    administration_no = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=3))
    counter_id = ma.fields.Integer(required=True)
    scan = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=512))
    units = ma.fields.Decimal(required=True)
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=8, max=64))


class AgentTokenSchema(ma.Schema):
    counter_id = ma.fields.Integer()
    token = ma.fields.String()


# ---------------------------------------------------------------------------------------------
# Rendering


ML, MG = Decimal("0.01"), Decimal("0.001")


def _ml(value: Decimal | None) -> Decimal | None:
    """Volumes are shown at the device resolution (every stored volume is a multiple of it)."""
    return None if value is None else value.quantize(ML)


def _mg(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(MG)


def dose_json(dose: Dose, *, voided: bool = False, events: list[DoseEvent] | None = None) -> dict:
    label = counter.take_home_label_code(dose.id) if dose.kind.value == "take_home" else None
    return {
        "id": dose.id, "patient_id": dose.patient_id, "kind": dose.kind.value, "state": dose.state.value,
        "part_no": dose.part_no, "business_date": dose.business_date, "planned_mg": _mg(dose.planned_mg),
        "planned_ml": _ml(dose.planned_ml), "delivered_ml": _ml(dose.delivered_ml),
        "device_reading_ml": _ml(dose.device_reading_ml), "planned_units": _mg(dose.planned_units),
        "delivered_units": _mg(dose.delivered_units), "order_id": dose.order_id,
        "medication_order_id": dose.medication_order_id, "linked_dose_id": dose.linked_dose_id,
        "counter_id": dose.counter_id, "device_id": dose.device_id, "lot_id": dose.lot_id,
        "container_id": dose.container_id, "nurse_id": dose.nurse_id, "witness_id": dose.witness_id,
        "requested_at": dose.requested_at, "finished_at": dose.finished_at, "failure_reason": dose.failure_reason,
        "voided": voided, "in_flight": dose.state.value in ("requested", "programmed", "running"),
        "label_code": label,
        "events": [{"state": e.state.value, "occurred_at": e.occurred_at, "user_id": e.user_id, "detail": e.detail}
                   for e in events] if events is not None else [],
    }


def pump_json(pump: counter.PumpReadiness) -> dict:
    lot, device = pump.lot, pump.device
    return {
        "counter_id": pump.counter.id, "counter_code": pump.counter.code,
        "device_id": device.id if device else None, "device_code": device.code if device else None,
        "ready": pump.ready, "problems": list(pump.problems), "lot_number": lot.lot_number if lot else None,
        "lot_expiry": lot.expiry_date if lot else None,
        "container_label": pump.container.label_code if pump.container else None,
        "concentration_mg_per_ml": pump.concentration_mg_per_ml,
        "calibration_valid_until": pump.calibration.valid_until if pump.calibration else None,
        "ceiling_ml": _ml(pump.ceiling_ml), "agent": bool(pump.counter.agent_token_hash),
    }


def panel_json(panel: counter.Panel, scanned_dose_id: int | None = None) -> dict:
    patient, order, evaluation = panel.patient, panel.order, panel.evaluation
    suggested = evaluation.suggested
    assessment = panel.assessment
    return {
        "patient": {
            "id": patient.id, "code": patient.code, "card_barcode": patient.card_barcode,
            "full_name": patient.full_name, "status": patient.status.value,
            "date_of_birth": patient.date_of_birth.isoformat() if patient.date_of_birth else None,
            "photo_url": url_for("api_patients.PatientPhotoItem", patient_id=patient.id) if panel.has_photo else None,
            "pregnant": patient.pregnant, "hiv": patient.hiv, "tb": patient.tb,
            "treatment_start_date": patient.treatment_start_date.isoformat() if patient.treatment_start_date else None,
            "take_home_commitment_on": (patient.take_home_commitment_on.isoformat()
                                        if patient.take_home_commitment_on else None),
        },
        "date": panel.day,
        "order": None if order is None else {
            "id": order.id, "phase": order.phase.value if order.phase else None,
            "daily_total_mg": str(order.daily_total_mg), "valid_from": order.valid_from.isoformat(),
            "valid_until": order.valid_until.isoformat() if order.valid_until else None,
            "take_home_plan": order.take_home_plan,
        },
        "outcome": evaluation.outcome.value,
        "blocked": evaluation.blocked,
        "missed_days": evaluation.missed_days,
        "suggested_mg": None if suggested is None else {"min_mg": str(suggested.min_mg),
                                                        "max_mg": str(suggested.max_mg)},
        "parts": [{"part_no": p.part_no, "mg": _mg(p.mg), "ml": _ml(p.ml), "not_before": p.not_before,
                   "status": p.status,
                   "dose_id": p.dose.id if p.dose else None} for p in panel.parts],
        "decisions": [decision_json(d) for d in evaluation.decisions],
        "flags": [{"code": f.code.value, "message_vi": f.message_vi, "message_en": f.message_en,
                   "ends_on": f.ends_on.isoformat() if f.ends_on else None} for f in evaluation.flags]
                 + [{"code": f.code, "message_vi": f.message_vi, "message_en": f.message_en,
                     "ends_on": f.ends_on.isoformat() if f.ends_on else None} for f in panel.flags],
        "ecg_due": [{"code": e.code.value, "due_on": e.due_on.isoformat(), "message_vi": e.message_vi,
                     "message_en": e.message_en} for e in evaluation.ecg_due],
        "assessment": None if assessment is None else {
            "id": assessment.id, "assessed_at": assessment.assessed_at.isoformat(), "positive": assessment.positive,
            "cows": assessment.cows},
        "pump": pump_json(panel.pump) if panel.pump is not None else None,
        "doses": [dose_json(d, voided=d.id in panel.voided) for d in panel.doses],
        "medications": [{"order": due.order, "administrations": [
            {"administration_no": n, "dose_id": d.id if d else None, "state": d.state.value if d else None}
            for n, d in due.administrations]} for due in panel.medications],
        "replacement_orders": [{"id": o.id, "mg": str(o.daily_total_mg), "linked_dose_id": o.linked_dose_id}
                               for o in panel.replacements],
        "take_home_possible": panel.take_home_possible,
        "actions": list(panel.actions),
        "rule_set_version": evaluation.rule_set_version,
        "scanned_dose_id": scanned_dose_id,
    }


def _acks(data: dict) -> dict[str, str | None]:
    return {a["code"]: a.get("reason") for a in data.get("acknowledgements") or ()}


def _witness(data: dict | None) -> Cosigner | None:
    return Cosigner(data["username"], data["password"]) if data else None


def _scan_separator() -> str | None:
    """The visible stand-in keyboard-wedge scanners type for GS (devices registry), if any."""
    cache = current_app.extensions.setdefault("mmt.scan_separator", {})
    if "value" not in cache:
        from devices.errors import DeviceConfigError
        from devices.registry import load_registry

        try:
            cache["value"] = load_registry(current_app.config["MMT_SETTINGS"].devices_registry).wedge_separator
        except DeviceConfigError:
            cache["value"] = None
    return cache["value"]


def classify(raw: str):
    """Classify a scan; raises ValidationFailed(SCAN_<REJECTION>) for a rejected one."""
    scan = classify_scan(raw, separator=_scan_separator())
    if scan.rejection is not None:
        raise ValidationFailed("scan rejected", code=f"SCAN_{scan.rejection.value}")
    return scan


def _dose(dose_id: int) -> Dose:
    dose = db().get(Dose, dose_id)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    get_patient(db(), context.actor(), dose.patient_id)
    return dose


def _dose_status(dose_id: int) -> dict:
    dose = _dose(dose_id)
    events = list(db().scalars(select(DoseEvent).where(DoseEvent.dose_id == dose.id).order_by(DoseEvent.id)))
    voided = db().scalar(select(DoseVoid.id).where(DoseVoid.dose_id == dose.id)) is not None
    return dose_json(dose, voided=voided, events=events)


def _requested(result: counter.DoseRequest):
    body = {"doses": [dose_json(d) for d in result.doses], "decisions": [decision_json(d) for d in result.decisions]}
    return body, 201 if result.created else 200


# ---------------------------------------------------------------------------------------------
# Endpoints


@blp.route("/counters")
class Counters(MethodView):
    @blp.response(200, PumpSchema(many=True))
    def get(self):
        """The clinic's active counters and whether each pump can dispense now (bottle, lot,
        calibration, ceiling)."""
        user = context.actor()
        require_role(user, *NURSE_ETC)
        rows = db().scalars(select(Counter).where(Counter.clinic_id == user.clinic_id, Counter.active.is_(True))
                            .order_by(Counter.code))
        return [pump_json(counter.pump_readiness(db(), row, context.now(), context.today())) for row in rows]


@blp.route("/worklist")
class WorklistView(MethodView):
    @blp.arguments(WorklistArgs, location="query")
    @blp.response(200, WorklistSchema)
    def get(self, args):
        """Today's worklist: one row per order part and unit-dose administration — dosed, in
        progress, unknown, to come, waiting for the pre-dose check, or blocked (reason codes)."""
        found = counter.worklist(db(), context.actor(), context.rule_set(), day=args.get("date"),
                                 counter_id=args.get("counter_id"), now=context.now())
        return {"date": found.day, "counter_id": found.counter_id, "counts": found.counts,
                "rows": [row.__dict__ for row in found.rows]}


@blp.route("/identify")
class Identify(MethodView):
    @blp.arguments(IdentifySchema)
    @blp.response(200, PanelSchema)
    def post(self, data):
        """Identify a patient by a raw scan (card, or a take-home label) or by id, and return the
        panel: photo, phase, planned mg/ml per part from the counter pump's lot, missed days, flags,
        decisions (vi/en) and the next allowed actions. A read: no CSRF-relevant change."""
        user = context.actor()
        scanned_dose_id = None
        if data.get("scan") is not None:
            scan = classify(data["scan"])
            if scan.kind is ScanKind.PATIENT_CARD:
                patient_id = counter.find_by_card(db(), user, scan.value).id
            elif scan.kind is ScanKind.CONTAINER_LABEL and scan.label_type is LabelType.TAKE_HOME:
                from dispensing.counter.records import dose_id_from_label

                scanned_dose_id = dose_id_from_label(scan.value)
                patient_id = _dose(scanned_dose_id).patient_id
            else:
                raise ValidationFailed("not a patient card", code="SCAN_NOT_A_PATIENT_CARD")
        elif data.get("patient_id") is not None:
            patient_id = data["patient_id"]
        else:
            raise ValidationFailed("scan or patient_id", code="SCAN_EMPTY")
        panel = counter.patient_panel(db(), user, context.rule_set(), patient_id, counter_id=data.get("counter_id"),
                                      now=context.now())
        return panel_json(panel, scanned_dose_id)


@blp.route("/patients/<int:patient_id>/panel")
class PatientPanel(MethodView):
    @blp.arguments(PanelArgs, location="query")
    @blp.response(200, PanelSchema)
    def get(self, args, patient_id):
        """The patient panel (as after identify), for refreshing the screen."""
        panel = counter.patient_panel(db(), context.actor(), context.rule_set(), patient_id,
                                      counter_id=args.get("counter_id"), now=context.now())
        return panel_json(panel)


@blp.route("/patients/<int:patient_id>/assessments")
class Assessments(MethodView):
    @blp.arguments(AssessmentWriteSchema)
    @blp.response(201, AssessmentSchema)
    def post(self, data, patient_id):
        """Record today's pre-dose assessment (checklist, COWS in induction). A positive finding
        BLOCKs the dose and take-home and raises a physician task."""
        actor, rule_set = context.actor(), context.rule_set()
        assessment, decisions = counter.record_assessment(db(), actor, rule_set, patient_id,
                                                          counter.AssessmentAnswers(**data))
        return {"id": assessment.id, "patient_id": assessment.patient_id,
                "business_date": assessment.business_date, "assessed_at": assessment.assessed_at,
                "positive": assessment.positive, "cows": assessment.cows,
                "decisions": [decision_json(d) for d in decisions]}


@blp.route("/doses")
class Doses(MethodView):
    @blp.arguments(AuthorizeSchema)
    @blp.response(201, DoseListSchema)
    @blp.alt_response(200, schema=DoseListSchema, description="The same request again: the same dose")
    def post(self, data):
        """Authorise today's dose of one order part at a counter (state REQUESTED); the counter's
        device service delivers it — poll GET /doses/{id}. Refusals: 409 ALREADY_DOSED, 422
        DOSE_BLOCKED (with decisions), 422 ACKNOWLEDGEMENT_REQUIRED, 409 CALIBRATION_EXPIRED…"""
        actor, rule_set = context.actor(), context.rule_set()
        return _requested(counter.authorize(
            db(), actor, rule_set, patient_id=data["patient_id"], counter_id=data["counter_id"],
            part_no=data["part_no"], idempotency_key=data["idempotency_key"], acknowledgements=_acks(data)))


@blp.route("/doses/<int:dose_id>")
class DoseItem(MethodView):
    @blp.response(200, DoseSchema)
    def get(self, dose_id):
        """A dose and its state history: poll this while the pump works."""
        require_role(context.actor(), *NURSE_ETC)
        return _dose_status(dose_id)


@blp.route("/doses/<int:dose_id>/cancel")
class DoseCancel(MethodView):
    @blp.arguments(CancelSchema)
    @blp.response(200, DoseSchema)
    def post(self, data, dose_id):
        """Withdraw a dose the pump has not started (REQUESTED → FAILED, nothing given)."""
        actor = context.actor()
        counter.cancel_request(db(), actor, dose_id, data.get("reason"))
        return _dose_status(dose_id)


@blp.route("/doses/<int:dose_id>/resolve")
class DoseResolve(MethodView):
    @blp.arguments(ResolveSchema)
    @blp.response(200, DoseSchema)
    def post(self, data, dose_id):
        """Resolve an UNKNOWN dose: given / partial (ml) / not_given, signed by the nurse
        (password) and a different witness; what was given is booked to the ledger."""
        actor = context.actor()
        rulebook = context.rulebook()
        counter.resolve_unknown(db(), actor, rulebook.for_clinic, dose_id=dose_id, outcome=data["outcome"],
                                password=data["password"], witness=_witness(data["witness"]),
                                delivered_ml=data.get("delivered_ml"), note=data.get("note"))
        return _dose_status(dose_id)


@blp.route("/doses/<int:dose_id>/complete")
class DoseComplete(MethodView):
    @blp.arguments(CompleteSchema)
    @blp.response(201, DoseListSchema)
    @blp.alt_response(200, schema=DoseListSchema, description="The same request again")
    def post(self, data, dose_id):
        """Authorise the remainder of a PARTIAL dose as a linked COMPLETION dose."""
        actor, rule_set = context.actor(), context.rule_set()
        return _requested(counter.complete_partial(db(), actor, rule_set, dose_id=dose_id,
                                                   counter_id=data["counter_id"],
                                                   idempotency_key=data["idempotency_key"]))


@blp.route("/doses/<int:dose_id>/vomit")
class DoseVomit(MethodView):
    @blp.arguments(VomitSchema)
    @blp.response(201, VomitResultSchema)
    def post(self, data, dose_id):
        """Record vomiting after a dose (witnessed by the nurse, or by a named witness). Returns
        whether a physician may order a replacement and in what range."""
        actor, rule_set = context.actor(), context.rule_set()
        vomit, evaluation = counter.record_vomit(
            db(), actor, rule_set, dose_id=dose_id, observed_at=data["observed_at"],
            witness=_witness(data.get("witness")), seen_by_recorder=data["seen_by_me"], note=data.get("note"))
        return {"id": vomit.id, "dose_id": vomit.dose_id, "observed_at": vomit.observed_at,
                "witnessed": vomit.witness_id is not None, "replacement_min_mg": evaluation.min_mg,
                "replacement_max_mg": evaluation.max_mg,
                "decisions": [decision_json(d) for d in evaluation.decisions]}


@blp.route("/doses/<int:dose_id>/replacement-order")
class DoseReplacementOrder(MethodView):
    @blp.arguments(ReplacementOrderSchema)
    @blp.response(201, ReplacementOrderOutSchema)
    def post(self, data, dose_id):
        """Physician: sign a replacement order (after vomiting within the rules, or for a voided
        record); the nurse then authorises it at a counter (POST /replacements)."""
        actor, rule_set = context.actor(), context.rule_set()
        return counter.order_replacement(db(), actor, rule_set, dose_id=dose_id, mg=data["mg"],
                                         password=data["password"], reason=data.get("reason"),
                                         acknowledgements=_acks(data))


@blp.route("/replacements")
class Replacements(MethodView):
    @blp.arguments(ReplacementDoseSchema)
    @blp.response(201, DoseListSchema)
    @blp.alt_response(200, schema=DoseListSchema, description="The same request again")
    def post(self, data):
        """Authorise the dose of a signed replacement order at a counter."""
        actor, rule_set = context.actor(), context.rule_set()
        return _requested(counter.authorize_replacement(db(), actor, rule_set, order_id=data["order_id"],
                                                        counter_id=data["counter_id"],
                                                        idempotency_key=data["idempotency_key"]))


@blp.route("/doses/<int:dose_id>/void")
class DoseVoidView(MethodView):
    @blp.arguments(VoidSchema)
    @blp.response(201, VoidOutSchema)
    def post(self, data, dose_id):
        """Void a mistaken dose record (reason, password, witness). The original stays; the void is
        a new record; the stock ledger is not changed."""
        actor = context.actor()
        return counter.void_dose(db(), actor, dose_id=dose_id, reason=data["reason"], password=data["password"],
                                 witness=_witness(data["witness"]))


@blp.route("/take-home")
class TakeHome(MethodView):
    @blp.arguments(TakeHomeSchema)
    @blp.response(201, DoseListSchema)
    @blp.alt_response(200, schema=DoseListSchema, description="The same request again")
    def post(self, data):
        """Authorise take-home doses (one per day and part, each into its own labelled container)
        when the clinic, the order and the take-home rules allow (422 TAKE_HOME_BLOCKED with the
        decisions otherwise)."""
        actor, rule_set = context.actor(), context.rule_set()
        return _requested(counter.prepare_take_home(
            db(), actor, rule_set, patient_id=data["patient_id"], counter_id=data["counter_id"],
            first_day=data["first_day"], days=data["days"], idempotency_key=data["idempotency_key"],
            acknowledgements=_acks(data)))


@blp.route("/doses/<int:dose_id>/label.pdf")
class TakeHomeLabel(MethodView):
    @blp.response(200, description="The take-home container label (PDF, Code 128 'T…')")
    def get(self, dose_id):
        """The printable label of a filled take-home container."""
        from devices.labels import ContainerLabel, render_pdf

        data = counter.take_home_label(db(), context.actor(), dose_id)
        label = ContainerLabel(**data.__dict__)
        label.validate()
        return Response(render_pdf(label), mimetype="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{data.label_id}.pdf"'})


@blp.route("/take-home/returns")
class TakeHomeReturns(MethodView):
    @blp.arguments(TakeHomeReturnSchema)
    @blp.response(201, TakeHomeReturnOutSchema)
    def post(self, data):
        """Record a take-home container brought back (scan its 'T…' label or give the dose id):
        empty, or with what was left (witnessed)."""
        from dispensing.counter.records import dose_id_from_label

        actor = context.actor()
        if data.get("scan"):
            scan = classify(data["scan"])
            if scan.kind is not ScanKind.CONTAINER_LABEL or scan.label_type is not LabelType.TAKE_HOME:
                raise ValidationFailed("not a take-home label", code="TAKE_HOME_LABEL_INVALID")
            dose_id = dose_id_from_label(scan.value)
        elif data.get("dose_id") is not None:
            dose_id = data["dose_id"]
        else:
            raise ValidationFailed("scan or dose_id", code="TAKE_HOME_LABEL_INVALID")
        return counter.record_take_home_return(db(), actor, dose_id=dose_id, empty=data["empty"],
                                               remaining_ml=data.get("remaining_ml"),
                                               witness=_witness(data.get("witness")), note=data.get("note"))


@blp.route("/medication-orders")
class MedicationOrders(MethodView):
    @blp.arguments(MedicationOrderWriteSchema)
    @blp.response(201, MedicationOrderSchema)
    def post(self, data):
        """Physician: sign an order for a unit-dose medicine given at the counter."""
        actor = context.actor()
        return counter.sign_medication_order(db(), actor, **data)


@blp.route("/patients/<int:patient_id>/medication-orders")
class PatientMedicationOrders(MethodView):
    @blp.response(200, MedicationOrderSchema(many=True))
    def get(self, patient_id):
        """The patient's medication orders (unit-dose medicines), newest first."""
        require_role(context.actor(), *NURSE_ETC)
        patient = get_patient(db(), context.actor(), patient_id)
        return db().scalars(select(MedicationOrder).where(MedicationOrder.patient_id == patient.id)
                            .order_by(MedicationOrder.id.desc()))


@blp.route("/medication-orders/<int:order_id>/stop")
class MedicationOrderStop(MethodView):
    @blp.arguments(MedicationOrderStopSchema)
    @blp.response(200, MedicationOrderSchema)
    def post(self, data, order_id):
        """Physician: stop a medication order from a date (signed)."""
        actor = context.actor()
        return counter.stop_medication_order(db(), actor, order_id, stopped_on=data["stopped_on"],
                                             password=data["password"])


@blp.route("/unit-doses")
class UnitDoses(MethodView):
    @blp.arguments(UnitDoseSchema)
    @blp.response(201, DoseListSchema)
    @blp.alt_response(200, schema=DoseListSchema, description="The same request again")
    def post(self, data):
        """Give one administration of a unit-dose medicine: the GS1 pack scan (GTIN, lot, expiry
        checked), the units counted; recorded observed and booked out of the counter shelf."""
        scan = classify(data["scan"])
        if scan.kind is not ScanKind.MEDICINE_PACK:
            raise ValidationFailed("not a medicine pack", code="PACK_SCAN_REJECTED")
        actor, rule_set = context.actor(), context.rule_set()
        pack = counter.PackScan(gtin=scan.gtin, lot=scan.lot, expiry=scan.expiry, serial=scan.serial)
        return _requested(counter.dispense_unit_dose(
            db(), actor, rule_set, patient_id=data["patient_id"], medication_order_id=data["medication_order_id"],
            administration_no=data["administration_no"], counter_id=data["counter_id"], scan=pack,
            units=data["units"], idempotency_key=data["idempotency_key"]))


@blp.route("/counters/<int:counter_id>/agent-token")
class CounterAgentToken(MethodView):
    @blp.response(201, AgentTokenSchema)
    def post(self, counter_id):
        """Admin: issue a new agent token for a counter (shown once; the old one stops working).
        From then on the counter is driven by its agent (``run.py agent``)."""
        actor = context.actor()
        return {"counter_id": counter_id, "token": counter.issue_agent_token(db(), actor, counter_id)}

    @blp.response(204)
    def delete(self, counter_id):
        """Admin: revoke the counter's agent token."""
        actor = context.actor()
        counter.revoke_agent_token(db(), actor, counter_id)

