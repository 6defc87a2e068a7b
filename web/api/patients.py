"""Patients API: register, search, read, update flags, photo, ECG results, concomitant medications,
and what the counter will decide for a patient on a date."""

from __future__ import annotations

from datetime import date

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from flask_babel import lazy_gettext
from flask_smorest import Blueprint
from sqlalchemy import select

from dispensing import patients
from dispensing.counter_rules import counter_evaluation
from dispensing.errors import NotFound, ValidationFailed
from dispensing.models import (
    ClinicalTask,
    ConcomitantMedication,
    EcgResult,
    PatientFlag,
    PatientPhoto,
    Role,
    Sex,
    TaskStatus,
)
from dispensing.orders import decision_json
from dispensing.permissions import require_role
from web import context
from web.database import db
from web.errors import register_messages

blp = Blueprint("api_patients", __name__, description="Patients (người bệnh)")

register_messages({
    "PATIENT_NOT_FOUND": lazy_gettext("Patient not found."),
    "PATIENT_NAME_REQUIRED": lazy_gettext("The patient's full name is required."),
    "PATIENT_BIRTH_DATE_INVALID": lazy_gettext("The date of birth cannot be in the future."),
    "PATIENT_CODE_INVALID": lazy_gettext("The patient code may only contain letters, digits and - _ ."),
    "PATIENT_CODE_TAKEN": lazy_gettext("Another patient already has this code."),
    "PATIENT_NOT_ACTIVE": lazy_gettext("The patient is not in treatment."),
    "PHOTO_INVALID": lazy_gettext("The photo must be a JPEG, PNG or WebP image of at most 5 MB."),
    "ECG_QTC_OUT_OF_RANGE": lazy_gettext("QTc must be between 200 and 800 ms."),
    "ECG_DATE_IN_FUTURE": lazy_gettext("The ECG date cannot be in the future."),
    "MEDICATION_NAME_REQUIRED": lazy_gettext("The medicine's name is required."),
    "MEDICATION_NOT_FOUND": lazy_gettext("Medicine record not found."),
    "MEDICATION_ALREADY_STOPPED": lazy_gettext("This medicine is already recorded as stopped."),
    "MEDICATION_DATES_INVALID": lazy_gettext("The stop date is before the start date."),
})

ALL_STAFF = (Role.PHYSICIAN, Role.NURSE, Role.PHARMACIST, Role.ADMIN)


class PatientWriteSchema(ma.Schema):
    code = ma.fields.String(validate=ma.validate.Length(min=1, max=32))
    full_name = ma.fields.String(validate=ma.validate.Length(min=1, max=200))
    date_of_birth = ma.fields.Date(allow_none=True)
    sex = ma.fields.Enum(Sex, by_value=True, allow_none=True)
    national_id = ma.fields.String(validate=ma.validate.Length(max=32), allow_none=True)
    phone = ma.fields.String(validate=ma.validate.Length(max=32), allow_none=True)
    address = ma.fields.String(validate=ma.validate.Length(max=300), allow_none=True)
    treatment_start_date = ma.fields.Date(allow_none=True)
    pregnant = ma.fields.Boolean()
    hiv = ma.fields.Boolean()
    tb = ma.fields.Boolean()
    take_home_commitment_on = ma.fields.Date(allow_none=True)


class PatientCreateSchema(PatientWriteSchema):
    full_name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


class PatientSchema(ma.Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    card_barcode = ma.fields.String()
    full_name = ma.fields.String()
    date_of_birth = ma.fields.Date(allow_none=True)
    sex = ma.fields.Enum(Sex, by_value=True, allow_none=True)
    national_id = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    address = ma.fields.String(allow_none=True)
    treatment_start_date = ma.fields.Date(allow_none=True)
    status = ma.fields.Function(lambda p: p.status.value)
    pregnant = ma.fields.Boolean()
    hiv = ma.fields.Boolean()
    tb = ma.fields.Boolean()
    take_home_commitment_on = ma.fields.Date(allow_none=True)
    has_photo = ma.fields.Function(lambda p: p.photo is not None)


class SearchArgs(ma.Schema):
    q = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))


class EcgWriteSchema(ma.Schema):
    taken_on = ma.fields.Date(required=True)
    qtc_ms = ma.fields.Integer(required=True, strict=True)
    note = ma.fields.String(validate=ma.validate.Length(max=500), allow_none=True)


class EcgSchema(ma.Schema):
    id = ma.fields.Integer()
    taken_on = ma.fields.Date()
    qtc_ms = ma.fields.Integer()
    note = ma.fields.String(allow_none=True)


class MedicationWriteSchema(ma.Schema):
    drug_name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    started_on = ma.fields.Date(required=True)
    note = ma.fields.String(validate=ma.validate.Length(max=500), allow_none=True)


class MedicationStopSchema(ma.Schema):
    stopped_on = ma.fields.Date(required=True)


class MedicationSchema(ma.Schema):
    id = ma.fields.Integer()
    drug_name = ma.fields.String()
    started_on = ma.fields.Date()
    stopped_on = ma.fields.Date(allow_none=True)


class FollowUpSchema(ma.Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    message_vi = ma.fields.String()
    message_en = ma.fields.String()
    due_on = ma.fields.Date()
    starts_on = ma.fields.Date()
    ends_on = ma.fields.Date(allow_none=True)
    status = ma.fields.Function(lambda t: t.status.value if hasattr(t, "status") else None)


class DecisionSchema(ma.Schema):
    outcome = ma.fields.String()
    code = ma.fields.String()
    table_version = ma.fields.String()
    message_vi = ma.fields.String()
    message_en = ma.fields.String()
    needs_reason = ma.fields.Boolean()
    lift_role = ma.fields.String(allow_none=True)
    subject = ma.fields.String(allow_none=True)
    lifted = ma.fields.Boolean()


class CounterArgs(ma.Schema):
    date = ma.fields.Date()


class PlannedPartSchema(ma.Schema):
    part_no = ma.fields.Integer()
    mg = ma.fields.Decimal(as_string=True)
    ml = ma.fields.Decimal(as_string=True, allow_none=True)


class CounterDecisionSchema(ma.Schema):
    patient_id = ma.fields.Integer()
    date = ma.fields.Date()
    outcome = ma.fields.String()
    blocked = ma.fields.Boolean()
    missed_days = ma.fields.Integer()
    suggested_mg = ma.fields.Dict(allow_none=True)
    order_id = ma.fields.Integer(allow_none=True)
    phase = ma.fields.String(allow_none=True)
    daily_total_mg = ma.fields.Decimal(as_string=True, allow_none=True)
    planned_parts = ma.fields.List(ma.fields.Nested(PlannedPartSchema))
    decisions = ma.fields.List(ma.fields.Nested(DecisionSchema))
    flags = ma.fields.List(ma.fields.Dict())
    rule_set_version = ma.fields.String()


def _details(data: dict) -> patients.PatientDetails:
    fields = {k: v for k, v in data.items() if k != "code"}
    return patients.PatientDetails(**fields)


@blp.route("")
class PatientCollection(MethodView):
    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, PatientSchema(many=True))
    def get(self, args):
        """Search by card barcode, patient code, or part of the name (diacritics optional)."""
        return patients.search_patients(db(), context.actor(), args["q"])

    @blp.arguments(PatientCreateSchema)
    @blp.response(201, PatientSchema)
    def post(self, data):
        """Register a patient (physician, nurse or admin)."""
        return patients.register_patient(db(), context.actor(), _details(data), code=data.get("code"))


@blp.route("/<int:patient_id>")
class PatientItem(MethodView):
    @blp.response(200, PatientSchema)
    def get(self, patient_id):
        require_role(context.actor(), *ALL_STAFF)
        return patients.get_patient(db(), context.actor(), patient_id)

    @blp.arguments(PatientWriteSchema(partial=True))
    @blp.response(200, PatientSchema)
    def patch(self, data, patient_id):
        """Change demographics or flags (pregnancy, HIV, TB, take-home commitment)."""
        if "code" in data:
            raise ValidationFailed("code is fixed", code="PATIENT_CODE_INVALID")
        return patients.update_patient(db(), context.actor(), patient_id, _details(data))


@blp.route("/<int:patient_id>/photo")
class PatientPhotoItem(MethodView):
    def get(self, patient_id):
        """The patient's photo (JPEG)."""
        require_role(context.actor(), *ALL_STAFF)
        patient = patients.get_patient(db(), context.actor(), patient_id)
        photo = db().scalar(select(PatientPhoto).where(PatientPhoto.patient_id == patient.id))
        if photo is None:
            raise NotFound("photo", code="NOT_FOUND")
        return Response(photo.data, mimetype=photo.media_type, headers={"Cache-Control": "private, max-age=300"})

    @blp.response(204)
    def put(self, patient_id):
        """Upload a photo: the image as the body, or a multipart field named ``photo``."""
        upload = request.files.get("photo")
        data = upload.read() if upload is not None else request.get_data()
        patients.set_photo(db(), context.actor(), patient_id, data)


@blp.route("/<int:patient_id>/ecgs")
class PatientEcgs(MethodView):
    @blp.response(200, EcgSchema(many=True))
    def get(self, patient_id):
        require_role(context.actor(), *ALL_STAFF)
        patient = patients.get_patient(db(), context.actor(), patient_id)
        return db().scalars(select(EcgResult).where(EcgResult.patient_id == patient.id).order_by(EcgResult.taken_on))

    @blp.arguments(EcgWriteSchema)
    @blp.response(201, EcgSchema)
    def post(self, data, patient_id):
        return patients.record_ecg(db(), context.actor(), patient_id, data["taken_on"], data["qtc_ms"], data.get("note"))


@blp.route("/<int:patient_id>/medications")
class PatientMedications(MethodView):
    @blp.response(200, MedicationSchema(many=True))
    def get(self, patient_id):
        require_role(context.actor(), *ALL_STAFF)
        patient = patients.get_patient(db(), context.actor(), patient_id)
        return db().scalars(
            select(ConcomitantMedication).where(ConcomitantMedication.patient_id == patient.id)
            .order_by(ConcomitantMedication.started_on))

    @blp.arguments(MedicationWriteSchema)
    @blp.response(201, MedicationSchema)
    def post(self, data, patient_id):
        """Record a medicine started; interacting drugs raise a physician task and a watch flag."""
        return patients.start_medication(db(), context.actor(), context.rule_set(), patient_id, data["drug_name"],
                                         data["started_on"], data.get("note"))


@blp.route("/medications/<int:medication_id>/stop")
class MedicationStop(MethodView):
    @blp.arguments(MedicationStopSchema)
    @blp.response(200, MedicationSchema)
    def post(self, data, medication_id):
        return patients.stop_medication(db(), context.actor(), context.rule_set(), medication_id, data["stopped_on"])


@blp.route("/<int:patient_id>/follow-ups")
class PatientFollowUps(MethodView):
    @blp.response(200, FollowUpSchema(many=True))
    def get(self, patient_id):
        """Open physician tasks and current flags raised by the rules."""
        require_role(context.actor(), *ALL_STAFF)
        patient = patients.get_patient(db(), context.actor(), patient_id)
        tasks = db().scalars(select(ClinicalTask).where(
            ClinicalTask.patient_id == patient.id, ClinicalTask.status == TaskStatus.OPEN)).all()
        flags = db().scalars(select(PatientFlag).where(PatientFlag.patient_id == patient.id)).all()
        return [*tasks, *flags]


@blp.route("/<int:patient_id>/counter-decision")
class CounterDecision(MethodView):
    @blp.arguments(CounterArgs, location="query")
    @blp.response(200, CounterDecisionSchema)
    def get(self, args, patient_id):
        """What the counter will decide for this patient on this date (default: today): the rule
        decisions, the missed-day count and the suggested dose, the planned mg per part."""
        user = context.actor()
        require_role(user, *ALL_STAFF)
        patient = patients.get_patient(db(), user, patient_id)
        day: date = args.get("date") or context.today()
        evaluation, order = counter_evaluation(db(), context.rule_set(), patient, day, context.now())
        suggested = evaluation.suggested
        return {
            "patient_id": patient.id,
            "date": day,
            "outcome": evaluation.outcome.value,
            "blocked": evaluation.blocked,
            "missed_days": evaluation.missed_days,
            "suggested_mg": None if suggested is None else {
                "min_mg": str(suggested.min_mg), "max_mg": str(suggested.max_mg)},
            "order_id": order.id if order else None,
            "phase": order.phase.value if order else None,
            "daily_total_mg": order.daily_total_mg if order else None,
            "planned_parts": [{"part_no": p.number, "mg": p.dose_mg, "ml": p.volume.volume_ml if p.volume else None}
                              for p in evaluation.planned_parts],
            "decisions": [decision_json(d) for d in evaluation.decisions],
            "flags": [{"code": f.code.value, "message_vi": f.message_vi, "message_en": f.message_en,
                       "ends_on": f.ends_on.isoformat() if f.ends_on else None} for f in evaluation.flags],
            "rule_set_version": evaluation.rule_set_version,
        }
