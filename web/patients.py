"""Patient pages: search (name, code or a scanned card), registration and demographics, the photo
(upload or webcam), the printable card with its Code 128 barcode, and the chart with the
dose-history plot, orders, ECGs, medications, flags and open tasks."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import select
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from dispensing import patients as patient_service
from dispensing.counter_rules import evaluate_loaded, latest_assessment
from dispensing.errors import DomainError
from dispensing.history import build_history, dose_records, order_in_force, signed_orders
from dispensing.models import (
    ClinicalTask,
    ConcomitantMedication,
    EcgResult,
    Order,
    OrderKind,
    Patient,
    PatientFlag,
    PatientPhoto,
    Role,
    Sex,
    TaskStatus,
    User,
)
from web import context
from web.auth import role_required
from web.charts import ChartData, ChartLabels, dose_history_svg
from web.database import db, writer
from web.errors import message_for
from web.formatting import number
from web.forms import DayField
from web.labels import OUTCOME_LABELS, PHASE_LABELS, SEX_LABELS, STATUS_LABELS

bp = Blueprint("patients", __name__, url_prefix="/patients")

ALL_STAFF = (Role.PHYSICIAN, Role.NURSE, Role.PHARMACIST, Role.ADMIN)
REGISTRARS = patient_service.REGISTRARS
CHART_DAYS = 60


def _domain_message(exc: DomainError) -> str:
    return message_for(str(exc.params.get("code") or exc.code))


def _fail(exc: DomainError) -> int:
    """Roll back the refused write, show its message; return the status to answer with."""
    db().rollback()
    flash(_domain_message(exc), "error")
    return exc.status if 400 <= exc.status < 500 else 400


class PatientForm(FlaskForm):
    code = StringField(lazy_gettext("Patient code"), validators=[Optional(), Length(max=32)],
                       description=lazy_gettext("Leave empty to assign the next code."))
    full_name = StringField(lazy_gettext("Full name"), validators=[DataRequired(), Length(max=200)])
    date_of_birth = DayField(lazy_gettext("Date of birth"), validators=[Optional()])
    sex = SelectField(lazy_gettext("Sex"), choices=[], validators=[Optional()])
    national_id = StringField(lazy_gettext("National ID number"), validators=[Optional(), Length(max=32)])
    phone = StringField(lazy_gettext("Phone"), validators=[Optional(), Length(max=32)])
    address = StringField(lazy_gettext("Address"), validators=[Optional(), Length(max=300)])
    treatment_start_date = DayField(lazy_gettext("Treatment start date"), validators=[Optional()])
    pregnant = BooleanField(lazy_gettext("Pregnant"))
    hiv = BooleanField(lazy_gettext("HIV"))
    tb = BooleanField(lazy_gettext("Tuberculosis"))
    take_home_commitment_on = DayField(lazy_gettext("Take-home commitment signed on"), validators=[Optional()])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sex.choices = [SelectChoice("", "—")] + [SelectChoice(sex.value, label) for sex, label in SEX_LABELS.items()]

    def details(self) -> patient_service.PatientDetails:
        return patient_service.PatientDetails(
            full_name=self.full_name.data, date_of_birth=self.date_of_birth.data,
            sex=Sex(self.sex.data) if self.sex.data else None, national_id=self.national_id.data or None,
            phone=self.phone.data or None, address=self.address.data or None,
            treatment_start_date=self.treatment_start_date.data, pregnant=bool(self.pregnant.data),
            hiv=bool(self.hiv.data), tb=bool(self.tb.data),
            take_home_commitment_on=self.take_home_commitment_on.data,
        )


class EcgForm(FlaskForm):
    taken_on = DayField(lazy_gettext("ECG date"), validators=[DataRequired()])
    qtc_ms = IntegerField(lazy_gettext("QTc (ms)"), validators=[DataRequired(), NumberRange(min=200, max=800)])
    note = StringField(lazy_gettext("Note"), validators=[Optional(), Length(max=500)])


class MedicationForm(FlaskForm):
    drug_name = StringField(lazy_gettext("Medicine"), validators=[DataRequired(), Length(max=120)])
    started_on = DayField(lazy_gettext("Started on"), validators=[DataRequired()])
    note = StringField(lazy_gettext("Note"), validators=[Optional(), Length(max=500)])


class StopMedicationForm(FlaskForm):
    stopped_on = DayField(lazy_gettext("Stopped on"), validators=[DataRequired()])


# ---- search and registration ------------------------------------------------------------------


@bp.get("")
@role_required(*ALL_STAFF)
def search():
    actor = context.actor()
    query = (request.args.get("q") or "").strip()[:100]
    found = patient_service.search_patients(db(), actor, query) if query else []
    # A scanned card or a typed code that matches exactly one patient opens the chart directly.
    if len(found) == 1 and (found[0].card_barcode == query or found[0].code.lower() == query.lower()):
        return redirect(url_for("patients.chart", patient_id=found[0].id))
    return render_template("patients/search.html", query=query, patients=found,
                           can_register=actor.has_role(*REGISTRARS), status_labels=STATUS_LABELS)


@bp.route("/new", methods=["GET", "POST"])
@role_required(*REGISTRARS)
def register():
    actor = context.actor()
    form = PatientForm()
    status = 200
    if form.validate_on_submit():
        try:
            patient = patient_service.register_patient(writer(), actor, form.details(),
                                                       code=(form.code.data or "").strip() or None)
        except DomainError as exc:
            status = _fail(exc)
        else:
            flash(gettext("Patient registered. Add a photo and print the card."), "info")
            return redirect(url_for("patients.chart", patient_id=patient.id) + "#photo")
    elif form.is_submitted():
        status = 422
    elif request.method == "GET" and not form.treatment_start_date.data:
        form.treatment_start_date.data = context.today()
    return render_template("patients/form.html", form=form, patient=None), status


@bp.route("/<int:patient_id>/edit", methods=["GET", "POST"])
@role_required(*REGISTRARS)
def edit(patient_id: int):
    actor = context.actor()
    patient = patient_service.get_patient(db(), actor, patient_id)
    form = PatientForm(obj=patient) if request.method == "GET" else PatientForm()
    if request.method == "GET":
        form.sex.data = patient.sex.value if patient.sex else ""
    del form.code
    status = 200
    if form.validate_on_submit():
        try:
            patient_service.update_patient(writer(), actor, patient_id, form.details())
        except DomainError as exc:
            status = _fail(exc)
        else:
            flash(gettext("Patient details saved."), "info")
            return redirect(url_for("patients.chart", patient_id=patient_id))
    elif form.is_submitted():
        status = 422
    return render_template("patients/form.html", form=form, patient=patient), status


# ---- photo and card ---------------------------------------------------------------------------


@bp.get("/<int:patient_id>/photo")
@role_required(*ALL_STAFF)
def photo(patient_id: int):
    patient = patient_service.get_patient(db(), context.actor(), patient_id)
    found = db().scalar(select(PatientPhoto).where(PatientPhoto.patient_id == patient.id))
    if found is None:
        abort(404)
    response = Response(found.data, mimetype=found.media_type)
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@bp.post("/<int:patient_id>/photo")
@role_required(*REGISTRARS)
def upload_photo(patient_id: int):
    """The photo from the file input or the webcam (a JPEG blob in the same ``photo`` field)."""
    actor = context.actor()
    upload = request.files.get("photo")
    data = upload.read() if upload is not None else b""
    try:
        patient_service.set_photo(writer(), actor, patient_id, data)
    except DomainError as exc:
        if request.headers.get("X-Requested-With") == "fetch":
            db().rollback()
            return {"code": str(exc.params.get("code") or exc.code), "message": _domain_message(exc)}, exc.status
        return render_chart(patient_id), _fail(exc)
    flash(gettext("Photo saved."), "info")
    if request.headers.get("X-Requested-With") == "fetch":
        return {"ok": True, "location": url_for("patients.chart", patient_id=patient_id)}
    return redirect(url_for("patients.chart", patient_id=patient_id))


def card_svg(patient: Patient, clinic_name: str, issued_on: date) -> Markup:
    """Return the patient card (85.6 × 54 mm) as inline SVG, drawn by ``devices.labels``."""
    from devices.labels import PatientCard, render_svg

    svg = render_svg(PatientCard(patient_code=patient.card_barcode, patient_name=patient.full_name,
                                 clinic_name=clinic_name, issued_on=issued_on))
    return Markup(svg[svg.index("<svg"):])


@bp.get("/<int:patient_id>/card")
@role_required(*ALL_STAFF)
def card(patient_id: int):
    actor = context.actor()
    patient = patient_service.get_patient(db(), actor, patient_id)
    from devices.labels import LabelDataError

    try:
        svg = card_svg(patient, context.clinic().name, context.today())
    except LabelDataError:
        flash(gettext("This card number cannot be printed as a barcode."), "error")
        return render_chart(patient_id), 409
    return render_template("patients/card.html", patient=patient, svg=svg)


# ---- chart ------------------------------------------------------------------------------------


def _chart_svg(doses, orders: list[Order], ecgs: list[EcgResult], today: date) -> Markup:
    start, end = today - timedelta(days=CHART_DAYS - 1), today
    taken: dict[date, Decimal] = {}
    for record in doses:
        taken[record.on] = taken.get(record.on, Decimal(0)) + record.mg
    missed = set()
    day = start
    while day < today:
        governing = order_in_force(orders, day)
        if governing is not None and governing.kind is OrderKind.DOSING and day not in taken:
            missed.add(day)
        day += timedelta(days=1)
    changes, previous = [], None
    for order in sorted((o for o in orders if o.kind is OrderKind.DOSING), key=lambda o: (o.valid_from, o.id)):
        if order.phase != previous:
            changes.append((order.valid_from, order.phase.value))
            previous = order.phase
    labels = ChartLabels(
        title=gettext("Dose history, last %(days)s days", days=CHART_DAYS), dose=gettext("Dose taken (mg)"),
        missed=gettext("Missed day"), phase_change=gettext("Phase change"), ecg=gettext("ECG (QTc)"),
        phases={phase.value: str(label) for phase, label in PHASE_LABELS.items()},
    )
    data = ChartData(start=start, end=end, doses=taken, missed=frozenset(missed), phase_changes=tuple(changes),
                     ecgs=tuple((e.taken_on, e.qtc_ms) for e in ecgs))
    return dose_history_svg(data, labels, number=number)


@bp.get("/<int:patient_id>")
@role_required(*ALL_STAFF)
def chart(patient_id: int):
    return render_chart(patient_id)


def render_chart(patient_id: int, *, ecg_form: EcgForm | None = None, med_form: MedicationForm | None = None):
    """Return the chart page; forms that failed validation are shown again with their input."""
    actor = context.actor()
    session = db()
    patient = patient_service.get_patient(session, actor, patient_id)
    today, rule_set = context.today(), context.rule_set()
    # The patient's records are read once and serve the counter preview, the plot and the tables.
    orders = signed_orders(session, patient.id)
    in_force = order_in_force(orders, today)
    ecgs = session.scalars(select(EcgResult).where(EcgResult.patient_id == patient.id)
                           .order_by(EcgResult.taken_on.desc(), EcgResult.id.desc())).all()
    # The rules' window, and at least the plotted days.
    doses = dose_records(session, patient.id, today, days=max(rule_set.dose_history_days, CHART_DAYS))
    evaluation, _order = evaluate_loaded(rule_set, build_history(patient, orders, doses, ecgs), orders, today,
                                         context.now(), assessment=latest_assessment(session, patient.id, today))
    medications = session.scalars(select(ConcomitantMedication).where(ConcomitantMedication.patient_id == patient.id)
                                  .order_by(ConcomitantMedication.started_on.desc())).all()
    tasks = session.scalars(select(ClinicalTask).where(ClinicalTask.patient_id == patient.id,
                                                       ClinicalTask.status == TaskStatus.OPEN)
                            .order_by(ClinicalTask.due_on)).all()
    flags = session.scalars(select(PatientFlag).where(PatientFlag.patient_id == patient.id,
                                                      PatientFlag.starts_on <= today)
                            .order_by(PatientFlag.starts_on.desc())).all()
    flags = [f for f in flags if f.ends_on is None or f.ends_on >= today]
    history = session.scalars(select(Order).where(Order.patient_id == patient.id)
                              .order_by(Order.id.desc()).limit(15)).all()
    signer_ids = {o.signed_by_id for o in history if o.signed_by_id}
    signers = {u.id: u.full_name for u in session.scalars(select(User).where(User.id.in_(signer_ids)))} \
        if signer_ids else {}
    has_photo = session.scalar(select(PatientPhoto.id).where(PatientPhoto.patient_id == patient.id)) is not None
    stop_form = StopMedicationForm(formdata=None)
    stop_form.stopped_on.data = today
    if ecg_form is None:
        ecg_form = EcgForm(formdata=None)
        ecg_form.taken_on.data = today
    if med_form is None:
        med_form = MedicationForm(formdata=None)
        med_form.started_on.data = today
    return render_template(
        "patients/chart.html", patient=patient, today=today, in_force=in_force, evaluation=evaluation,
        chart=_chart_svg(doses, orders, list(ecgs), today), ecgs=ecgs, medications=medications, tasks=tasks,
        flags=flags, history=history, signers=signers, has_photo=has_photo, ecg_form=ecg_form, med_form=med_form,
        stop_form=stop_form, phase_labels=PHASE_LABELS, outcome_labels=OUTCOME_LABELS, sex_labels=SEX_LABELS, status_labels=STATUS_LABELS,
        is_physician=actor.has_role(Role.PHYSICIAN), can_register=actor.has_role(*REGISTRARS),
        can_record_ecg=actor.has_role(Role.PHYSICIAN, Role.NURSE), age=_age(patient.date_of_birth, today),
    )


def _age(born: date | None, today: date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


# ---- ECG and medications ----------------------------------------------------------------------


@bp.post("/<int:patient_id>/ecgs")
@role_required(Role.PHYSICIAN, Role.NURSE)
def add_ecg(patient_id: int):
    actor = context.actor()
    form = EcgForm()
    if not form.validate_on_submit():
        flash(gettext("Enter the ECG date and a QTc between 200 and 800 ms."), "error")
        return render_chart(patient_id, ecg_form=form), 422
    try:
        patient_service.record_ecg(writer(), actor, patient_id, form.taken_on.data, form.qtc_ms.data,
                                   form.note.data or None)
    except DomainError as exc:
        return render_chart(patient_id, ecg_form=form), _fail(exc)
    flash(gettext("ECG recorded."), "info")
    return redirect(url_for("patients.chart", patient_id=patient_id) + "#ecg")


@bp.post("/<int:patient_id>/medications")
@role_required(Role.PHYSICIAN)
def start_medication(patient_id: int):
    actor, rule_set = context.actor(), context.rule_set()
    form = MedicationForm()
    if not form.validate_on_submit():
        flash(gettext("Enter the medicine's name and the date it was started."), "error")
        return render_chart(patient_id, med_form=form), 422
    try:
        patient_service.start_medication(writer(), actor, rule_set, patient_id, form.drug_name.data,
                                         form.started_on.data, form.note.data or None)
    except DomainError as exc:
        return render_chart(patient_id, med_form=form), _fail(exc)
    flash(gettext("Medicine recorded."), "info")
    return redirect(url_for("patients.chart", patient_id=patient_id) + "#medications")


@bp.post("/medications/<int:medication_id>/stop")
@role_required(Role.PHYSICIAN)
def stop_medication(medication_id: int):
    actor, rule_set = context.actor(), context.rule_set()
    medication = db().get(ConcomitantMedication, medication_id)
    if medication is None:
        abort(404)
    patient = patient_service.get_patient(db(), actor, medication.patient_id)
    form = StopMedicationForm()
    if not form.validate_on_submit():
        flash(gettext("Enter the date the medicine was stopped."), "error")
        return render_chart(patient.id), 422
    try:
        patient_service.stop_medication(writer(), actor, rule_set, medication_id, form.stopped_on.data)
    except DomainError as exc:
        return render_chart(patient.id), _fail(exc)
    flash(gettext("Medicine recorded as stopped."), "info")
    return redirect(url_for("patients.chart", patient_id=patient.id) + "#medications")
