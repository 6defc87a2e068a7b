"""The counter screen (quầy cấp phát) for nurses: scan a card (or search a name or code), see the
patient's photo, today's dose in mg and ml, missed days, flags and the rule decision; answer the
pre-dose checklist with the keyboard; dispense with one key; follow the pump until the dose is
completed, partial (complete the remainder), failed or unknown (resolve with a witness); and the
queue of the nurse's counter.

Every write is a ``dispensing.counter`` use case (roles are checked there); this module only
parses forms and renders. Pages are fragments for htmx, whole pages without it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from devices.scan import LabelType, ScanKind
from dispensing import counter as counter_use_cases
from dispensing import rules
from dispensing.counter.panel import BEFORE_ASSESSMENT, SlotStatus
from dispensing.errors import DomainError, NotFound, ValidationFailed
from dispensing.models import Counter, Dose, DoseState, Role
from dispensing.patients import get_patient, search_patients
from dispensing.permissions import require_role
from dispensing.stock.signatures import Cosigner
from web import context
from web.api.counter import classify
from web.auth import role_required, signed_in_user
from web.database import db, writer
from web.errors import MESSAGES, error_response, message_for, register_messages
from web.labels import OUTCOME_LABELS, PHASE_LABELS
from web.navigation import register

bp = Blueprint("counter", __name__, url_prefix="/counter")

STAFF = (Role.NURSE, Role.PHYSICIAN, Role.PHARMACIST, Role.ADMIN)
SESSION_KEY = "counter_id"
IN_FLIGHT = (DoseState.REQUESTED, DoseState.PROGRAMMED, DoseState.RUNNING)
# A poll of the dose state or the queue says so in this header: it is not the nurse's activity,
# so it does not keep an idle session alive (web.auth).
POLL_HEADER = "X-Idle-Poll"

register("counter.index", lazy_gettext("Counter"), Role.NURSE, order=5)

register_messages({
    "COUNTER_NOT_CHOSEN": lazy_gettext("Choose the counter you work at first."),
    "SEARCH_NO_MATCH": lazy_gettext("No patient has this card, code or name. Scan the card again or type the name."),
    "CHECKLIST_INCOMPLETE": lazy_gettext("Answer every question of the checklist (1 = No, 2 = Yes)."),
    "PART_REQUIRED": lazy_gettext("Choose the part of the dose to give."),
})

# The pre-dose checklist (CLINICAL_RULES §5): field name → question.
CHECKLIST = (
    ("drowsy", lazy_gettext("Drowsy or sedated?")),
    ("slurred_speech", lazy_gettext("Slurred speech?")),
    ("pinpoint_pupils", lazy_gettext("Pinpoint pupils?")),
    ("alcohol_smell", lazy_gettext("Smells of alcohol?")),
    ("unsteady_gait", lazy_gettext("Unsteady gait?")),
)

STATE_LABELS = {
    DoseState.REQUESTED: lazy_gettext("Waiting for the pump"),
    DoseState.PROGRAMMED: lazy_gettext("Pump programmed"),
    DoseState.RUNNING: lazy_gettext("Pump running"),
    DoseState.COMPLETED: lazy_gettext("Completed"),
    DoseState.PARTIAL: lazy_gettext("Partial"),
    DoseState.FAILED: lazy_gettext("Failed"),
    DoseState.UNKNOWN: lazy_gettext("Outcome unknown"),
}
STATE_STEP = {DoseState.REQUESTED: 1, DoseState.PROGRAMMED: 2, DoseState.RUNNING: 3}

SLOT_LABELS = {
    SlotStatus.TO_COME: lazy_gettext("Ready to dispense"),
    SlotStatus.NEEDS_ASSESSMENT: lazy_gettext("Checklist needed"),
    SlotStatus.BLOCKED: lazy_gettext("Blocked"),
    SlotStatus.IN_PROGRESS: lazy_gettext("Being dispensed"),
    SlotStatus.UNKNOWN: lazy_gettext("Outcome unknown"),
    SlotStatus.PARTIAL: lazy_gettext("Partial"),
    SlotStatus.DOSED: lazy_gettext("Dosed"),
}

# Why a pump run failed (devices.dispense.DispenseReason and the server's own codes).
FAILURE_LABELS = {
    "REQUEST_EXPIRED": lazy_gettext("The pump did not start the dose in time; nothing was given."),
    "CANCELLED": lazy_gettext("The request was cancelled; nothing was given."),
    "INTERRUPTED": lazy_gettext("The pump service was interrupted during the dose."),
    "NO_REPLY": lazy_gettext("The pump did not answer."),
    "PORT_LOST": lazy_gettext("The pump's connection was lost."),
    "PUMP_STALL": lazy_gettext("The pump motor stalled (blocked line?)."),
    "POWER_RESET": lazy_gettext("The pump lost power."),
    "WATCHDOG": lazy_gettext("The pump stopped itself (safety timeout)."),
    "READBACK_MISMATCH": lazy_gettext("The pump did not confirm the programmed volume."),
    "SHORT_DELIVERY": lazy_gettext("The pump delivered less than planned."),
    "OVER_DELIVERY": lazy_gettext("The pump delivered more than planned."),
    "OVER_CEILING": lazy_gettext("The volume is above this pump's limit."),
    "CALIBRATION_EXPIRED": lazy_gettext("The pump's calibration has expired: calibrate it before dispensing."),
}

# Short reasons for blocked rows of the queue (the panel shows the rule's full text).
QUEUE_REASON_LABELS = {
    "PREDOSE_CHECK_POSITIVE": lazy_gettext("positive pre-dose check"),
    "MISSED_DOSES_REVIEW": lazy_gettext("missed doses: physician review"),
    "MISSED_DOSES_SEE_PATIENT": lazy_gettext("missed doses: physician must see the patient"),
    "MISSED_DOSES_RESTART_INDUCTION": lazy_gettext("missed doses: restart induction"),
    "TREATMENT_INTERRUPTION_REVIEW": lazy_gettext("treatment interrupted: physician review"),
    "NO_ACTIVE_ORDER": lazy_gettext("no order in force"),
    "ORDER_EXPIRED": lazy_gettext("order expired"),
    "ECG_REQUIRED_HIGH_DOSE": lazy_gettext("ECG required"),
}


# ---------------------------------------------------------------------------------------------
# Helpers


def _code(exc: DomainError) -> str:
    return str(exc.params.get("code") or exc.code)


def _status(exc: DomainError) -> int:
    return exc.status if 400 <= exc.status < 500 else 400


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def new_key() -> str:
    """A fresh idempotency key: one per rendered dispense form, so a repeated post is the same
    request and never a second dose."""
    return uuid.uuid4().hex


def chosen_counter() -> Counter | None:
    """The counter chosen for this session, if it is still an active counter of the clinic."""
    counter_id = session.get(SESSION_KEY)
    if not isinstance(counter_id, int):
        return None
    found = db().get(Counter, counter_id)
    if found is None or not found.active or found.clinic_id != context.actor().clinic_id:
        return None
    return found


def require_counter() -> Counter:
    found = chosen_counter()
    if found is None:
        raise ValidationFailed("no counter chosen", code="COUNTER_NOT_CHOSEN")
    return found


def _decimal_ml(text: str | None) -> Decimal | None:
    text = (text or "").strip().replace(" ", "").replace(",", ".")
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValidationFailed("ml", code="RESOLUTION_ML_INVALID") from exc
    if not value.is_finite():
        raise ValidationFailed("ml", code="RESOLUTION_ML_INVALID")
    return value


@dataclass(frozen=True)
class PanelView:
    """What the panel template needs besides the service's Panel."""

    panel: counter_use_cases.Panel
    real_blocks: tuple[rules.Decision, ...]
    shown: tuple[rules.Decision, ...]  # WARN and BLOCK decisions, blocks first
    needs_checklist: bool
    authorize: tuple[dict, ...]
    can_resolve: frozenset[int]
    can_complete: frozenset[int]
    can_cancel: frozenset[int]
    flags: tuple[dict, ...]
    induction: bool
    key: str


def panel_view(panel: counter_use_cases.Panel) -> PanelView:
    decisions = panel.evaluation.decisions
    blocks = tuple(d for d in decisions if d.outcome is rules.Outcome.BLOCK and d.code not in BEFORE_ASSESSMENT)
    shown = blocks + tuple(d for d in decisions if d.outcome is rules.Outcome.BLOCK and d.code in BEFORE_ASSESSMENT) \
        + tuple(d for d in decisions if d.outcome is rules.Outcome.WARN)
    actions = panel.actions
    needs_checklist = (not blocks and any(a["action"] == "record_assessment" for a in actions)
                       and any(p.status == SlotStatus.NEEDS_ASSESSMENT for p in panel.parts))
    flags = tuple({"message_vi": f.message_vi, "message_en": f.message_en, "ends_on": f.ends_on}
                  for f in (*panel.evaluation.flags, *panel.flags))
    return PanelView(
        panel=panel, real_blocks=blocks, shown=shown, needs_checklist=needs_checklist,
        authorize=tuple(a for a in actions if a["action"] == "authorize") if not blocks else (),
        can_resolve=frozenset(a["dose_id"] for a in actions if a["action"] == "resolve_unknown"),
        can_complete=frozenset(a["dose_id"] for a in actions if a["action"] == "complete_partial"),
        can_cancel=frozenset(a["dose_id"] for a in actions if a["action"] == "cancel"),
        flags=flags, induction=panel.order is not None and panel.order.phase is not None
        and panel.order.phase.value == "induction", key=new_key(),
    )


def _render_panel(patient_id: int, *, message: str | None = None, status: int = 200, level: str = "error",
                  resolve_values: dict | None = None, more: dict | None = None):
    """The patient panel; ``more`` goes to ``web.counter_more.build`` (vomiting, voids,
    replacement, take-home, unit-dose medicines)."""
    counter_row = chosen_counter()
    panel = counter_use_cases.patient_panel(db(), context.actor(), context.rule_set(), patient_id,
                                            counter_id=counter_row.id if counter_row else None, now=context.now())
    return render_template(
        "counter/_panel.html", view=panel_view(panel), counter=counter_row, message=message, level=level,
        checklist=CHECKLIST, phase_labels=PHASE_LABELS, outcome_labels=OUTCOME_LABELS, state_labels=STATE_LABELS,
        slot_labels=SLOT_LABELS, failure_labels=FAILURE_LABELS, state_step=STATE_STEP, in_flight=IN_FLIGHT,
        resolve_values=resolve_values or {}, more=counter_more.build(panel, **(more or {})),
    ), status


def _render_message(message: str, status: int, *, matches=None, query: str = ""):
    return render_template("counter/_message.html", message=message, matches=matches or [], query=query), status


def _out(result: tuple, headers: dict | None = None):
    """Answer a fragment to htmx; without htmx (no script), the whole counter page around it."""
    html, status = result
    if is_htmx():
        return html, status, headers or {}
    html = Markup(html)  # rendered by our own templates, escaped there
    counter_row = chosen_counter() if signed_in_user() else None
    if counter_row is None:
        return _choose_page(message=None, status=status, fragment=html)
    pump = counter_use_cases.pump_readiness(db(), counter_row, context.now(), context.today())
    return _page("counter/index.html", counter=counter_row, pump=pump, today=context.today(), panel_html=html,
                 is_nurse=context.actor().has_role(Role.NURSE)), status


def _page(template: str, **values):
    return render_template(template, use_htmx=True,
                           idle_seconds=current_app.config["MMT_SETTINGS"].session_idle_minutes * 60, **values)


def failure_text(code: str | None) -> str:
    """Why a dose failed, in the user's language (the code itself when it has no text)."""
    if not code:
        return ""
    if code in FAILURE_LABELS:
        return str(FAILURE_LABELS[code])
    return message_for(code) if code in MESSAGES else code


@bp.context_processor
def _helpers():
    return {"msg": message_for, "failure_text": failure_text}


# ---------------------------------------------------------------------------------------------
# Errors: a message in the panel for htmx, the error page otherwise


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError):
    db().rollback()
    code = _code(exc)
    message = message_for(code, exc.code if exc.code in MESSAGES else "DOMAIN_ERROR")
    return _out(_render_message(message, _status(exc)))


@bp.errorhandler(CSRFError)
def _csrf_error(_exc: CSRFError):
    return _out(_render_message(message_for("CSRF_FAILED"), 400))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    status = exc.code or 500
    code = {403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, "BAD_REQUEST")
    if status >= 500:
        return error_response(status, "SERVER_ERROR")
    return _out(_render_message(message_for(code), status))


# ---------------------------------------------------------------------------------------------
# Pages


@bp.get("")
@role_required(*STAFF)
def index():
    """The counter screen; the counter choice first when none is chosen for this session."""
    actor = context.actor()
    counter_row = chosen_counter()
    if counter_row is None:
        return _choose_page()
    pump = counter_use_cases.pump_readiness(db(), counter_row, context.now(), context.today())
    patient_id = request.args.get("patient", type=int)
    panel_html = Markup(_render_panel(patient_id)[0]) if patient_id else None
    return _page("counter/index.html", counter=counter_row, pump=pump, today=context.today(), panel_html=panel_html,
                 is_nurse=actor.has_role(Role.NURSE))


def _choose_page(message: str | None = None, status: int = 200, fragment=None):
    actor = context.actor()
    require_role(actor, *STAFF)
    now, today = context.now(), context.today()
    rows = db().scalars(select(Counter).where(Counter.clinic_id == actor.clinic_id, Counter.active.is_(True))
                        .order_by(Counter.code))
    pumps = [counter_use_cases.pump_readiness(db(), row, now, today) for row in rows]
    return _page("counter/choose.html", pumps=pumps, message=message, current=session.get(SESSION_KEY),
                 fragment=fragment), status


@bp.get("/choose")
@role_required(*STAFF)
def choose():
    return _choose_page()


@bp.post("/choose")
@role_required(*STAFF)
def set_counter():
    """Remember the counter for this session (until sign-out)."""
    actor = context.actor()
    counter_id = request.form.get("counter_id", type=int)
    found = db().get(Counter, counter_id) if counter_id else None
    if found is None or found.clinic_id != actor.clinic_id or not found.active:
        return _choose_page(message_for("COUNTER_NOT_FOUND"), 422)
    session[SESSION_KEY] = found.id
    return redirect(url_for("counter.index"))


@bp.post("/scan")
@role_required(*STAFF)
def scan():
    """A scanned card (keyboard wedge: the value and Enter), a take-home label, or a typed name
    or patient code. Answers the patient panel, a list to choose from, or a message."""
    actor = context.actor()
    raw = (request.form.get("scan") or "")[:512]
    text = raw.strip()
    if not text:
        return _out(_render_message(message_for("SCAN_EMPTY"), 422))
    open_patient = request.form.get("patient", type=int)
    if open_patient:
        routed = _scan_for_open_patient(text, open_patient)
        if routed is not None:
            return routed
    found = classify_for_counter(text)
    if found is not None:
        return _out(_render_panel(found))
    # Not one of our codes: a name or a patient code typed by hand.
    matches = search_patients(db(), actor, text)
    if len(matches) == 1:
        return _out(_render_panel(matches[0].id))
    if matches:
        return _out(_render_message("", 200, matches=matches, query=text))
    return _out(_render_message(message_for("SEARCH_NO_MATCH"), 404, query=text))


def _scan_for_open_patient(text: str, patient_id: int):
    """While a patient's panel is open, a medicine pack goes to that patient's unit-dose flow and
    the label of one of their take-home containers to its return; None for anything else."""
    try:
        scanned = classify(text)
    except ValidationFailed:
        return None  # the ordinary path answers the same rejection, or searches the text
    if scanned.kind is ScanKind.MEDICINE_PACK:
        return counter_more.pack_scan_for_patient(get_patient(db(), context.actor(), patient_id).id, scanned)
    if scanned.kind is ScanKind.CONTAINER_LABEL and scanned.label_type is LabelType.TAKE_HOME:
        from dispensing.counter.records import dose_id_from_label

        dose = db().get(Dose, dose_id_from_label(scanned.value))
        if dose is not None and dose.patient_id == patient_id:
            get_patient(db(), context.actor(), patient_id)
            return counter_more.take_home_label_scanned(patient_id, dose)
    return None


def classify_for_counter(text: str) -> int | None:
    """The patient id a scan names, or None when ``text`` is no scan of ours (then it is searched
    as a name or code). Raises ValidationFailed(SCAN_…) for a malformed or wrong scan and
    NotFound(CARD_UNKNOWN) for a card of nobody here."""
    try:
        scanned = classify(text)
    except ValidationFailed as exc:
        # A code that arrived with a scanner's symbology prefix is a scan, never a name.
        if text.startswith("]") or _code(exc) != "SCAN_UNRECOGNISED":
            raise
        return None
    if scanned.kind is ScanKind.PATIENT_CARD:
        try:
            return counter_use_cases.find_by_card(db(), context.actor(), scanned.value).id
        except NotFound:
            if text.startswith("]"):
                raise
            return None  # typed by hand: maybe a patient code (HNDD-00001) that looks like a card
    if scanned.kind is ScanKind.CONTAINER_LABEL and scanned.label_type is LabelType.TAKE_HOME:
        from dispensing.counter.records import dose_id_from_label

        dose = db().get(Dose, dose_id_from_label(scanned.value))
        if dose is None:
            raise NotFound("dose", code="DOSE_NOT_FOUND")
        return get_patient(db(), context.actor(), dose.patient_id).id
    raise ValidationFailed("not a patient card", code="SCAN_NOT_A_PATIENT_CARD")


@bp.get("/patients/<int:patient_id>")
@role_required(*STAFF)
def panel(patient_id: int):
    if not is_htmx():
        return redirect(url_for("counter.index", patient=patient_id))
    return _out(_render_panel(patient_id))


@bp.post("/patients/<int:patient_id>/checklist")
@role_required(*STAFF)
def checklist(patient_id: int):
    """Record the pre-dose checklist: every question answered 'no' (0) or 'yes' (1)."""
    actor, rule_set = context.actor(), context.rule_set()
    answers: dict[str, object] = {}
    for name, _question in CHECKLIST:
        value = request.form.get(name)
        if value not in ("0", "1"):
            return _out(_render_panel(patient_id, message=message_for("CHECKLIST_INCOMPLETE"), status=422))
        answers[name] = value == "1"
    cows_text = (request.form.get("cows") or "").strip()
    if cows_text:
        if not cows_text.isascii() or not cows_text.isdigit() or len(cows_text) > 2:
            return _out(_render_panel(patient_id, message=message_for("COWS_INVALID"), status=422))
        answers["cows"] = int(cows_text)
    note = (request.form.get("note") or "").strip()[:2000]
    answers["note"] = note or None
    try:
        counter_use_cases.record_assessment(writer(), actor, rule_set, patient_id,
                                            counter_use_cases.AssessmentAnswers(**answers))
    except DomainError as exc:
        db().rollback()
        return _out(_render_panel(patient_id, message=message_for(_code(exc)), status=_status(exc)))
    return _out(_render_panel(patient_id), {"HX-Trigger": "counter-queue-changed"})


@bp.post("/patients/<int:patient_id>/dispense")
@role_required(*STAFF)
def dispense(patient_id: int):
    """Authorise the part's dose at this session's counter with the form's idempotency key; the
    counter's device service then runs the pump. The same form posted again is the same dose."""
    actor, rule_set = context.actor(), context.rule_set()
    counter_row = require_counter()
    part_no = request.form.get("part_no", type=int)
    if part_no is None:
        return _out(_render_panel(patient_id, message=message_for("PART_REQUIRED"), status=422))
    acknowledgements = {code: (request.form.get(f"reason_{code}") or "").strip() or None
                        for code in request.form.getlist("ack")}
    try:
        result = counter_use_cases.authorize(
            writer(), actor, rule_set, patient_id=patient_id, counter_id=counter_row.id, part_no=part_no,
            idempotency_key=request.form.get("key", ""), acknowledgements=acknowledgements)
    except DomainError as exc:
        db().rollback()
        return _out(_render_panel(patient_id, message=message_for(_code(exc)), status=_status(exc)))
    html, _status_code = _render_panel(patient_id)
    return _out((html, 201 if result.created else 200), {"HX-Trigger": "counter-queue-changed"})


@bp.get("/doses/<int:dose_id>")
@role_required(*STAFF)
def dose_state(dose_id: int):
    """The dose's state while the pump works (polled); when it ends the panel is refreshed."""
    actor = context.actor()
    require_role(actor, *STAFF)
    dose = db().get(Dose, dose_id)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    get_patient(db(), actor, dose.patient_id)
    headers = {}
    if dose.state not in IN_FLIGHT:
        headers["HX-Trigger"] = "counter-dose-finished, counter-queue-changed"
    return render_template("counter/_dose.html", dose=dose, state_labels=STATE_LABELS, state_step=STATE_STEP,
                           in_flight=IN_FLIGHT, failure_labels=FAILURE_LABELS), 200, headers


@bp.post("/doses/<int:dose_id>/cancel")
@role_required(*STAFF)
def cancel(dose_id: int):
    actor = context.actor()
    dose = db().get(Dose, dose_id)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    patient_id = get_patient(db(), actor, dose.patient_id).id
    try:
        counter_use_cases.cancel_request(writer(), actor, dose_id, None)
    except DomainError as exc:
        db().rollback()
        return _out(_render_panel(patient_id, message=message_for(_code(exc)), status=_status(exc)))
    return _out(_render_panel(patient_id), {"HX-Trigger": "counter-queue-changed"})


@bp.post("/doses/<int:dose_id>/complete")
@role_required(*STAFF)
def complete(dose_id: int):
    """Give the rest of a partial dose as a dose linked to it (same idempotency rule)."""
    actor, rule_set = context.actor(), context.rule_set()
    counter_row = require_counter()
    dose = db().get(Dose, dose_id)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    patient_id = get_patient(db(), actor, dose.patient_id).id
    try:
        result = counter_use_cases.complete_partial(writer(), actor, rule_set, dose_id=dose_id,
                                                    counter_id=counter_row.id,
                                                    idempotency_key=request.form.get("key", ""))
    except DomainError as exc:
        db().rollback()
        return _out(_render_panel(patient_id, message=message_for(_code(exc)), status=_status(exc)))
    html, _status_code = _render_panel(patient_id)
    return _out((html, 201 if result.created else 200), {"HX-Trigger": "counter-queue-changed"})


@bp.post("/doses/<int:dose_id>/resolve")
@role_required(*STAFF)
def resolve(dose_id: int):
    """Record what happened to a dose whose outcome is unknown: given, partly given (ml) or not
    given, signed by the nurse's password and a witness's username and password."""
    actor = context.actor()
    dose = db().get(Dose, dose_id)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    patient_id = get_patient(db(), actor, dose.patient_id).id
    form = request.form
    kept = {"outcome": form.get("outcome", ""), "delivered_ml": form.get("delivered_ml", ""),
            "witness_username": form.get("witness_username", ""), "note": form.get("note", "")}
    try:
        outcome = form.get("outcome", "")
        if outcome not in counter_use_cases.Resolution.ALL:
            raise ValidationFailed("outcome", code="RESOLUTION_INVALID")
        delivered = _decimal_ml(form.get("delivered_ml"))
        if outcome == counter_use_cases.Resolution.PARTIAL and delivered is None:
            raise ValidationFailed("ml", code="RESOLUTION_ML_INVALID")
        if outcome == counter_use_cases.Resolution.NOT_GIVEN:
            delivered = None
        witness_name = (form.get("witness_username") or "").strip()[:64]
        witness = Cosigner(witness_name, form.get("witness_password") or "") if witness_name else None
        counter_use_cases.resolve_unknown(writer(), actor, context.rulebook().for_clinic, dose_id=dose_id,
                                          outcome=outcome, password=form.get("password") or "", witness=witness,
                                          delivered_ml=delivered, note=(form.get("note") or "").strip()[:2000] or None)
    except DomainError as exc:
        db().rollback()
        return _out(_render_panel(patient_id, message=message_for(_code(exc)), status=_status(exc),
                                  resolve_values=kept))
    return _out(_render_panel(patient_id), {"HX-Trigger": "counter-queue-changed"})


@bp.get("/queue")
@role_required(*STAFF)
def queue():
    """Today's queue at this counter: due now, later today, being dispensed, blocked, dosed."""
    counter_row = require_counter()
    found = counter_use_cases.worklist(db(), context.actor(), context.rule_set(), counter_id=counter_row.id,
                                       now=context.now())
    now_local = context.now().astimezone(_zone()).strftime("%H:%M")
    groups: dict[str, list] = {"due": [], "later": [], "attention": [], "blocked": [], "dosed": [],
                               "medicines": []}
    for row in found.rows:
        if row.what != "methadone":
            # Unit-dose medicines: given at the counter from a pack scan, listed apart.
            groups["dosed" if row.status == SlotStatus.DOSED else "medicines"].append(row)
            continue
        if row.status in (SlotStatus.TO_COME, SlotStatus.NEEDS_ASSESSMENT):
            groups["later" if row.not_before and row.not_before > now_local else "due"].append(row)
        elif row.status == SlotStatus.BLOCKED:
            groups["blocked"].append(row)
        elif row.status == SlotStatus.DOSED:
            groups["dosed"].append(row)
        else:
            groups["attention"].append(row)
    return render_template("counter/_queue.html", groups=groups, slot_labels=SLOT_LABELS,
                           reason_labels=QUEUE_REASON_LABELS, day=found.day)


def _zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo(context.clinic().timezone)


# The screen's sections around today's dose add their routes to ``bp`` (imported last: they use
# the helpers above).
from web import counter_more  # noqa: E402
