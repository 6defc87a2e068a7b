"""Administration: users and roles."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext, lazy_gettext
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import DateField, PasswordField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from dispensing import accounts
from dispensing.errors import DomainError
from dispensing.models import Role, User
from web.auth import role_required, signed_in_user
from web.database import db
from web.errors import message_for
from web.labels import ROLE_LABELS

bp = Blueprint("admin", __name__, url_prefix="/admin")



class UserForm(FlaskForm):
    username = StringField(lazy_gettext("Username"), validators=[DataRequired(), Length(max=64)])
    full_name = StringField(lazy_gettext("Full name"), validators=[DataRequired(), Length(max=200)])
    password = PasswordField(lazy_gettext("Password"), validators=[DataRequired(), Length(min=8, max=256)])
    roles = SelectMultipleField(
        lazy_gettext("Roles"),
        choices=[SelectChoice(role.value, label) for role, label in ROLE_LABELS.items()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired()],
    )
    practice_start_date = DateField(lazy_gettext("Practice start date"), validators=[Optional()])
    mmt_certificate_no = StringField(lazy_gettext("MMT certificate number"), validators=[Optional(), Length(max=64)])


@bp.route("/users", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def users():
    actor = signed_in_user()
    form = UserForm()
    status = 200
    if form.validate_on_submit():
        session = db()
        try:
            accounts.create_user(
                session,
                actor=actor,
                clinic_id=actor.clinic_id,
                username=form.username.data,
                full_name=form.full_name.data,
                password=form.password.data,
                roles={Role(value) for value in form.roles.data},
                practice_start_date=form.practice_start_date.data,
                mmt_certificate_no=form.mmt_certificate_no.data or None,
            )
            session.commit()
        except DomainError as exc:
            session.rollback()
            flash(message_for(str(exc.params.get("code") or exc.code)), "error")
            status = 422
        else:
            flash(gettext("User created."), "info")
            return redirect(url_for("admin.users"))
    elif form.is_submitted():
        status = 422
    rows = db().scalars(select(User).where(User.clinic_id == actor.clinic_id).order_by(User.username)).all()
    return render_template("admin/users.html", form=form, users=rows, role_labels=ROLE_LABELS), status
