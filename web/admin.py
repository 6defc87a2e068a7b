"""Administration: users and roles, counters and devices with their calibration status and a
calibration entered by hand, the clinic's rule tables and settings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import (
    BooleanField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from dispensing import clinic_settings, equipment, user_admin
from dispensing.errors import DomainError
from dispensing.models import Calibration, CalibrationMethod, Counter, DeviceKind, Role, User
from dispensing.rules import RuleSelection
from dispensing.rules.loading import TABLE_KINDS
from web import context
from web.auth import role_required, signed_in_user
from web.database import db, writer
from web.errors import message_for, register_messages
from web.forms import DayField
from web.labels import DEVICE_KIND_LABELS, ROLE_LABELS

bp = Blueprint("admin", __name__, url_prefix="/admin")

register_messages({
    "USER_NOT_FOUND": lazy_gettext("User not found."),
    "USER_SELF_LOCKOUT": lazy_gettext("You cannot deactivate your own account or remove your own administrator role."),
    "RULE_TABLE_INVALID": lazy_gettext("This rule table selection cannot be loaded."),
    "TAKE_HOME_TABLE_DISABLED": lazy_gettext(
        "The take-home programme needs a take-home rule table that allows take-home doses."),
    "CLINIC_NAME_REQUIRED": lazy_gettext("The clinic's name is required."),
    "TIMEZONE_INVALID": lazy_gettext("Unknown timezone: use a name such as Asia/Ho_Chi_Minh."),
    "TOLERANCE_PCT_INVALID": lazy_gettext("The tolerance in % must be between 0 and 10 with at most 3 decimals."),
    "TOLERANCE_ML_INVALID": lazy_gettext("The tolerance in ml must be between 0 and 100 with at most 2 decimals."),
    "COUNTER_NOT_FOUND": lazy_gettext("Counter not found."),
    "COUNTER_CODE_INVALID": lazy_gettext("The code may only contain letters, digits and - _ . (at most 32)."),
    "COUNTER_NAME_REQUIRED": lazy_gettext("The counter's name is required."),
    "COUNTER_CODE_TAKEN": lazy_gettext("Another counter already has this code."),
    "DEVICE_NOT_FOUND": lazy_gettext("Device not found."),
    "DEVICE_CODE_INVALID": lazy_gettext("The code may only contain letters, digits and - _ . (at most 32)."),
    "DEVICE_CODE_TAKEN": lazy_gettext("Another device already has this code."),
    "DEVICE_FIELDS_REQUIRED": lazy_gettext("The driver and the port are required."),
    "DEVICE_NOT_A_PUMP": lazy_gettext("Only pumps are calibrated."),
    "DEVICE_INACTIVE": lazy_gettext("This device is out of service."),
    "CALIBRATION_MEASUREMENTS_INVALID": lazy_gettext(
        "Enter a positive measured volume for each replicate (at least 3 per nominal volume)."),
})

RULE_KIND_LABELS = {
    "core": lazy_gettext("Core clinical rules"),
    "missed_dose": lazy_gettext("Missed doses"),
    "take_home": lazy_gettext("Take-home doses"),
    "titration_cap": lazy_gettext("Weekly increase cap"),
    "interactions": lazy_gettext("Interacting drugs"),
}
CALIBRATION_STATE_LABELS = {
    equipment.CalibrationState.VALID: lazy_gettext("Valid"),
    equipment.CalibrationState.EXPIRED: lazy_gettext("Expired"),
    equipment.CalibrationState.FAILED: lazy_gettext("Failed"),
    equipment.CalibrationState.NONE: lazy_gettext("Never calibrated"),
}
CALIBRATION_REASON_LABELS = {
    "TOO_FEW_REPLICATES": lazy_gettext("too few replicates"),
    "INVALID_MEASUREMENT": lazy_gettext("a measurement is missing or not positive"),
    "DENSITY_REQUIRED": lazy_gettext("the density of the liquid is needed"),
    "CV_EXCEEDED": lazy_gettext("the replicates scatter too much (CV)"),
    "MEAN_ERROR_EXCEEDED": lazy_gettext("the error is not proportional to the volume"),
    "CORRECTION_TOO_LARGE": lazy_gettext("the pump is too far off: it needs service"),
}
NOMINAL_VOLUMES_ML = (Decimal("5.00"), Decimal("10.00"), Decimal("20.00"))
REPLICATES = 3


def _status(exc: DomainError) -> int:
    return exc.status if 400 <= exc.status < 500 else 400


def _refused(exc: DomainError) -> int:
    db().rollback()
    flash(message_for(str(exc.params.get("code") or exc.code)), "error")
    return _status(exc)


def _role_choices():
    return [SelectChoice(role.value, label) for role, label in ROLE_LABELS.items()]


class UserForm(FlaskForm):
    username = StringField(lazy_gettext("Username"), validators=[DataRequired(), Length(max=64)])
    full_name = StringField(lazy_gettext("Full name"), validators=[DataRequired(), Length(max=200)])
    password = PasswordField(lazy_gettext("Password"), validators=[DataRequired(), Length(min=8, max=256)])
    roles = SelectMultipleField(
        lazy_gettext("Roles"),
        choices=_role_choices(),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired()],
    )
    practice_start_date = DayField(lazy_gettext("Practice start date"), validators=[Optional()])
    mmt_certificate_no = StringField(lazy_gettext("MMT certificate number"), validators=[Optional(), Length(max=64)])


class RolesForm(FlaskForm):
    roles = SelectMultipleField(lazy_gettext("Roles"), choices=_role_choices(), widget=ListWidget(prefix_label=False),
                                option_widget=CheckboxInput(), validators=[DataRequired()])


class PasswordResetForm(FlaskForm):
    new_password = PasswordField(lazy_gettext("New password"), validators=[DataRequired(), Length(min=8, max=256)])


class CounterForm(FlaskForm):
    code = StringField(lazy_gettext("Code"), validators=[DataRequired(), Length(max=32)])
    name = StringField(lazy_gettext("Name"), validators=[DataRequired(), Length(max=200)])


class DeviceForm(FlaskForm):
    counter_id = SelectField(lazy_gettext("Counter"), choices=[], validators=[Optional()])
    code = StringField(lazy_gettext("Code"), validators=[DataRequired(), Length(max=32)])
    kind = SelectField(lazy_gettext("Kind"),
                       choices=[SelectChoice(k.value, label) for k, label in DEVICE_KIND_LABELS.items()])
    driver = StringField(lazy_gettext("Driver"), validators=[DataRequired(), Length(max=64)])
    port_url = StringField(lazy_gettext("Port"), validators=[DataRequired(), Length(max=255)])
    serial_number = StringField(lazy_gettext("Serial number"), validators=[Optional(), Length(max=64)])


class SettingsForm(FlaskForm):
    name = StringField(lazy_gettext("Clinic name"), validators=[DataRequired(), Length(max=200)])
    timezone = StringField(lazy_gettext("Timezone of the business day"), validators=[DataRequired(), Length(max=64)])
    take_home_enabled = BooleanField(lazy_gettext("The clinic runs the take-home (multi-day) programme"))
    reconcile_tolerance_pct = StringField(lazy_gettext("Reconciliation tolerance (%)"),
                                          validators=[DataRequired(), Length(max=16)])
    reconcile_tolerance_ml = StringField(lazy_gettext("Reconciliation tolerance (ml)"),
                                         validators=[DataRequired(), Length(max=16)])


# ---- users ------------------------------------------------------------------------------------


def _render_users(form: UserForm, status: int = 200):
    actor = context.actor()
    rows = db().scalars(select(User).where(User.clinic_id == actor.clinic_id).order_by(User.username)).all()
    return render_template("admin/users.html", form=form, users=rows, role_labels=ROLE_LABELS), status


@bp.route("/users", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def users():
    actor = signed_in_user()
    form = UserForm()
    if form.validate_on_submit():
        try:
            user_admin.add_user(
                writer(), actor, username=form.username.data, full_name=form.full_name.data,
                password=form.password.data, roles={Role(value) for value in form.roles.data},
                practice_start_date=form.practice_start_date.data,
                mmt_certificate_no=form.mmt_certificate_no.data or None,
            )
        except DomainError as exc:
            _refused(exc)
            return _render_users(form, 422)  # the form comes back to be corrected
        flash(gettext("User created."), "info")
        return redirect(url_for("admin.users"))
    return _render_users(form, 422 if form.is_submitted() else 200)


def _user_in_clinic(user_id: int) -> User:
    user = db().get(User, user_id)
    if user is None or user.clinic_id != context.actor().clinic_id:
        abort(404)
    return user


def _render_user(user: User, roles_form=None, password_form=None, status: int = 200):
    roles_form = roles_form or RolesForm(formdata=None, roles=sorted(r.value for r in user.roles))
    password_form = password_form or PasswordResetForm(formdata=None)
    return render_template("admin/user.html", user=user, roles_form=roles_form, password_form=password_form,
                           role_labels=ROLE_LABELS, is_self=user.id == context.actor().id), status


@bp.get("/users/<int:user_id>")
@role_required(Role.ADMIN)
def user(user_id: int):
    return _render_user(_user_in_clinic(user_id))


@bp.post("/users/<int:user_id>/roles")
@role_required(Role.ADMIN)
def user_roles(user_id: int):
    actor, target = context.actor(), _user_in_clinic(user_id)
    form = RolesForm()
    if not form.validate_on_submit():
        flash(message_for("USER_ROLE_REQUIRED"), "error")
        return _render_user(target, roles_form=form, status=422)
    try:
        user_admin.set_roles(writer(), actor, user_id, {Role(v) for v in form.roles.data})
    except DomainError as exc:
        status = _refused(exc)
        return _render_user(_user_in_clinic(user_id), roles_form=form, status=status)
    flash(gettext("Roles saved."), "info")
    return redirect(url_for("admin.user", user_id=user_id))


@bp.post("/users/<int:user_id>/password")
@role_required(Role.ADMIN)
def user_password(user_id: int):
    actor, target = context.actor(), _user_in_clinic(user_id)
    form = PasswordResetForm()
    if not form.validate_on_submit():
        flash(message_for("PASSWORD_TOO_SHORT"), "error")
        return _render_user(target, password_form=form, status=422)
    try:
        user_admin.reset_password(writer(), actor, user_id, form.new_password.data)
    except DomainError as exc:
        status = _refused(exc)
        return _render_user(_user_in_clinic(user_id), status=status)
    flash(gettext("Password changed. Give the new password to the user in person."), "info")
    return redirect(url_for("admin.user", user_id=user_id))


@bp.post("/users/<int:user_id>/active")
@role_required(Role.ADMIN)
def user_active(user_id: int):
    actor = context.actor()
    _user_in_clinic(user_id)
    active = request.form.get("active") == "1"
    try:
        user_admin.set_user_active(writer(), actor, user_id, active)
    except DomainError as exc:
        status = _refused(exc)
        return _render_user(_user_in_clinic(user_id), status=status)
    flash(gettext("Account reactivated.") if active else gettext("Account deactivated."), "info")
    return redirect(url_for("admin.user", user_id=user_id))


# ---- counters, devices and calibration --------------------------------------------------------


def _render_counters(counter_form=None, device_form=None, status: int = 200):
    actor = context.actor()
    overview = equipment.counters_overview(db(), actor, context.now())
    counter_form = counter_form or CounterForm(formdata=None)
    device_form = device_form or DeviceForm(formdata=None)
    device_form.counter_id.choices = [SelectChoice("", "—")] + [
        SelectChoice(str(s.counter.id), f"{s.counter.code} · {s.counter.name}") for s in overview if s.counter is not None]
    return render_template(
        "admin/counters.html", overview=overview, counter_form=counter_form, device_form=device_form,
        kind_labels=DEVICE_KIND_LABELS, state_labels=CALIBRATION_STATE_LABELS, drivers=equipment.KNOWN_DRIVERS,
        is_admin=actor.has_role(Role.ADMIN),
    ), status


@bp.get("/counters")
@role_required(Role.ADMIN, Role.PHARMACIST)
def counters():
    return _render_counters()


@bp.post("/counters")
@role_required(Role.ADMIN)
def add_counter():
    actor = context.actor()
    form = CounterForm()
    if not form.validate_on_submit():
        return _render_counters(counter_form=form, status=422)
    try:
        equipment.add_counter(writer(), actor, form.code.data, form.name.data)
    except DomainError as exc:
        return _render_counters(counter_form=form, status=_refused(exc))
    flash(gettext("Counter added."), "info")
    return redirect(url_for("admin.counters"))


@bp.post("/counters/<int:counter_id>/active")
@role_required(Role.ADMIN)
def counter_active(counter_id: int):
    actor = context.actor()
    active = request.form.get("active") == "1"
    try:
        equipment.set_counter_active(writer(), actor, counter_id, active)
    except DomainError as exc:
        return _render_counters(status=_refused(exc))
    flash(gettext("Counter back in service.") if active else gettext("Counter taken out of service."), "info")
    return redirect(url_for("admin.counters"))


@bp.post("/devices")
@role_required(Role.ADMIN)
def add_device():
    actor = context.actor()
    form = DeviceForm()
    form.counter_id.choices = [SelectChoice("", "—")] + [SelectChoice(str(c.id), c.code) for c in db().scalars(
        select(Counter).where(Counter.clinic_id == actor.clinic_id))]
    if not form.validate_on_submit():
        return _render_counters(device_form=form, status=422)
    try:
        equipment.add_device(
            writer(), actor, counter_id=int(form.counter_id.data) if form.counter_id.data else None,
            code=form.code.data, kind=DeviceKind(form.kind.data), driver=form.driver.data,
            port_url=form.port_url.data, serial_number=form.serial_number.data,
        )
    except DomainError as exc:
        return _render_counters(device_form=form, status=_refused(exc))
    flash(gettext("Device added."), "info")
    return redirect(url_for("admin.counters"))


@bp.post("/devices/<int:device_id>/active")
@role_required(Role.ADMIN)
def device_active(device_id: int):
    actor = context.actor()
    active = request.form.get("active") == "1"
    try:
        equipment.set_device_active(writer(), actor, device_id, active)
    except DomainError as exc:
        return _render_counters(status=_refused(exc))
    flash(gettext("Device back in service.") if active else gettext("Device taken out of service."), "info")
    return redirect(url_for("admin.counters"))


def _render_calibration(device_id: int, values: dict | None = None, result=None, status: int = 200):
    actor = context.actor()
    device = equipment.get_device(db(), actor, device_id)
    if device.kind is not DeviceKind.PUMP:
        abort(404)
    recent = db().scalars(select(Calibration).where(Calibration.device_id == device.id)
                          .order_by(Calibration.performed_at.desc(), Calibration.id.desc()).limit(5)).all()
    users = {u.id: u.full_name for u in db().scalars(
        select(User).where(User.id.in_({c.performed_by_id for c in recent})))} if recent else {}
    return render_template(
        "admin/calibrate.html", device=device, recent=recent, users=users, values=values or {},
        volumes=NOMINAL_VOLUMES_ML, replicates=REPLICATES, result=result, reason_labels=CALIBRATION_REASON_LABELS,
        state=equipment.calibration_state(recent[0] if recent else None, context.now()),
        state_labels=CALIBRATION_STATE_LABELS,
    ), status


@bp.get("/devices/<int:device_id>/calibrate")
@role_required(Role.ADMIN, Role.PHARMACIST)
def calibrate(device_id: int):
    return _render_calibration(device_id)


@bp.post("/devices/<int:device_id>/calibrate")
@role_required(Role.ADMIN, Role.PHARMACIST)
def record_calibration(device_id: int):
    """A volumetric calibration entered by hand: the measured volume (graduated cylinder) of each
    replicate; ``devices.calibration`` computes the factor, errors, CV and validity."""
    from devices.calibration import CalibrationMethod as DeviceMethod
    from devices.calibration import CalibrationRun, Replicate, ValidityPolicy, evaluate_calibration

    actor = context.actor()
    clinic, now = context.clinic(), context.now()
    device = equipment.get_device(db(), actor, device_id)
    values = {key: value for key, value in request.form.items() if key.startswith("m_") or key == "note"}
    replicates, rows = [], []
    try:
        for v, nominal in enumerate(NOMINAL_VOLUMES_ML):
            for r in range(REPLICATES):
                text = (request.form.get(f"m_{v}_{r}") or "").strip().replace(",", ".")
                if not text:
                    continue
                measured = Decimal(text)
                if not measured.is_finite():
                    raise InvalidOperation
                replicates.append(Replicate(nominal_ml=nominal, measured_ml=measured))
                rows.append({"nominal_ml": str(nominal), "measured_ml": str(measured)})
    except InvalidOperation:
        flash(message_for("CALIBRATION_MEASUREMENTS_INVALID"), "error")
        return _render_calibration(device_id, values, status=422)
    run = CalibrationRun(pump_id=device.code, method=DeviceMethod.VOLUMETRIC, replicates=tuple(replicates),
                         performed_at=now, liquid="water")
    result = evaluate_calibration(run, now=now, validity=ValidityPolicy(timezone=ZoneInfo(clinic.timezone)))
    record = equipment.CalibrationRecord(
        method=CalibrationMethod.VOLUMETRIC, performed_at=now, factor=result.factor,
        mean_error_pct=result.mean_error_pct, cv_pct=result.cv_pct, passed=result.passed,
        valid_until=result.valid_until, liquid_used_ml=result.liquid_used_ml, replicates=tuple(rows),
        reason=result.reason, note=(request.form.get("note") or "")[:500] or None, liquid=result.liquid,
    )
    try:
        equipment.record_calibration(writer(), actor, device_id, record)
    except DomainError as exc:
        return _render_calibration(device_id, values, result=result, status=_refused(exc))
    if result.passed:
        flash(gettext("Calibration passed: factor %(factor)s, valid until %(until)s.", factor=str(result.factor),
                      until=_until(result.valid_until)), "info")
        return redirect(url_for("admin.counters"))
    flash(gettext("Calibration failed: %(reason)s. The pump cannot dispense by volume until it passes.",
                  reason=str(CALIBRATION_REASON_LABELS.get(result.reason or "", result.reason or ""))), "error")
    return _render_calibration(device_id, values, result=result, status=422)


def _until(instant) -> str:
    from web.formatting import datetime_vn

    return datetime_vn(instant)


# ---- clinic settings and rule tables ----------------------------------------------------------


def _settings_form(clinic) -> SettingsForm:
    form = SettingsForm(formdata=None)
    form.name.data, form.timezone.data = clinic.name, clinic.timezone
    form.take_home_enabled.data = clinic.take_home_enabled
    form.reconcile_tolerance_pct.data = format(clinic.reconcile_tolerance_pct.normalize(), "f")
    form.reconcile_tolerance_ml.data = format(clinic.reconcile_tolerance_ml.normalize(), "f")
    return form


def _render_settings(form=None, selection=None, status: int = 200):
    clinic = context.clinic()
    rulebook = current_app.extensions["mmt.rulebook"]
    tables = clinic_settings.available_rule_tables(rulebook.rules_dir)
    return render_template(
        "admin/settings.html", clinic=clinic, form=form or _settings_form(clinic), tables=tables,
        selection=selection or clinic_settings.current_selection(clinic), kind_labels=RULE_KIND_LABELS,
        kinds=TABLE_KINDS, version=rulebook.for_clinic(clinic).version,
    ), status


@bp.get("/settings")
@role_required(Role.ADMIN)
def settings():
    return _render_settings()


@bp.post("/settings")
@role_required(Role.ADMIN)
def save_settings():
    actor = context.actor()
    rulebook = current_app.extensions["mmt.rulebook"]
    form = SettingsForm()
    if not form.validate_on_submit():
        return _render_settings(form=form, status=422)
    values = clinic_settings.ClinicSettings(
        name=form.name.data, timezone=form.timezone.data, take_home_enabled=bool(form.take_home_enabled.data),
        reconcile_tolerance_pct=form.reconcile_tolerance_pct.data, reconcile_tolerance_ml=form.reconcile_tolerance_ml.data,
    )
    try:
        clinic_settings.update_clinic_settings(writer(), actor, rulebook, values)
    except DomainError as exc:
        return _render_settings(form=form, status=_refused(exc))
    flash(gettext("Clinic settings saved."), "info")
    return redirect(url_for("admin.settings"))


@bp.post("/settings/rules")
@role_required(Role.ADMIN)
def save_rules():
    actor = context.actor()
    rulebook = current_app.extensions["mmt.rulebook"]
    selection = RuleSelection(**{kind: (request.form.get(kind) or "").strip() for kind in TABLE_KINDS})
    try:
        clinic_settings.select_rule_tables(writer(), actor, rulebook, selection)
    except DomainError as exc:
        return _render_settings(selection=selection, status=_refused(exc))
    flash(gettext("Rule tables saved. New orders and doses are checked with them from now on."), "info")
    return redirect(url_for("admin.settings"))
