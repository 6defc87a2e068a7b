"""Physician orders (y lệnh): draft, evaluate, acknowledge, sign, supersede, stop, suspend.

A signed order never changes. A change is a new order that supersedes the one in force; stopping
or suspending treatment is an order too. Every signature re-authenticates the physician, records
the rule-table version and the decisions shown, and is audited with the phase transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing import audit, rules
from dispensing.accounts import reauthenticate
from dispensing.clock import utcnow
from dispensing.db import begin_write
from dispensing.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from dispensing.history import order_in_force, patient_history, rules_order, signed_orders
from dispensing.models import (
    Order,
    OrderAcknowledgement,
    OrderKind,
    OrderPart,
    OrderStatus,
    Patient,
    PatientStatus,
    Phase,
    Role,
    User,
)
from dispensing.patients import get_patient
from dispensing.permissions import require_role

DOSE_STEP = Decimal("0.1")


class OrderBlocked(DomainError):
    """A rule BLOCKs the order; ``decisions`` says which and why."""

    code = "ORDER_BLOCKED"
    status = 422

    def __init__(self, decisions: list[rules.Decision]):
        super().__init__("order blocked", decisions=decisions)
        self.decisions = decisions


class AcknowledgementRequired(DomainError):
    """WARN decisions were not acknowledged (or a required written reason is missing)."""

    code = "ACKNOWLEDGEMENT_REQUIRED"
    status = 422

    def __init__(self, decisions: list[rules.Decision]):
        super().__init__("acknowledgement required", decisions=decisions)
        self.decisions = decisions


@dataclass(frozen=True)
class OrderDraft:
    """What a physician fills in. ``parts`` split the daily total (1–3 parts)."""

    phase: Phase
    parts: tuple[Decimal, ...]
    valid_from: date
    valid_until: date | None
    take_home_plan: dict | None = None
    reason: str | None = None
    lifts: tuple[dict, ...] = field(default_factory=tuple)


def decision_json(found: rules.Decision) -> dict:
    """Return a decision as stored on the order and sent by the API."""
    return {
        "outcome": found.outcome.value,
        "code": found.code.value,
        "table_version": found.table_version,
        "message_vi": found.message_vi,
        "message_en": found.message_en,
        "needs_reason": found.needs_reason,
        "lift_role": found.lift_role.value if found.lift_role else None,
        "subject": found.subject,
        "lifted": found.lifted_by is not None,
    }


def _parts(draft: OrderDraft) -> list[Decimal]:
    try:
        parts = [Decimal(str(p)) for p in draft.parts]
    except (InvalidOperation, ValueError) as exc:
        raise ValidationFailed("dose", code="ORDER_DOSE_INVALID") from exc
    if not 1 <= len(parts) <= 3:
        raise ValidationFailed("parts", code="ORDER_PARTS_INVALID")
    for mg in parts:
        if mg <= 0 or mg != mg.quantize(DOSE_STEP):
            raise ValidationFailed("dose", code="ORDER_DOSE_INVALID")
    if draft.valid_until is not None and draft.valid_until < draft.valid_from:
        raise ValidationFailed("window", code="ORDER_WINDOW_INVALID")
    return parts


def _lifts(draft: OrderDraft) -> list[dict] | None:
    found = []
    for lift in draft.lifts:
        try:
            code = rules.Reason(lift["code"]).value
        except (KeyError, ValueError) as exc:
            raise ValidationFailed("lift", code="ORDER_LIFT_INVALID") from exc
        found.append({"code": code, "subject": lift.get("subject")})
    return found or None


def _editable_draft(session: Session, actor: User, order_id: int) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        raise NotFound("order", code="ORDER_NOT_FOUND")
    get_patient(session, actor, order.patient_id)
    if order.status is not OrderStatus.DRAFT:
        raise Conflict("signed orders never change", code="ORDER_NOT_DRAFT")
    return order


def draft_order(session: Session, actor: User, patient_id: int, draft: OrderDraft) -> Order:
    """Create a draft dosing order and return it (committed). Physicians only."""
    require_role(actor, Role.PHYSICIAN)
    parts = _parts(draft)
    begin_write(session)
    patient = get_patient(session, actor, patient_id)
    if patient.status is not PatientStatus.ACTIVE:
        raise Conflict("patient not in treatment", code="PATIENT_NOT_ACTIVE")
    order = Order(
        clinic_id=patient.clinic_id, patient_id=patient.id, kind=OrderKind.DOSING, status=OrderStatus.DRAFT,
        phase=draft.phase, daily_total_mg=sum(parts, Decimal(0)), valid_from=draft.valid_from,
        valid_until=draft.valid_until, take_home_plan=draft.take_home_plan, reason=draft.reason,
        lifts=_lifts(draft), created_by_id=actor.id,
        parts=[OrderPart(part_no=n, dose_mg=mg) for n, mg in enumerate(parts, start=1)],
    )
    session.add(order)
    session.flush()
    audit.record(session, "order.drafted", actor_id=actor.id, clinic_id=order.clinic_id, entity=order,
                 data={"patient_id": patient.id, "phase": draft.phase, "daily_total_mg": order.daily_total_mg})
    session.commit()
    return order


def revise_draft(session: Session, actor: User, order_id: int, draft: OrderDraft) -> Order:
    """Change a draft (never a signed order); committed."""
    require_role(actor, Role.PHYSICIAN)
    parts = _parts(draft)
    begin_write(session)
    order = _editable_draft(session, actor, order_id)
    order.phase, order.valid_from, order.valid_until = draft.phase, draft.valid_from, draft.valid_until
    order.take_home_plan, order.reason, order.lifts = draft.take_home_plan, draft.reason, _lifts(draft)
    order.daily_total_mg = sum(parts, Decimal(0))
    order.parts.clear()
    session.flush()
    order.parts.extend(OrderPart(part_no=n, dose_mg=mg) for n, mg in enumerate(parts, start=1))
    order.acknowledgements.clear()
    audit.record(session, "order.revised", actor_id=actor.id, clinic_id=order.clinic_id, entity=order,
                 data={"phase": draft.phase, "daily_total_mg": order.daily_total_mg})
    session.commit()
    return order


def discard_draft(session: Session, actor: User, order_id: int) -> Order:
    """Abandon a draft; it stays on record as discarded."""
    require_role(actor, Role.PHYSICIAN)
    begin_write(session)
    order = _editable_draft(session, actor, order_id)
    order.status = OrderStatus.DISCARDED
    audit.record(session, "order.discarded", actor_id=actor.id, clinic_id=order.clinic_id, entity=order)
    session.commit()
    return order


def evaluate(session: Session, rule_set: rules.RuleSet, order: Order, today: date,
             *, cosigner: User | None = None, signer: User | None = None) -> list[rules.Decision]:
    """Return the rule decisions for ``order`` against the patient's signed history."""
    patient = session.get(Patient, order.patient_id)
    others = [o for o in signed_orders(session, patient.id) if o.id != order.id]
    proposal = rules_order(order)
    history = patient_history(session, patient, today, orders=others,
                              days=rules.order_dose_history_days(rule_set, proposal, today))
    if signer is not None or cosigner is not None:
        from dataclasses import replace

        proposal = replace(
            proposal,
            signed_by=str(signer.id) if signer else proposal.signed_by,
            cosigned_by=str(cosigner.id) if cosigner else proposal.cosigned_by,
        )
    return rules.evaluate_order(rule_set, proposal, history, today)


def evaluate_draft(session: Session, actor: User, rule_set: rules.RuleSet, patient_id: int, draft: OrderDraft,
                   today: date) -> list[rules.Decision]:
    """Return the decisions ``draft`` would get if it were saved and signed by ``actor`` today,
    without writing anything (the order form shows them live as values change). Physicians only.

    Raises PermissionDenied, NotFound, ValidationFailed (ORDER_DOSE_INVALID, ORDER_PARTS_INVALID,
    ORDER_WINDOW_INVALID).
    """
    require_role(actor, Role.PHYSICIAN)
    parts = _parts(draft)
    patient = get_patient(session, actor, patient_id)
    # A transient order: never added to the session, so nothing is flushed or persisted.
    proposal = Order(
        clinic_id=patient.clinic_id, patient_id=patient.id, kind=OrderKind.DOSING, status=OrderStatus.DRAFT,
        phase=draft.phase, daily_total_mg=sum(parts, Decimal(0)), valid_from=draft.valid_from,
        valid_until=draft.valid_until, created_by_id=actor.id,
        parts=[OrderPart(part_no=n, dose_mg=mg) for n, mg in enumerate(parts, start=1)],
    )
    return evaluate(session, rule_set, proposal, today, signer=actor)


def _check_acknowledgements(decisions: list[rules.Decision], acknowledgements: dict[str, str | None]) -> None:
    missing = [
        d for d in decisions
        if d.outcome is rules.Outcome.WARN
        and (d.code.value not in acknowledgements
             or (d.needs_reason and not (acknowledgements.get(d.code.value) or "").strip()))
    ]
    if missing:
        raise AcknowledgementRequired(missing)


def _cosigner(session: Session, actor: User, cosigner: tuple[str, str] | None) -> User | None:
    if cosigner is None:
        return None
    username, password = cosigner
    other = session.scalar(select(User).where(User.username == username.strip().lower()))
    if other is None or other.id == actor.id or other.clinic_id != actor.clinic_id:
        raise PermissionDenied("co-signer", code="COSIGNER_INVALID")
    require_role(other, Role.PHYSICIAN)
    reauthenticate(other, password)
    return other


def sign_order(
    session: Session,
    actor: User,
    rule_set: rules.RuleSet,
    order_id: int,
    password: str,
    today: date,
    *,
    acknowledgements: dict[str, str | None] | None = None,
    cosigner: tuple[str, str] | None = None,
) -> Order:
    """Sign a draft after re-authentication; it supersedes the order in force from its first day.

    Raises ReauthenticationFailed, OrderBlocked (with the BLOCK decisions), AcknowledgementRequired
    (WARNs not acknowledged, or without the required written reason), Conflict, PermissionDenied.
    """
    require_role(actor, Role.PHYSICIAN)
    reauthenticate(actor, password)
    begin_write(session)
    order = _editable_draft(session, actor, order_id)
    co = _cosigner(session, actor, cosigner)
    decisions = evaluate(session, rule_set, order, today, signer=actor, cosigner=co)
    blocked = rules.blocking(decisions)
    if blocked:
        raise OrderBlocked(blocked)
    acknowledgements = acknowledgements or {}
    _check_acknowledgements(decisions, acknowledgements)

    previous_orders = [o for o in signed_orders(session, order.patient_id) if o.id != order.id]
    in_force = order_in_force(previous_orders, order.valid_from)
    if order.supersedes_id is None and in_force is not None:
        order.supersedes_id = in_force.id
    now = utcnow()
    for found in decisions:
        if found.outcome is rules.Outcome.WARN:
            order.acknowledgements.append(OrderAcknowledgement(
                reason_code=found.code.value, reason=acknowledgements.get(found.code.value), user_id=actor.id))
    order.status = OrderStatus.SIGNED
    order.signed_by_id, order.signed_at = actor.id, now
    if co is not None:
        order.cosigned_by_id, order.cosigned_at = co.id, now
    order.rule_table_version = rule_set.version
    order.decisions = [decision_json(d) for d in decisions]
    from_phase = in_force.phase if in_force is not None and in_force.kind is OrderKind.DOSING else None
    audit.record(session, "order.signed", actor_id=actor.id, clinic_id=order.clinic_id, entity=order, at=now, data={
        "patient_id": order.patient_id, "kind": order.kind, "phase": order.phase, "from_phase": from_phase,
        "daily_total_mg": order.daily_total_mg, "valid_from": order.valid_from, "valid_until": order.valid_until,
        "supersedes_id": order.supersedes_id, "rule_table_version": rule_set.version,
        "acknowledged": sorted(acknowledgements), "cosigned_by": co.id if co else None,
    })
    if order.phase != from_phase:
        audit.record(session, "patient.phase_changed", actor_id=actor.id, clinic_id=order.clinic_id,
                     entity_type="Patient", entity_id=order.patient_id, at=now,
                     data={"from": from_phase, "to": order.phase, "order_id": order.id,
                           "rule_table_version": rule_set.version})
    session.commit()
    return order


def _signed_control_order(session: Session, actor: User, patient_id: int, kind: OrderKind, password: str,
                          valid_from: date, valid_until: date | None, reason: str, rule_set: rules.RuleSet) -> Order:
    require_role(actor, Role.PHYSICIAN)
    if not reason or not reason.strip():
        raise ValidationFailed("reason", code="ORDER_REASON_REQUIRED")
    if valid_until is not None and valid_until < valid_from:
        raise ValidationFailed("window", code="ORDER_WINDOW_INVALID")
    reauthenticate(actor, password)
    begin_write(session)
    patient = get_patient(session, actor, patient_id)
    orders = signed_orders(session, patient.id)
    in_force = order_in_force(orders, valid_from)
    now = utcnow()
    order = Order(
        clinic_id=patient.clinic_id, patient_id=patient.id, kind=kind, status=OrderStatus.SIGNED, phase=None,
        daily_total_mg=Decimal(0), valid_from=valid_from, valid_until=valid_until, reason=reason.strip(),
        # A stop ends the order in force; a suspension only overrides it inside its own window.
        supersedes_id=in_force.id if in_force is not None and kind is OrderKind.STOP else None,
        created_by_id=actor.id,
        signed_by_id=actor.id, signed_at=now, rule_table_version=rule_set.version, decisions=[],
    )
    session.add(order)
    session.flush()
    audit.record(session, f"order.{kind.value}", actor_id=actor.id, clinic_id=order.clinic_id, entity=order, at=now,
                 data={"patient_id": patient.id, "valid_from": valid_from, "valid_until": valid_until,
                       "supersedes_id": order.supersedes_id, "rule_table_version": rule_set.version})
    return order


def stop_treatment(session: Session, actor: User, rule_set: rules.RuleSet, patient_id: int, from_date: date,
                   reason: str, password: str) -> Order:
    """Sign a STOP order: no dosing from ``from_date``. Committed."""
    order = _signed_control_order(session, actor, patient_id, OrderKind.STOP, password, from_date, None, reason,
                                  rule_set)
    session.commit()
    return order


def suspend_treatment(session: Session, actor: User, rule_set: rules.RuleSet, patient_id: int, from_date: date,
                      until: date, reason: str, password: str) -> Order:
    """Sign a SUSPEND order: no dosing from ``from_date`` to ``until``. Committed."""
    order = _signed_control_order(session, actor, patient_id, OrderKind.SUSPEND, password, from_date, until,
                                  reason, rule_set)
    session.commit()
    return order
