"""Physician pages: the order form with the rule decisions shown live (htmx), WARN
acknowledgements with reasons, signing with password re-entry; unsigned drafts; the task list."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext

from dispensing import orders as order_service
from dispensing import rules
from dispensing import tasks as task_service
from dispensing.errors import DomainError
from dispensing.history import order_in_force, signed_orders
from dispensing.models import Order, OrderKind, OrderStatus, Phase, Role
from dispensing.patients import get_patient
from web import context
from web.auth import role_required
from web.database import db, writer
from web.errors import message_for, register_messages
from web.forms import DATE_PATTERN, DATE_PLACEHOLDER, format_day, parse_day
from web.labels import OUTCOME_LABELS, PHASE_LABELS

bp = Blueprint("physician", __name__)

register_messages({
    "ORDER_PHASE_REQUIRED": lazy_gettext("Choose the treatment phase."),
    "ORDER_DATES_REQUIRED": lazy_gettext("Enter the first day of the order."),
    "PASSWORD_REQUIRED": lazy_gettext("Enter your password to sign."),
    "TASK_NOT_FOUND": lazy_gettext("Task not found."),
    "TASK_NOTE_REQUIRED": lazy_gettext("Write a note saying what was done."),
    "TASK_ALREADY_DONE": lazy_gettext("This task is already done."),
})

MAX_PARTS = 3


@dataclass
class OrderValues:
    """The order form as typed (strings), so a refused form comes back exactly as it was."""

    phase: str = ""
    parts: list[str] = field(default_factory=lambda: ["", "", ""])
    valid_from: str = ""
    valid_until: str = ""
    reason: str = ""
    lifts: list[str] = field(default_factory=list)
    acks: set[str] = field(default_factory=set)  # WARN codes ticked as acknowledged
    reasons: dict[str, str] = field(default_factory=dict)  # WARN code → reason typed
    draft_id: int | None = None

    @classmethod
    def from_form(cls, form) -> OrderValues:
        parts = [(form.get(f"part{n}") or "").strip() for n in range(1, MAX_PARTS + 1)]
        draft = form.get("draft_id", "")
        return cls(
            phase=form.get("phase", ""), parts=parts, valid_from=form.get("valid_from", ""),
            valid_until=form.get("valid_until", ""), reason=(form.get("reason") or "").strip(),
            lifts=form.getlist("lift"),
            acks=set(form.getlist("ack")),
            reasons={key[len("reason_"):]: value.strip() for key, value in form.items()
                     if key.startswith("reason_") and value.strip()},
            draft_id=int(draft) if draft.isdigit() else None,
        )

    def acknowledgements(self) -> dict[str, str | None]:
        return {code: self.reasons.get(code) or None for code in self.acks}


def _decimal(text: str) -> Decimal:
    return Decimal(text.replace(",", ".").replace(" ", ""))


def parse_draft(values: OrderValues) -> order_service.OrderDraft:
    """Return the service's draft for the typed values. Raises ValidationFailed with a code."""
    from dispensing.errors import ValidationFailed

    try:
        phase = Phase(values.phase)
    except ValueError as exc:
        raise ValidationFailed("phase", code="ORDER_PHASE_REQUIRED") from exc
    try:
        parts = tuple(_decimal(p) for p in values.parts if p)
    except InvalidOperation as exc:
        raise ValidationFailed("dose", code="ORDER_DOSE_INVALID") from exc
    if not parts:
        raise ValidationFailed("dose", code="ORDER_DOSE_INVALID")
    try:
        valid_from, valid_until = parse_day(values.valid_from), parse_day(values.valid_until)
    except ValueError as exc:
        raise ValidationFailed("dates", code="ORDER_DATES_REQUIRED") from exc
    if valid_from is None:
        raise ValidationFailed("dates", code="ORDER_DATES_REQUIRED")
    lifts = []
    for item in values.lifts:
        code, _, subject = item.partition("|")
        lifts.append({"code": code, "subject": subject or None})
    return order_service.OrderDraft(phase=phase, parts=parts, valid_from=valid_from, valid_until=valid_until,
                                    reason=values.reason or None, lifts=tuple(lifts))


def _code(exc: DomainError) -> str:
    return str(exc.params.get("code") or exc.code)


def _default_values(patient_id: int, in_force: Order | None, today: date, rule_set: rules.RuleSet) -> OrderValues:
    dosing = in_force if in_force is not None and in_force.kind is OrderKind.DOSING else None
    phase = dosing.phase if dosing is not None else Phase.INDUCTION
    starts = today
    if dosing is not None and dosing.valid_until == today:
        starts = today + timedelta(days=1)  # the next order follows the one ending today
    window = rule_set.core.orders.windows.get(rules.Phase(phase.value))
    ends = starts + timedelta(days=(window.max_days if window else 1) - 1)
    parts = [str(p.dose_mg.normalize()) for p in dosing.parts] if dosing is not None else []
    return OrderValues(phase=phase.value, parts=(parts + ["", "", ""])[:MAX_PARTS], valid_from=format_day(starts),
                       valid_until=format_day(ends))


def _values_from_draft(order: Order) -> OrderValues:
    parts = [str(p.dose_mg.normalize()) for p in order.parts]
    return OrderValues(
        phase=order.phase.value if order.phase else "", parts=(parts + ["", "", ""])[:MAX_PARTS],
        valid_from=format_day(order.valid_from), valid_until=format_day(order.valid_until),
        reason=order.reason or "", lifts=[f"{x['code']}|{x.get('subject') or ''}" for x in order.lifts or []],
        draft_id=order.id,
    )


def _evaluate(patient_id: int, values: OrderValues) -> tuple[list[rules.Decision] | None, str | None]:
    """Return (decisions, error message) for the typed values; nothing is written."""
    if not any(values.parts):
        return None, None
    try:
        draft = parse_draft(values)
        decisions = order_service.evaluate_draft(db(), context.actor(), context.rule_set(), patient_id, draft,
                                                 context.today())
    except DomainError as exc:
        return None, message_for(_code(exc))
    return decisions, None


def _render_form(patient_id: int, values: OrderValues, *, decisions=None, error: str | None = None,
                 status: int = 200, evaluate: bool = True):
    session = db()
    actor = context.actor()
    patient = get_patient(session, actor, patient_id)
    today, rule_set = context.today(), context.rule_set()
    orders = signed_orders(session, patient.id)
    in_force = order_in_force(orders, today)
    # What the counter says about missed days today, and the block this order may lift.
    missed, missed_decision = task_service.missed_dose_review(session, rule_set, patient.id, orders, today)
    liftable = [missed_decision] if (missed_decision is not None and missed_decision.blocked
                                     and missed_decision.lift_role is rules.Role.PHYSICIAN) else []
    if decisions is None and error is None and evaluate:
        decisions, error = _evaluate(patient.id, values)
    return render_template(
        "physician/order_form.html", patient=patient, values=values, decisions=decisions, error=error,
        in_force=in_force, missed=missed, liftable=liftable, phase_labels=PHASE_LABELS,
        outcome_labels=OUTCOME_LABELS, max_parts=MAX_PARTS, today=today, use_htmx=True,
        date_pattern=DATE_PATTERN, date_placeholder=DATE_PLACEHOLDER,
    ), status


@bp.get("/patients/<int:patient_id>/orders/new")
@role_required(Role.PHYSICIAN)
def new_order(patient_id: int):
    patient = get_patient(db(), context.actor(), patient_id)
    orders = signed_orders(db(), patient.id)
    values = _default_values(patient.id, order_in_force(orders, context.today()), context.today(), context.rule_set())
    return _render_form(patient.id, values)


@bp.post("/patients/<int:patient_id>/orders/preview")
@role_required(Role.PHYSICIAN)
def preview(patient_id: int):
    """The decisions for the values typed so far (htmx swaps them into the form)."""
    get_patient(db(), context.actor(), patient_id)
    values = OrderValues.from_form(request.form)
    decisions, error = _evaluate(patient_id, values)
    return render_template("physician/_decisions.html", values=values, decisions=decisions, error=error,
                           outcome_labels=OUTCOME_LABELS), 422 if error else 200


@bp.post("/patients/<int:patient_id>/orders")
@role_required(Role.PHYSICIAN)
def sign(patient_id: int):
    """Save the draft (new or revised) and sign it with the password; on any refusal the form
    comes back with the decisions, the message and the draft kept for the next attempt."""
    actor = context.actor()
    get_patient(db(), actor, patient_id)
    rule_set, today = context.rule_set(), context.today()
    values = OrderValues.from_form(request.form)
    try:
        draft = parse_draft(values)
    except DomainError as exc:
        return _render_form(patient_id, values, error=message_for(_code(exc)), status=exc.status, evaluate=False)
    if request.form.get("action") == "check":
        return _render_form(patient_id, values)
    password = request.form.get("password") or ""
    if not password:
        flash(message_for("PASSWORD_REQUIRED"), "error")
        return _render_form(patient_id, values, status=422)
    if values.draft_id is not None:
        existing = db().get(Order, values.draft_id)
        if existing is None or existing.patient_id != patient_id:
            abort(404)
    cosigner = None
    if (request.form.get("cosigner_username") or "").strip():
        cosigner = (request.form["cosigner_username"], request.form.get("cosigner_password") or "")
    acknowledgements = values.acknowledgements()
    try:
        if values.draft_id is not None:
            order = order_service.revise_draft(writer(), actor, values.draft_id, draft)
        else:
            order = order_service.draft_order(writer(), actor, patient_id, draft)
        values.draft_id = order.id
        order_service.sign_order(writer(), actor, rule_set, order.id, password, today,
                                 acknowledgements=acknowledgements, cosigner=cosigner)
    except DomainError as exc:
        db().rollback()
        flash(message_for(_code(exc)), "error")
        return _render_form(patient_id, values, status=exc.status if 400 <= exc.status < 500 else 400)
    flash(gettext("Order signed."), "info")
    return redirect(url_for("patients.chart", patient_id=patient_id) + "#orders")


@bp.get("/orders/<int:order_id>/edit")
@role_required(Role.PHYSICIAN)
def edit_draft(order_id: int):
    order = db().get(Order, order_id)
    if order is None or order.status is not OrderStatus.DRAFT:
        abort(404)
    get_patient(db(), context.actor(), order.patient_id)
    return _render_form(order.patient_id, _values_from_draft(order))


@bp.post("/orders/<int:order_id>/discard")
@role_required(Role.PHYSICIAN)
def discard(order_id: int):
    actor = context.actor()
    try:
        order_service.discard_draft(writer(), actor, order_id)
    except DomainError as exc:
        db().rollback()
        flash(message_for(_code(exc)), "error")
        return _render_tasks(status=exc.status if 400 <= exc.status < 500 else 400)
    flash(gettext("Draft discarded."), "info")
    return redirect(request.form.get("next") if request.form.get("next", "").startswith("/patients/")
                    else url_for("physician.tasks"))


# ---- tasks ------------------------------------------------------------------------------------


def _render_tasks(status: int = 200):
    actor = context.actor()
    worklist = task_service.physician_worklist(db(), actor, context.rule_set(), context.today())
    return render_template("physician/tasks.html", worklist=worklist, today=context.today(),
                           phase_labels=PHASE_LABELS), status


@bp.get("/tasks")
@role_required(Role.PHYSICIAN)
def tasks():
    return _render_tasks()


@bp.post("/tasks/<int:task_id>/done")
@role_required(Role.PHYSICIAN)
def task_done(task_id: int):
    actor = context.actor()
    try:
        task_service.complete_task(writer(), actor, task_id, request.form.get("note", ""))
    except DomainError as exc:
        db().rollback()
        flash(message_for(_code(exc)), "error")
        return _render_tasks(status=exc.status if 400 <= exc.status < 500 else 400)
    flash(gettext("Task marked as done."), "info")
    target = request.form.get("next", "")
    return redirect(target if target.startswith("/patients/") else url_for("physician.tasks"))
