"""After the dose: vomiting and the physician's replacement order, voiding a mistaken record,
take-home labels and returned containers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispensing import audit, rules
from dispensing.accounts import reauthenticate
from dispensing.clock import utcnow
from dispensing.counter.common import (
    TAKEN,
    Acknowledgements,
    DoseBlocked,
    clinic_day,
    require_acknowledged,
    task_for_decision,
)
from dispensing.counter.dosing import delivered_mg
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.models import (
    Clinic,
    Dose,
    DoseKind,
    DoseState,
    DoseVoid,
    Lot,
    Order,
    OrderKind,
    OrderPart,
    OrderStatus,
    Patient,
    Role,
    TakeHomeReturn,
    User,
    VomitEvent,
)
from dispensing.orders import decision_json
from dispensing.patients import get_patient
from dispensing.permissions import require_role
from dispensing.stock.signatures import Cosigner, resolve_cosigner, sign

ML = Decimal("0.01")
TAKE_HOME_PREFIX = "T"
# Doses a patient swallows at the counter (vomiting after a take-home dose is not witnessed here).
OBSERVED_KINDS = (DoseKind.OBSERVED, DoseKind.REPLACEMENT, DoseKind.COMPLETION)


def _dose(session: Session, actor: User, dose_id: int, *, lock: bool = False) -> Dose:
    dose = session.get(Dose, dose_id, with_for_update=lock, populate_existing=lock)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    get_patient(session, actor, dose.patient_id)
    return dose


def voided(session: Session, dose_id: int) -> DoseVoid | None:
    return session.scalar(select(DoseVoid).where(DoseVoid.dose_id == dose_id))


def dose_mg(session: Session, dose: Dose) -> Decimal:
    lot = session.get(Lot, dose.lot_id) if dose.lot_id else None
    return delivered_mg(dose, lot.concentration_mg_per_ml if lot else None)


# ---------------------------------------------------------------------------------------------
# Vomiting and replacement


def _replacement_request(session: Session, dose: Dose, vomit: VomitEvent,
                         proposed_mg: Decimal | None) -> rules.ReplacementRequest:
    earlier = session.scalar(
        select(func.coalesce(func.sum(Order.daily_total_mg), 0)).where(
            Order.kind == OrderKind.REPLACEMENT, Order.status == OrderStatus.SIGNED, Order.linked_dose_id == dose.id)
    )
    return rules.ReplacementRequest(
        vomited_dose_mg=dose_mg(session, dose), dosed_at=dose.finished_at, vomited_at=vomit.observed_at,
        witnessed=vomit.witness_id is not None, proposed_mg=proposed_mg, earlier_replacements_mg=Decimal(earlier),
    )


def record_vomit(
    session: Session, actor: User, rule_set: rules.RuleSet, *, dose_id: int, observed_at: datetime,
    witness: Cosigner | None = None, seen_by_recorder: bool = True, note: str | None = None,
    now: datetime | None = None,
) -> tuple[VomitEvent, rules.ReplacementEvaluation]:
    """Record vomiting after an observed dose, at ``observed_at``. Witnessed when the recording
    nurse saw it (``seen_by_recorder``) or a named witness signs with their password. The
    physician gets a task saying whether a replacement may be ordered and in what range
    (CLINICAL_RULES §7); the nurse never gives one without that order. Committed.

    Raises PermissionDenied, NotFound, Conflict (DOSE_NOT_TAKEN, DOSE_VOIDED), ValidationFailed
    (VOMIT_TIME_INVALID, VOMIT_KIND_INVALID), ReauthenticationFailed.
    """
    require_role(actor, Role.NURSE, Role.PHYSICIAN)
    now = now or utcnow()
    if observed_at.tzinfo is None or observed_at > now:
        raise ValidationFailed("time", code="VOMIT_TIME_INVALID")
    begin_write(session)
    dose = _dose(session, actor, dose_id, lock=True)
    if dose.kind not in OBSERVED_KINDS:
        raise ValidationFailed("not an observed dose", code="VOMIT_KIND_INVALID")
    if dose.state not in TAKEN or dose.finished_at is None:
        raise Conflict("dose not given", code="DOSE_NOT_TAKEN")
    if voided(session, dose.id) is not None:
        raise Conflict("dose voided", code="DOSE_VOIDED")
    if observed_at < dose.finished_at:
        raise ValidationFailed("before the dose", code="VOMIT_TIME_INVALID")
    witness_user = None
    if witness is not None and witness.username.strip():
        witness_user = resolve_cosigner(session, actor, witness, required_code="WITNESS_REQUIRED")
    witness_id = witness_user.id if witness_user is not None else (actor.id if seen_by_recorder else None)
    vomit = VomitEvent(dose_id=dose.id, observed_at=observed_at, recorded_by_id=actor.id, witness_id=witness_id,
                       note=(note or "").strip() or None)
    session.add(vomit)
    session.flush()
    evaluation = rules.evaluate_replacement(rule_set, _replacement_request(session, dose, vomit, None))
    patient = session.get(Patient, dose.patient_id)
    for found in evaluation.decisions:
        task = task_for_decision(session, patient, found, dose.business_date)
        task.subject = f"dose:{dose.id}"
    audit.record(session, "dose.vomit_recorded", actor_id=actor.id, clinic_id=dose.clinic_id, entity=vomit, at=now,
                 data={"dose_id": dose.id, "observed_at": observed_at, "witnessed": witness_id is not None,
                       "decision": evaluation.decisions[0].code.value})
    if witness_user is not None:
        sign(session, witness_user, action="dose.vomit_witnessed", role="witness", entity=vomit,
             clinic_id=dose.clinic_id, at=now)
    session.commit()
    return vomit, evaluation


def order_replacement(
    session: Session, actor: User, rule_set: rules.RuleSet, *, dose_id: int, mg: Decimal, password: str,
    reason: str | None = None, acknowledgements: dict[str, str | None] | None = None,
    now: datetime | None = None,
) -> Order:
    """Sign a replacement order for a dose: after recorded vomiting, within the §7 rules (≤ 30 min,
    witnessed, 25–75 % of what was vomited, less earlier replacements); or for a voided record, up
    to that dose's planned mg. Physicians only, re-authenticated. Committed.

    Raises PermissionDenied, ReauthenticationFailed, NotFound, DoseBlocked (REPLACEMENT_BLOCKED,
    with the decisions), AcknowledgementRequired, ValidationFailed (REPLACEMENT_NOT_INDICATED,
    REPLACEMENT_DOSE_INVALID), Conflict (REPLACEMENT_ALREADY_ORDERED).
    """
    require_role(actor, Role.PHYSICIAN)
    if not isinstance(mg, Decimal) or mg <= 0 or mg != mg.quantize(Decimal("0.1")):
        raise ValidationFailed("mg", code="REPLACEMENT_DOSE_INVALID")
    reauthenticate(actor, password)
    now = now or utcnow()
    begin_write(session)
    dose = _dose(session, actor, dose_id, lock=True)
    _clinic, today = clinic_day(session, dose.clinic_id, now)
    vomit = session.scalar(select(VomitEvent).where(VomitEvent.dose_id == dose.id)
                           .order_by(VomitEvent.observed_at).limit(1))
    void = voided(session, dose.id)
    decisions: list[rules.Decision] = []
    if vomit is not None and void is None:
        evaluation = rules.evaluate_replacement(rule_set, _replacement_request(session, dose, vomit, mg))
        decisions = list(evaluation.decisions)
        blocked = rules.blocking(decisions)
        if blocked:
            raise DoseBlocked(blocked, code="REPLACEMENT_BLOCKED")
        require_acknowledged(decisions, Acknowledgements.of(acknowledgements))
    elif void is not None:
        if mg > dose.planned_mg:
            raise ValidationFailed("more than the voided dose", code="REPLACEMENT_DOSE_INVALID")
        already = session.scalar(select(Order.id).where(
            Order.kind == OrderKind.REPLACEMENT, Order.status == OrderStatus.SIGNED, Order.linked_dose_id == dose.id))
        if already is not None:
            raise Conflict("already ordered", code="REPLACEMENT_ALREADY_ORDERED", order_id=already)
    else:
        raise ValidationFailed("no vomiting or void recorded", code="REPLACEMENT_NOT_INDICATED")
    order = Order(
        clinic_id=dose.clinic_id, patient_id=dose.patient_id, kind=OrderKind.REPLACEMENT, status=OrderStatus.SIGNED,
        phase=None, daily_total_mg=mg, valid_from=today, valid_until=today, linked_dose_id=dose.id,
        reason=(reason or "").strip() or ("void" if void is not None else "vomit"), created_by_id=actor.id,
        signed_by_id=actor.id, signed_at=now, rule_table_version=rule_set.version,
        decisions=[decision_json(d) for d in decisions], parts=[OrderPart(part_no=1, dose_mg=mg)],
    )
    session.add(order)
    session.flush()
    audit.record(session, "order.replacement", actor_id=actor.id, clinic_id=order.clinic_id, entity=order, at=now,
                 data={"patient_id": order.patient_id, "dose_id": dose.id, "mg": mg,
                       "because": "void" if void is not None else "vomit", "rule_table_version": rule_set.version})
    session.commit()
    return order


# ---------------------------------------------------------------------------------------------
# Voids


def void_dose(session: Session, actor: User, *, dose_id: int, reason: str, password: str,
              witness: Cosigner | None, now: datetime | None = None) -> DoseVoid:
    """Declare a finished dose record mistaken. The void is a new record with the reason, the
    nurse's signature and a different witness's; the dose row and its ledger line stay as they are
    (the liquid left the pump — a correction of stock is the pharmacist's, with its own signature).
    The voided dose no longer counts in the patient's history; its slot stays taken, so giving that
    part again needs a physician's replacement order. Committed.

    Raises PermissionDenied, NotFound, ReauthenticationFailed, ValidationFailed (REASON_REQUIRED,
    WITNESS_REQUIRED, COSIGNER_IS_SIGNER), Conflict (DOSE_NOT_FINAL, DOSE_VOIDED).
    """
    require_role(actor, Role.NURSE, Role.PHYSICIAN)
    if not reason or not reason.strip():
        raise ValidationFailed("reason", code="REASON_REQUIRED")
    reauthenticate(actor, password)
    now = now or utcnow()
    begin_write(session)
    dose = _dose(session, actor, dose_id, lock=True)
    if dose.state not in (DoseState.COMPLETED, DoseState.PARTIAL, DoseState.FAILED):
        raise Conflict("only a finished record is voided", code="DOSE_NOT_FINAL", state=dose.state.value)
    if voided(session, dose.id) is not None:
        raise Conflict("already voided", code="DOSE_VOIDED")
    witness_user = resolve_cosigner(session, actor, witness, required_code="WITNESS_REQUIRED")
    void = DoseVoid(clinic_id=dose.clinic_id, dose_id=dose.id, reason=reason.strip(), voided_at=now,
                    voided_by_id=actor.id, witness_id=witness_user.id)
    session.add(void)
    session.flush()
    data = {"dose_id": dose.id, "patient_id": dose.patient_id, "state": dose.state.value}
    sign(session, actor, action="dose.voided", role="recorder", entity=void, clinic_id=dose.clinic_id, at=now,
         data=data)
    sign(session, witness_user, action="dose.voided", role="witness", entity=void, clinic_id=dose.clinic_id,
         at=now, data=data)
    session.commit()
    return void


# ---------------------------------------------------------------------------------------------
# Take-home labels and returns


def take_home_label_code(dose_id: int) -> str:
    """The take-home container's barcode: 'T' and the dose id (classified as a take-home label)."""
    return f"{TAKE_HOME_PREFIX}{dose_id:08d}"


def dose_id_from_label(label_code: str) -> int:
    code = (label_code or "").strip().upper()
    if not code.startswith(TAKE_HOME_PREFIX) or not code[1:].isdigit():
        raise ValidationFailed("not a take-home label", code="TAKE_HOME_LABEL_INVALID")
    return int(code[1:])


@dataclass(frozen=True)
class TakeHomeLabelData:
    """What the devices layer's ContainerLabel prints for one take-home container."""

    label_id: str
    patient_code: str  # the card barcode (P…), which the label's own check classifies
    patient_name: str
    dose_mg: Decimal
    dose_ml: Decimal
    dose_date: date
    lot: str
    concentration_mg_per_ml: Decimal
    clinic_name: str


def take_home_label(session: Session, actor: User, dose_id: int) -> TakeHomeLabelData:
    """Return the label data of a filled take-home container. Raises NotFound, Conflict
    (NOT_TAKE_HOME, TAKE_HOME_NOT_FILLED)."""
    require_role(actor, Role.NURSE, Role.PHARMACIST)
    dose = _dose(session, actor, dose_id)
    if dose.kind is not DoseKind.TAKE_HOME:
        raise Conflict("not a take-home dose", code="NOT_TAKE_HOME")
    if dose.state is not DoseState.COMPLETED or dose.delivered_ml != dose.planned_ml:
        raise Conflict("container not filled", code="TAKE_HOME_NOT_FILLED")
    patient = session.get(Patient, dose.patient_id)
    lot = session.get(Lot, dose.lot_id)
    clinic = session.get(Clinic, dose.clinic_id)
    return TakeHomeLabelData(
        label_id=take_home_label_code(dose.id), patient_code=patient.card_barcode, patient_name=patient.full_name,
        dose_mg=dose.planned_mg, dose_ml=dose.planned_ml, dose_date=dose.business_date, lot=lot.lot_number,
        concentration_mg_per_ml=lot.concentration_mg_per_ml, clinic_name=clinic.name,
    )


def record_take_home_return(
    session: Session, actor: User, *, dose_id: int, empty: bool, remaining_ml: Decimal | None = None,
    witness: Cosigner | None = None, note: str | None = None, now: datetime | None = None,
) -> TakeHomeReturn:
    """Record a take-home container brought back: empty, or with ``remaining_ml`` left in it
    (witnessed; the liquid goes to the pharmacist for destruction). Once per container. Committed.

    Raises PermissionDenied, NotFound, Conflict (NOT_TAKE_HOME, TAKE_HOME_NOT_FILLED,
    ALREADY_RETURNED), ValidationFailed (TAKE_HOME_REMAINING_INVALID, WITNESS_REQUIRED)."""
    require_role(actor, Role.NURSE, Role.PHARMACIST)
    now = now or utcnow()
    if not empty and (remaining_ml is None or remaining_ml <= 0 or remaining_ml != remaining_ml.quantize(ML)):
        raise ValidationFailed("remaining", code="TAKE_HOME_REMAINING_INVALID")
    begin_write(session)
    dose = _dose(session, actor, dose_id, lock=True)
    if dose.kind is not DoseKind.TAKE_HOME:
        raise Conflict("not a take-home dose", code="NOT_TAKE_HOME")
    if dose.state not in TAKEN:
        raise Conflict("container never filled", code="TAKE_HOME_NOT_FILLED")
    if session.scalar(select(TakeHomeReturn.id).where(TakeHomeReturn.dose_id == dose.id)) is not None:
        raise Conflict("already returned", code="ALREADY_RETURNED")
    witness_user = None
    if not empty:
        if remaining_ml > (dose.delivered_ml or Decimal(0)):
            raise ValidationFailed("more than was given", code="TAKE_HOME_REMAINING_INVALID")
        witness_user = resolve_cosigner(session, actor, witness, required_code="WITNESS_REQUIRED")
    returned = TakeHomeReturn(
        clinic_id=dose.clinic_id, dose_id=dose.id, returned_at=now, recorded_by_id=actor.id, empty=empty,
        remaining_ml=None if empty else remaining_ml, witness_id=witness_user.id if witness_user else None,
        note=(note or "").strip() or None,
    )
    session.add(returned)
    session.flush()
    audit.record(session, "take_home.returned", actor_id=actor.id, clinic_id=dose.clinic_id, entity=returned, at=now,
                 data={"dose_id": dose.id, "empty": empty, "remaining_ml": remaining_ml})
    if witness_user is not None:
        sign(session, witness_user, action="take_home.return_witnessed", role="witness", entity=returned,
             clinic_id=dose.clinic_id, at=now, data={"remaining_ml": remaining_ml})
    session.commit()
    return returned
