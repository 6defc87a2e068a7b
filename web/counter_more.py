"""The counter screen around today's dose: vomiting after a dose, voiding a mistaken record, the
physician's replacement dose, take-home containers (prepared through the pump, labelled, returned
empty) and unit-dose medicines identified by a GS1 pack scan.

Every write is a ``dispensing.counter`` use case (roles are checked there); this module parses the
forms, reads what the panel shows besides the service's Panel, and renders. The routes live on the
counter blueprint of ``web.counter_screen``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from flask import Response, render_template, request
from flask_babel import lazy_gettext
from markupsafe import Markup
from sqlalchemy import select

from devices.scan import LabelType, ScanKind
from dispensing import counter as counter_use_cases
from dispensing import rules
from dispensing.counter_rules import counter_evaluation
from dispensing.errors import DomainError, NotFound, ValidationFailed
from dispensing.models import (
    Dose,
    DoseKind,
    DoseState,
    DoseVoid,
    Lot,
    MedicationOrder,
    Order,
    Product,
    TakeHomeReturn,
    User,
    VomitEvent,
)
from dispensing.patients import get_patient
from dispensing.stock.signatures import Cosigner
from web import context
from web.api.counter import classify
from web.auth import role_required
from web.counter_screen import (
    STAFF,
    _code,
    _out,
    _render_panel,
    _status,
    bp,
    new_key,
    require_counter,
)
from web.database import db, writer
from web.errors import message_for, register_messages

register_messages({
    "VOMIT_MINUTES_INVALID": lazy_gettext("Enter how many minutes after the dose the patient vomited (0 to 1440)."),
    "UNIT_DOSE_NOT_OBSERVED": lazy_gettext("Tick that you watched the patient take the medicine."),
    "UNIT_COUNT_INVALID": lazy_gettext("Enter the number of units you counted."),
    "PACK_SCAN_INVALID": lazy_gettext("The pack details are missing or damaged: scan the pack again."),
    "MEDICATION_NONE_DUE": lazy_gettext("No medicine is ordered for this patient today: this pack cannot be given."),
    "MEDICATION_ALL_GIVEN": lazy_gettext("Every administration of this medicine has been given today."),
    "TAKE_HOME_FIRST_DAY_INVALID": lazy_gettext("Enter the first day the take-home doses cover."),
    "TAKE_HOME_RETURN_CHOOSE": lazy_gettext("Scan the returned container's label or choose the container."),
    "TAKE_HOME_RETURN_EMPTY_CHOOSE": lazy_gettext("Say whether the container came back empty."),
    "TAKE_HOME_LABEL_UNPRINTABLE": lazy_gettext("This label cannot be printed safely; call the pharmacist."),
    "LABEL_CHOOSE": lazy_gettext("Choose the labels to print."),
})

MAX_VOMIT_MINUTES = 24 * 60
# Take-home containers of earlier days still expected back are shown for this long.
RETURNS_WINDOW_DAYS = 62


# ---------------------------------------------------------------------------------------------
# What the panel shows besides the service's Panel


@dataclass
class TakeHomeView:
    max_days: int
    first_day: date
    decisions: tuple[rules.Decision, ...]  # the take-home rules for the default request
    blocked: bool
    prepared: list[Dose]  # take-home doses for today onwards (in flight or filled)
    outstanding: list[Dose]  # filled containers not returned yet
    returned: dict[int, TakeHomeReturn]


@dataclass
class UnitDoseForm:
    """A scanned pack waiting for the count and the observation."""

    medication_order_id: int
    administration_no: int
    product: Product
    units_ordered: Decimal
    gtin: str
    lot: str
    expiry: date
    serial: str | None
    units: str = ""


@dataclass
class MoreView:
    vomits: dict[int, list[VomitEvent]] = field(default_factory=dict)
    voids: dict[int, DoseVoid] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    products: dict[int, Product] = field(default_factory=dict)
    lots: dict[int, Lot] = field(default_factory=dict)
    can_vomit: frozenset[int] = frozenset()
    can_void: frozenset[int] = frozenset()
    can_order_replacement: frozenset[int] = frozenset()
    replacements: tuple[dict, ...] = ()
    unit_due: frozenset[tuple[int, int]] = frozenset()
    take_home: TakeHomeView | None = None
    unit_dose: UnitDoseForm | None = None
    refusal: tuple[rules.Decision, ...] = ()
    return_dose_id: int | None = None
    kept: dict = field(default_factory=dict)
    key: str = ""


def build(panel: counter_use_cases.Panel, *, unit_dose: UnitDoseForm | None = None,
          refusal: tuple[rules.Decision, ...] = (), return_dose_id: int | None = None,
          kept: dict | None = None) -> MoreView:
    """Read what the panel shows around today's dose (a few queries, only for this patient)."""
    session = db()
    actions = panel.actions
    dose_ids = [d.id for d in panel.doses]
    vomits: dict[int, list[VomitEvent]] = {}
    voids: dict[int, DoseVoid] = {}
    if dose_ids:
        for vomit in session.scalars(select(VomitEvent).where(VomitEvent.dose_id.in_(dose_ids))
                                     .order_by(VomitEvent.observed_at)):
            vomits.setdefault(vomit.dose_id, []).append(vomit)
        voids = {v.dose_id: v for v in session.scalars(select(DoseVoid).where(DoseVoid.dose_id.in_(dose_ids)))}
    take_home = _take_home(panel) if panel.take_home_possible else None
    shown = list(panel.doses) + (take_home.prepared + take_home.outstanding if take_home else [])
    user_ids = {v.voided_by_id for v in voids.values()} | {v.witness_id for v in voids.values()} \
        | {v.witness_id for found in vomits.values() for v in found if v.witness_id} \
        | {v.recorded_by_id for found in vomits.values() for v in found}
    names = {u.id: u.full_name for u in session.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    product_ids = {d.product_id for d in shown if d.product_id} | {m.product.id for m in panel.medications}
    lot_ids = {d.lot_id for d in shown if d.lot_id}
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))} \
        if product_ids else {}
    lots = {lot.id: lot for lot in session.scalars(select(Lot).where(Lot.id.in_(lot_ids)))} if lot_ids else {}
    replacement_ok = {a["order_id"] for a in actions if a["action"] == "authorize_replacement"}
    replacements = tuple({"order": order, "ml": _ml_at_pump(panel, order.daily_total_mg),
                          "can_dispense": order.id in replacement_ok} for order in panel.replacements)
    return MoreView(
        vomits=vomits, voids=voids, names=names, products=products, lots=lots,
        can_vomit=frozenset(a["dose_id"] for a in actions if a["action"] == "record_vomit"),
        can_void=frozenset(a["dose_id"] for a in actions if a["action"] == "void"),
        can_order_replacement=frozenset(a["dose_id"] for a in actions if a["action"] == "order_replacement"
                                        and (a["dose_id"] in vomits or a["dose_id"] in voids)),
        replacements=replacements,
        unit_due=frozenset((a["medication_order_id"], a["administration_no"]) for a in actions
                           if a["action"] == "unit_dose"),
        take_home=take_home, unit_dose=unit_dose, refusal=refusal, return_dose_id=return_dose_id,
        kept=kept or {}, key=new_key(),
    )


def _ml_at_pump(panel: counter_use_cases.Panel, mg: Decimal) -> Decimal | None:
    pump = panel.pump
    if pump is None or pump.lot is None or not pump.concentration_mg_per_ml:
        return None
    return (mg / pump.concentration_mg_per_ml).quantize(Decimal("0.01"))


def _take_home(panel: counter_use_cases.Panel) -> TakeHomeView:
    session = db()
    plan = panel.order.take_home_plan if panel.order is not None else None
    max_days = 31
    if isinstance(plan, dict) and plan.get("max_days") is not None:
        max_days = max(1, min(31, int(plan["max_days"])))
    first_day = panel.day + timedelta(days=1)
    # The take-home rules for the default request (from tomorrow, as many days as the order allows),
    # so the nurse sees before preparing whether the rules allow it and why not.
    evaluation, _order = counter_evaluation(
        session, context.rule_set(), panel.patient, panel.day, context.now(),
        lot=panel.pump.lot if panel.pump is not None else None,
        take_home=rules.TakeHomeRequest(first_day=first_day, days=max_days))
    decisions = tuple(d for d in evaluation.take_home if d.outcome is not rules.Outcome.ALLOW)
    doses = list(session.scalars(
        select(Dose).where(Dose.patient_id == panel.patient.id, Dose.kind == DoseKind.TAKE_HOME,
                           Dose.business_date >= panel.day - timedelta(days=RETURNS_WINDOW_DAYS))
        .order_by(Dose.business_date, Dose.part_no, Dose.id)))
    returned = {r.dose_id: r for r in session.scalars(
        select(TakeHomeReturn).where(TakeHomeReturn.dose_id.in_([d.id for d in doses])))} if doses else {}
    prepared = [d for d in doses if d.business_date >= panel.day and d.state is not DoseState.FAILED
                or d.state in (DoseState.REQUESTED, DoseState.PROGRAMMED, DoseState.RUNNING)]
    outstanding = [d for d in doses if d.id not in returned
                   and d.state in (DoseState.COMPLETED, DoseState.PARTIAL)]
    return TakeHomeView(max_days=max_days, first_day=first_day, decisions=decisions,
                        blocked=rules.is_blocked(list(evaluation.take_home)), prepared=prepared,
                        outstanding=outstanding, returned=returned)


def panel_response(patient_id: int, *, message: str | None = None, status: int = 200, level: str = "error",
                   headers: dict | None = None, **more):
    """The patient panel with the extra sections, through ``_out`` (fragment or whole page)."""
    return _out(_render_panel(patient_id, message=message, status=status, level=level, more=more), headers)


def _refused(patient_id: int, exc: DomainError, **more):
    db().rollback()
    decisions = tuple(getattr(exc, "decisions", None) or ())
    return panel_response(patient_id, message=message_for(_code(exc)), status=_status(exc), refusal=decisions,
                          **more)


def _witness(form) -> Cosigner | None:
    name = (form.get("witness_username") or "").strip()[:64]
    return Cosigner(name, form.get("witness_password") or "") if name else None


def _dose_of_patient(dose_id: int) -> tuple[Dose, int]:
    dose = db().get(Dose, dose_id)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    return dose, get_patient(db(), context.actor(), dose.patient_id).id


@bp.context_processor
def _more_helpers():
    return {"label_code": counter_use_cases.take_home_label_code}


# ---------------------------------------------------------------------------------------------
# Vomiting, voids, replacement


@bp.post("/doses/<int:dose_id>/vomit")
@role_required(*STAFF)
def vomit(dose_id: int):
    """Record vomiting ``minutes`` after the dose ended; witnessed by the nurse (the box ticked) or
    by a named witness with their password. Says whether a physician may order a replacement."""
    actor = context.actor()
    dose, patient_id = _dose_of_patient(dose_id)
    form = request.form
    kept = {"form": "vomit", "dose_id": dose_id, "minutes": form.get("minutes", "")[:8],
            "witness_username": form.get("witness_username", "")[:64], "note": form.get("note", "")[:2000]}
    minutes_text = (form.get("minutes") or "").strip()
    if not re.fullmatch(r"[0-9]{1,4}", minutes_text) or int(minutes_text) > MAX_VOMIT_MINUTES:
        return panel_response(patient_id, message=message_for("VOMIT_MINUTES_INVALID"), status=422, kept=kept)
    if dose.finished_at is None:
        return panel_response(patient_id, message=message_for("DOSE_NOT_TAKEN"), status=409)
    try:
        _vomit, evaluation = counter_use_cases.record_vomit(
            writer(), actor, context.rule_set(), dose_id=dose_id,
            observed_at=dose.finished_at + timedelta(minutes=int(minutes_text)), witness=_witness(form),
            seen_by_recorder=form.get("seen_by_me") == "1", note=(form.get("note") or "").strip()[:2000] or None,
            now=context.now())
    except DomainError as exc:
        return _refused(patient_id, exc, kept=kept)
    if evaluation.max_mg:
        text = lazy_gettext("Vomiting recorded. A physician may order a replacement of %(low)s–%(high)s mg; "
                            "give nothing until the order appears here.", low=_n(evaluation.min_mg),
                            high=_n(evaluation.max_mg))
    else:
        text = lazy_gettext("Vomiting recorded. No replacement dose may be given (see the rule below).")
    return panel_response(patient_id, message=str(text), level="info", refusal=tuple(evaluation.decisions),
                          headers={"HX-Trigger": "counter-queue-changed"})


def _n(value: Decimal | None) -> str:
    from web.formatting import number

    return number(value)


@bp.post("/doses/<int:dose_id>/void")
@role_required(*STAFF)
def void(dose_id: int):
    """Void a mistaken dose record: a reason, the nurse's password and a witness's. The original
    record stays; the void is a new record shown next to it."""
    actor = context.actor()
    _dose, patient_id = _dose_of_patient(dose_id)
    form = request.form
    kept = {"form": "void", "dose_id": dose_id, "reason": form.get("reason", "")[:2000],
            "witness_username": form.get("witness_username", "")[:64]}
    try:
        counter_use_cases.void_dose(writer(), actor, dose_id=dose_id, reason=(form.get("reason") or "")[:2000],
                                    password=form.get("password") or "", witness=_witness(form), now=context.now())
    except DomainError as exc:
        return _refused(patient_id, exc, kept=kept)
    return panel_response(patient_id, message=str(lazy_gettext(
        "The record is voided. It stays in the history, marked void; giving the dose again needs a physician's "
        "replacement order.")), level="info", headers={"HX-Trigger": "counter-queue-changed"})


@bp.post("/doses/<int:dose_id>/replacement-order")
@role_required(*STAFF)
def replacement_order(dose_id: int):
    """Physician: sign a replacement order for a dose after recorded vomiting (within the rules)
    or for a voided record; the nurse then dispenses it from this panel."""
    actor = context.actor()
    _dose, patient_id = _dose_of_patient(dose_id)
    form = request.form
    kept = {"form": "replacement_order", "dose_id": dose_id, "mg": form.get("mg", "")[:8],
            "reason": form.get("reason", "")[:2000]}
    mg = _decimal(form.get("mg"))
    if mg is None:
        return panel_response(patient_id, message=message_for("REPLACEMENT_DOSE_INVALID"), status=422, kept=kept)
    try:
        order = counter_use_cases.order_replacement(
            writer(), actor, context.rule_set(), dose_id=dose_id, mg=mg, password=form.get("password") or "",
            reason=(form.get("reason") or "").strip()[:2000] or None, acknowledgements=_acks(), now=context.now())
    except DomainError as exc:
        return _refused(patient_id, exc, kept=kept)
    return panel_response(patient_id, level="info", headers={"HX-Trigger": "counter-queue-changed"},
                          message=str(lazy_gettext("Replacement order signed: %(mg)s mg. The nurse dispenses it "
                                                   "from this panel.", mg=_n(order.daily_total_mg))))


@bp.post("/replacements/<int:order_id>/dispense")
@role_required(*STAFF)
def dispense_replacement(order_id: int):
    """Authorise the replacement dose a physician ordered, through the same pump path."""
    actor = context.actor()
    counter_row = require_counter()
    order = db().get(Order, order_id)
    if order is None:
        raise NotFound("order", code="ORDER_NOT_FOUND")
    patient_id = get_patient(db(), actor, order.patient_id).id
    try:
        result = counter_use_cases.authorize_replacement(
            writer(), actor, context.rule_set(), order_id=order_id, counter_id=counter_row.id,
            idempotency_key=request.form.get("key", ""), now=context.now())
    except DomainError as exc:
        return _refused(patient_id, exc)
    return panel_response(patient_id, status=201 if result.created else 200,
                          headers={"HX-Trigger": "counter-queue-changed"})


# ---------------------------------------------------------------------------------------------
# Take-home


def _acks() -> dict[str, str | None]:
    return {code: (request.form.get(f"reason_{code}") or "").strip()[:2000] or None
            for code in request.form.getlist("ack")}


@bp.post("/patients/<int:patient_id>/take-home")
@role_required(*STAFF)
def take_home(patient_id: int):
    """Authorise the take-home doses (one container per day and part); the pump fills them one by
    one. Refused with the reason when the clinic, the order or the rules do not allow it."""
    actor = context.actor()
    counter_row = require_counter()
    kept = {"form": "take_home", "first_day": request.form.get("first_day", "")[:10],
            "days": request.form.get("days", "")[:3]}
    try:
        first_day = date.fromisoformat((request.form.get("first_day") or "").strip())
    except ValueError:
        return panel_response(patient_id, message=message_for("TAKE_HOME_FIRST_DAY_INVALID"), status=422, kept=kept)
    days_text = (request.form.get("days") or "").strip()
    if not re.fullmatch(r"[0-9]{1,2}", days_text):
        return panel_response(patient_id, message=message_for("TAKE_HOME_DAYS_INVALID"), status=422, kept=kept)
    try:
        result = counter_use_cases.prepare_take_home(
            writer(), actor, context.rule_set(), patient_id=patient_id, counter_id=counter_row.id,
            first_day=first_day, days=int(days_text), idempotency_key=request.form.get("key", ""),
            acknowledgements=_acks(), now=context.now())
    except DomainError as exc:
        return _refused(patient_id, exc, kept=kept)
    return panel_response(patient_id, status=201 if result.created else 200,
                          message=str(lazy_gettext("%(count)s take-home containers are being filled by the pump. "
                                                   "Print the labels when they are done.",
                                                   count=len(result.doses))),
                          level="info", headers={"HX-Trigger": "counter-queue-changed"})


def _label(dose_id: int):
    """(ContainerLabel, label data) of a filled take-home container. Raises NotFound, Conflict,
    PermissionDenied (service), ValidationFailed(LABEL_INVALID)."""
    from devices.labels import ContainerLabel, LabelDataError

    data = counter_use_cases.take_home_label(db(), context.actor(), dose_id)
    label = ContainerLabel(**data.__dict__)
    try:
        label.validate()
    except LabelDataError as exc:
        raise ValidationFailed("label", code="TAKE_HOME_LABEL_UNPRINTABLE") from exc
    return label, data


@bp.get("/labels")
@role_required(*STAFF)
def labels():
    """A printable page of take-home labels (``?dose=1&dose=2``): each label's drawing (SVG, with
    its Code 128 barcode) and its details; the PDF of each for the label printer."""
    from devices.labels import render_svg

    ids = [int(v) for v in request.args.getlist("dose") if v.isdigit()][:62]
    if not ids:
        raise ValidationFailed("no labels", code="LABEL_CHOOSE")
    items = []
    for dose_id in ids:
        label, data = _label(dose_id)
        svg = render_svg(label)
        # Inline in the page: the drawing without its XML declaration (made by devices.labels, escaped there).
        items.append({"dose_id": dose_id, "label": label, "data": data, "svg": Markup(svg[svg.index("<svg"):])})
    return render_template("counter/labels.html", items=items, use_htmx=False)


@bp.get("/doses/<int:dose_id>/label.<any(pdf, svg):kind>")
@role_required(*STAFF)
def label_file(dose_id: int, kind: str):
    """One take-home label as PDF (for the label printer) or SVG."""
    from devices.labels import render_pdf, render_svg

    label, data = _label(dose_id)
    if kind == "pdf":
        return Response(render_pdf(label), mimetype="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{data.label_id}.pdf"'})
    return Response(render_svg(label), mimetype="image/svg+xml")


def _decimal(text: str | None) -> Decimal | None:
    text = (text or "").strip().replace(" ", "").replace(",", ".")
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@bp.post("/take-home/returns")
@role_required(*STAFF)
def take_home_return():
    """A take-home container brought back: its label scanned (or chosen from the list), empty or
    with what was left (witnessed)."""
    from dispensing.counter.records import dose_id_from_label

    actor = context.actor()
    form = request.form
    patient_id = form.get("patient_id", type=int)
    label_text = (form.get("label") or "").strip()[:128]
    dose_id = form.get("dose_id", type=int)
    if label_text:
        try:
            scanned = classify(label_text)
        except ValidationFailed:
            scanned = None
        if scanned is None or scanned.kind is not ScanKind.CONTAINER_LABEL \
                or scanned.label_type is not LabelType.TAKE_HOME:
            if patient_id is None:
                raise ValidationFailed("not a take-home label", code="TAKE_HOME_LABEL_INVALID")
            return panel_response(patient_id, message=message_for("TAKE_HOME_LABEL_INVALID"), status=422)
        dose_id = dose_id_from_label(scanned.value)
    if dose_id is None:
        if patient_id is None:
            raise ValidationFailed("choose", code="TAKE_HOME_RETURN_CHOOSE")
        return panel_response(patient_id, message=message_for("TAKE_HOME_RETURN_CHOOSE"), status=422)
    _dose, patient_id = _dose_of_patient(dose_id)
    empty = form.get("empty")
    kept = {"form": "return", "dose_id": dose_id, "empty": empty, "remaining_ml": form.get("remaining_ml", "")[:16],
            "witness_username": form.get("witness_username", "")[:64]}
    if empty not in ("1", "0"):
        return panel_response(patient_id, message=message_for("TAKE_HOME_RETURN_EMPTY_CHOOSE"), status=422,
                              kept=kept, return_dose_id=dose_id)
    remaining = None if empty == "1" else _decimal(form.get("remaining_ml"))
    if empty == "0" and remaining is None:
        return panel_response(patient_id, message=message_for("TAKE_HOME_REMAINING_INVALID"), status=422,
                              kept=kept, return_dose_id=dose_id)
    try:
        counter_use_cases.record_take_home_return(
            writer(), actor, dose_id=dose_id, empty=empty == "1", remaining_ml=remaining,
            witness=_witness(form) if empty == "0" else None,
            note=(form.get("note") or "").strip()[:2000] or None, now=context.now())
    except DomainError as exc:
        return _refused(patient_id, exc, kept=kept, return_dose_id=dose_id)
    return panel_response(patient_id, message=str(lazy_gettext("The returned container is recorded.")),
                          level="info")


def take_home_label_scanned(patient_id: int, dose: Dose):
    """A take-home label scanned while its patient is open: the return form, that container chosen."""
    return panel_response(patient_id, return_dose_id=dose.id, level="info", message=str(lazy_gettext(
        "Take-home container scanned: record its return below.")))


# ---------------------------------------------------------------------------------------------
# Unit-dose medicines


GTIN_RE = re.compile(r"^\d{14}$")


def pack_scan_for_patient(patient_id: int, scan) -> tuple:
    """A GS1 pack scanned while the patient's panel is open: the count-and-observe form for the
    ordered medicine it is, or a message (wrong medicine, expired, nothing due). Nothing is
    written here; ``unit_dose`` below gives it."""
    actor = context.actor()
    counter_row = require_counter()
    panel = counter_use_cases.patient_panel(db(), actor, context.rule_set(), patient_id,
                                            counter_id=counter_row.id, now=context.now())
    if not panel.medications:
        return panel_response(patient_id, message=message_for("MEDICATION_NONE_DUE"), status=422)
    products = {m.product.id: m for m in panel.medications}
    matching = [m for m in panel.medications if m.product.gtin == scan.gtin]
    if not matching:
        lot_products = set(db().scalars(select(Lot.product_id).where(Lot.product_id.in_(list(products)),
                                                                     Lot.gtin == scan.gtin)))
        matching = [m for m in panel.medications if m.product.id in lot_products]
    if not matching:
        return panel_response(patient_id, message=message_for("PACK_WRONG_PRODUCT"), status=422)
    # Shown at once so the nurse does not count tablets of an expired pack; the service refuses it
    # again when the administration is recorded.
    if scan.expiry < panel.day:
        return panel_response(patient_id, message=message_for("LOT_EXPIRED"), status=422)
    for due in matching:
        for number, given in due.administrations:
            if given is None:
                form = UnitDoseForm(
                    medication_order_id=due.order.id, administration_no=number, product=due.product,
                    units_ordered=due.order.units_per_administration, gtin=scan.gtin, lot=scan.lot,
                    expiry=scan.expiry, serial=scan.serial)
                return panel_response(patient_id, unit_dose=form, level="info", message=str(lazy_gettext(
                    "Pack of %(product)s scanned: count the units, watch the patient take them, then record.",
                    product=due.product.name)))
    return panel_response(patient_id, message=message_for("MEDICATION_ALL_GIVEN"), status=409)


def _posted_pack(form) -> counter_use_cases.PackScan:
    gtin = (form.get("gtin") or "").strip()
    lot = (form.get("lot") or "").strip()[:64]
    serial = (form.get("serial") or "").strip()[:64] or None
    try:
        expiry = date.fromisoformat((form.get("expiry") or "").strip())
    except ValueError as exc:
        raise ValidationFailed("expiry", code="PACK_SCAN_INVALID") from exc
    if not GTIN_RE.match(gtin) or not lot:
        raise ValidationFailed("pack", code="PACK_SCAN_INVALID")
    return counter_use_cases.PackScan(gtin=gtin, lot=lot, expiry=expiry, serial=serial)


@bp.post("/patients/<int:patient_id>/unit-dose")
@role_required(*STAFF)
def unit_dose(patient_id: int):
    """Give one administration of a unit-dose medicine from the scanned pack: the units counted,
    observed. Recorded and booked out of the counter shelf by the service, or refused."""
    actor = context.actor()
    counter_row = require_counter()
    form = request.form
    order_id = form.get("medication_order_id", type=int)
    number = form.get("administration_no", type=int)
    try:
        pack = _posted_pack(form)
    except ValidationFailed as exc:
        return panel_response(patient_id, message=message_for(_code(exc)), status=422)
    if order_id is None or number is None:
        return panel_response(patient_id, message=message_for("ADMINISTRATION_INVALID"), status=422)
    units_text = (form.get("units") or "").strip()[:12]
    retry = None
    ordered = db().get(MedicationOrder, order_id)
    if ordered is not None and ordered.patient_id == get_patient(db(), actor, patient_id).id:
        retry = UnitDoseForm(medication_order_id=order_id, administration_no=number,
                             product=db().get(Product, ordered.product_id),
                             units_ordered=ordered.units_per_administration, gtin=pack.gtin, lot=pack.lot,
                             expiry=pack.expiry, serial=pack.serial, units=units_text)
    units = _decimal(units_text)
    if units is None or units <= 0:
        return panel_response(patient_id, message=message_for("UNIT_COUNT_INVALID"), status=422, unit_dose=retry)
    if form.get("observed") != "1":
        return panel_response(patient_id, message=message_for("UNIT_DOSE_NOT_OBSERVED"), status=422,
                              unit_dose=retry)
    try:
        result = counter_use_cases.dispense_unit_dose(
            writer(), actor, context.rule_set(), patient_id=patient_id, medication_order_id=order_id,
            administration_no=number, counter_id=counter_row.id, scan=pack, units=units,
            idempotency_key=form.get("key", ""), now=context.now())
    except DomainError as exc:
        # A miscount can be corrected on the same form; a wrong or expired pack needs another pack.
        keep = retry if _code(exc) in ("UNITS_MISMATCH",) else None
        return _refused(patient_id, exc, unit_dose=keep)
    product = retry.product.name if retry else ""
    return panel_response(patient_id, status=201 if result.created else 200, level="info",
                          message=str(lazy_gettext("%(product)s given: %(units)s units, observed.", product=product,
                                                   units=_n(units))),
                          headers={"HX-Trigger": "counter-queue-changed"})

