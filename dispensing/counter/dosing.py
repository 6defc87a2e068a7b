"""Before the pump: the pre-dose assessment, and authorising a dose — the regular part of the
day, the remainder of a partial delivery, a physician-ordered replacement, take-home doses.

Authorising is one write transaction: ``begin_write`` (SQLite: BEGIN IMMEDIATE), the patient's
row locked on PostgreSQL, the rules evaluated again, the pump's open bottle and calibration
checked, and the Dose inserted in state REQUESTED with the client's idempotency key. The device
service picks it up from there; nothing here talks to a device. A request repeated with the same
key returns the same dose; a second counter asking for the same slot is refused (ALREADY_DOSED),
and the unique index on the regular slot backs that check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispensing import audit, rules, stock
from dispensing.clock import utcnow
from dispensing.counter import signals
from dispensing.counter.common import (
    IN_FLIGHT,
    TAKEN,
    Acknowledgements,
    AlreadyDosed,
    DoseBlocked,
    add_event,
    calibration_problem,
    ceiling_ml,
    clinic_day,
    lock_patient,
    record_state,
    require_acknowledged,
    require_counter,
    require_key,
    resolution_ml,
    task_for_decision,
)
from dispensing.counter.pumps import pump_state
from dispensing.counter_rules import counter_evaluation, latest_assessment, rules_assessment
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.history import dosing_order_in_force, lifts_from, signed_orders
from dispensing.models import (
    REGULAR_KINDS,
    Assessment,
    Calibration,
    Clinic,
    Counter,
    Device,
    Dose,
    DoseKind,
    DoseState,
    DoseVoid,
    Lot,
    Order,
    OrderKind,
    OrderStatus,
    Patient,
    Role,
    User,
)
from dispensing.patients import get_patient
from dispensing.permissions import require_role

COWS_MAX = 48


# ---------------------------------------------------------------------------------------------
# Pre-dose assessment


@dataclass(frozen=True)
class AssessmentAnswers:
    """The nurse's checklist (CLINICAL_RULES §5) and, in induction, the COWS score."""

    drowsy: bool = False
    slurred_speech: bool = False
    pinpoint_pupils: bool = False
    alcohol_smell: bool = False
    unsteady_gait: bool = False
    cows: int | None = None
    note: str | None = None


def record_assessment(
    session: Session, actor: User, rule_set: rules.RuleSet, patient_id: int, answers: AssessmentAnswers,
    *, now: datetime | None = None,
) -> tuple[Assessment, list[rules.Decision]]:
    """Record today's pre-dose assessment and return it with the pre-dose decisions. A positive
    finding BLOCKs the dose (and any take-home) and raises a physician task; only a physician order
    linked to this assessment lifts it. Nurses (and physicians) only. Committed.

    Raises PermissionDenied, NotFound, ValidationFailed(COWS_INVALID), Conflict(PATIENT_NOT_ACTIVE).
    """
    require_role(actor, Role.NURSE, Role.PHYSICIAN)
    if answers.cows is not None and not 0 <= answers.cows <= COWS_MAX:
        raise ValidationFailed("COWS 0-48", code="COWS_INVALID")
    now = now or utcnow()
    begin_write(session)
    patient = lock_patient(session, actor, patient_id)
    _clinic, day = clinic_day(session, patient.clinic_id, now)
    assessment = Assessment(
        clinic_id=patient.clinic_id, patient_id=patient.id, business_date=day, assessed_at=now,
        assessed_by_id=actor.id, drowsy=answers.drowsy, slurred_speech=answers.slurred_speech,
        pinpoint_pupils=answers.pinpoint_pupils, alcohol_smell=answers.alcohol_smell,
        unsteady_gait=answers.unsteady_gait, cows=answers.cows, note=(answers.note or "").strip() or None,
    )
    session.add(assessment)
    session.flush()
    decisions = rules.check_predose(rule_set, rules_assessment(assessment))
    for found in decisions:
        if found.code is rules.Reason.PREDOSE_CHECK_POSITIVE:
            task_for_decision(session, patient, found, day)
    audit.record(session, "assessment.recorded", actor_id=actor.id, clinic_id=patient.clinic_id,
                 entity=assessment, at=now,
                 data={"patient_id": patient.id, "positive": assessment.positive, "cows": answers.cows})
    session.commit()
    return assessment, decisions


# ---------------------------------------------------------------------------------------------
# Authorising


@dataclass(frozen=True)
class DoseRequest:
    """What an authorisation returns: the dose (REQUESTED, or the one a repeated request already
    created), whether this call created it, and the decisions it was checked against."""

    doses: tuple[Dose, ...]
    created: bool
    decisions: tuple[rules.Decision, ...] = ()

    @property
    def dose(self) -> Dose:
        return self.doses[0]


@dataclass(frozen=True)
class _Pump:
    counter: Counter
    device: Device
    source: stock.DispensingSource
    calibration: Calibration

    def volume(self, rule_set: rules.RuleSet, mg: Decimal) -> rules.VolumeConversion:
        concentration = self.source.concentration_mg_per_ml
        if concentration is None:  # pragma: no cover - dispensing_source refuses such a lot
            raise ValidationFailed("concentration", code="CONCENTRATION_NOT_VERIFIED")
        return rules.dose_volume(rule_set, mg, concentration, resolution_ml(self.device))

    def check_ceiling(self, volume_ml: Decimal) -> None:
        limit = ceiling_ml(self.device)
        if volume_ml > limit:
            raise ValidationFailed("over the pump's ceiling", code="OVER_CEILING", volume_ml=volume_ml,
                                   ceiling_ml=limit)


def _pump(session: Session, clinic: Clinic, counter_id: int, day: date, now: datetime,
          product_id: int | None = None) -> _Pump:
    """The counter's pump, ready to dispense: open bottle of a usable lot (stock's
    ``dispensing_source``, which row-locks the pump location), valid calibration. The counter,
    pump, open bottle and calibration come from one read (``pump_state``); the refusals keep their
    order: counter, pump, bottle, source, calibration."""
    state = pump_state(session, counter_id, now)
    counter = require_counter(state.counter, clinic.id)
    device = state.device
    if device is None:
        raise ValidationFailed("no pump at this counter", code="COUNTER_HAS_NO_PUMP")
    if product_id is None:
        if state.product is None:
            raise ValidationFailed("no open bottle on this pump", code="NO_OPEN_BOTTLE")
        product_id = state.product.id  # in the session: dispensing_source reads it without a query
    source = stock.dispensing_source(session, clinic_id=clinic.id, product_id=product_id, business_date=day,
                                     device_id=device.id)
    problem = calibration_problem(state.calibration, now)
    if problem is not None:
        raise Conflict("pump calibration", code=problem, device_id=device.id)
    return _Pump(counter, device, source, state.calibration)


def _replayed(session: Session, keys: Sequence[str], patient_id: int, kind: DoseKind,
              same: Callable[[Dose], bool] = lambda _dose: True) -> tuple[Dose, ...] | None:
    """Return the doses an earlier request with the same key created, or None when it is new.
    ``same`` says whether a found dose answers this very request. Raises
    Conflict(IDEMPOTENCY_KEY_REUSED) when the key belongs to a different request."""
    found = session.scalars(select(Dose).where(Dose.idempotency_key.in_(list(keys))).order_by(Dose.id)).all()
    if not found:
        return None
    if any(d.patient_id != patient_id or d.kind is not kind or not same(d) for d in found):
        raise Conflict("idempotency key used for another request", code="IDEMPOTENCY_KEY_REUSED")
    return tuple(found)


def _slot_taken(session: Session, patient_id: int, product_id: int, part_no: int, day: date) -> int | None:
    return session.scalar(
        select(Dose.id).where(
            Dose.patient_id == patient_id, Dose.product_id == product_id, Dose.part_no == part_no,
            Dose.business_date == day, Dose.kind.in_(REGULAR_KINDS), Dose.state != DoseState.FAILED,
        ).limit(1)
    )


def _insert(session: Session, doses: Sequence[Dose], *, keys: Sequence[str], patient_id: int,
            kind: DoseKind) -> tuple[Dose, ...] | None:
    """Flush the new doses; on a unique-index violation (a writer that got past the lock, which
    the index exists to catch) roll back and return the doses of a repeated request, or raise."""
    session.add_all(doses)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        replay = _replayed(session, keys, patient_id, kind)
        if replay is not None:
            return replay
        raise AlreadyDosed() from None
    return None


def _requested(session: Session, doses: Sequence[Dose], actor: User, now: datetime, detail: dict) -> None:
    for dose in doses:
        add_event(session, dose, DoseState.REQUESTED, now, actor.id, detail)
        audit.record(
            session, "dose.requested", actor_id=actor.id, clinic_id=dose.clinic_id, entity_type="Dose",
            entity_id=dose.id, at=now,
            data={"patient_id": dose.patient_id, "kind": dose.kind, "part_no": dose.part_no,
                  "business_date": dose.business_date, "planned_mg": dose.planned_mg,
                  "planned_ml": dose.planned_ml, "counter_id": dose.counter_id, "device_id": dose.device_id,
                  "lot_id": dose.lot_id, "acknowledged": detail.get("acknowledged", [])},
        )


def _decisions_detail(evaluation: rules.CounterEvaluation | None, decisions: Sequence[rules.Decision],
                      acknowledged: list[str], conversion: rules.VolumeConversion | None,
                      calibration: Calibration, rule_set: rules.RuleSet) -> dict:
    detail: dict = {
        "rule_set_version": rule_set.version,
        "decisions": [{"code": d.code.value, "outcome": d.outcome.value, "lifted": d.lifted_by is not None}
                      for d in decisions],
        "acknowledged": acknowledged,
        "calibration_id": calibration.id,
        "calibration_factor": str(calibration.factor),
    }
    if conversion is not None:
        detail["conversion"] = {
            "dose_mg": str(conversion.dose_mg), "concentration_mg_per_ml": str(conversion.concentration_mg_per_ml),
            "exact_ml": str(conversion.exact_ml), "volume_ml": str(conversion.volume_ml),
            "resolution_ml": str(conversion.resolution_ml), "rounding": conversion.rounding,
        }
    if evaluation is not None and evaluation.after_dose:
        observation = evaluation.after_dose[0]
        detail["observation"] = {"code": observation.code.value,
                                 "minutes": int((observation.min_end_at - observation.start_at).total_seconds() // 60)}
    return detail


def _part_due(part_not_before: str | None, now: datetime, timezone: str) -> None:
    if not part_not_before:
        return
    hours, minutes = (int(x) for x in part_not_before.split(":"))
    if now.astimezone(ZoneInfo(timezone)).time() < time(hours, minutes):
        raise ValidationFailed("part not yet due", code="PART_NOT_YET_DUE", not_before=part_not_before)


def _new_dose(pump: _Pump, patient: Patient, actor: User, *, kind: DoseKind, day: date, key: str,
              mg: Decimal, ml: Decimal, now: datetime, order_id: int | None, part_no: int | None,
              assessment: Assessment | None, linked_dose_id: int | None = None) -> Dose:
    return Dose(
        clinic_id=patient.clinic_id, patient_id=patient.id, order_id=order_id, part_no=part_no,
        business_date=day, kind=kind, state=DoseState.REQUESTED, idempotency_key=key,
        product_id=pump.source.lot.product_id, lot_id=pump.source.lot.id,
        container_id=pump.source.container.id if pump.source.container else None,
        counter_id=pump.counter.id, device_id=pump.device.id,
        assessment_id=assessment.id if assessment is not None else None, linked_dose_id=linked_dose_id,
        planned_mg=mg, planned_ml=ml, nurse_id=actor.id, requested_at=now,
    )


def _done(session: Session, doses: Sequence[Dose], decisions: Sequence[rules.Decision]) -> DoseRequest:
    session.commit()
    signals.dose_requested(doses[0].counter_id)
    return DoseRequest(tuple(doses), True, tuple(decisions))


def _replay_result(session: Session, replay: tuple[Dose, ...]) -> DoseRequest:
    session.commit()
    return DoseRequest(replay, False)


def authorize(
    session: Session, actor: User, rule_set: rules.RuleSet, *, patient_id: int, counter_id: int, part_no: int,
    idempotency_key: str, acknowledgements: dict[str, str | None] | None = None, now: datetime | None = None,
) -> DoseRequest:
    """Authorise today's observed dose of one order part at a counter: the dose is REQUESTED and
    the counter's device service delivers it. Nurses only. Committed.

    Raises PermissionDenied, NotFound, AlreadyDosed (409), DoseBlocked (422, with the BLOCK
    decisions), AcknowledgementRequired (WARNs not acknowledged), Conflict (CALIBRATION_EXPIRED …,
    IDEMPOTENCY_KEY_REUSED, DAY_CLOSED), ValidationFailed (NO_OPEN_BOTTLE, OVER_CEILING,
    PART_INVALID, PART_NOT_YET_DUE, IDEMPOTENCY_KEY_INVALID …).
    """
    require_role(actor, Role.NURSE)
    key = require_key(idempotency_key)
    now = now or utcnow()
    begin_write(session)
    patient = lock_patient(session, actor, patient_id)
    replay = _replayed(session, [key], patient.id, DoseKind.OBSERVED,
                       lambda d: d.part_no == part_no and d.medication_order_id is None)
    if replay is not None:
        return _replay_result(session, replay)
    clinic, day = clinic_day(session, patient.clinic_id, now)
    pump = _pump(session, clinic, counter_id, day, now)
    taken = _slot_taken(session, patient.id, pump.source.lot.product_id, part_no, day)
    if taken is not None:
        raise AlreadyDosed(taken)
    assessment = latest_assessment(session, patient.id, day)
    evaluation, order = counter_evaluation(session, rule_set, patient, day, now, lot=pump.source.lot,
                                           assessment=assessment, use_latest_assessment=False,
                                           device_resolution_ml=resolution_ml(pump.device))
    blocked = rules.blocking(evaluation.decisions)
    if blocked:
        raise DoseBlocked(blocked)
    acknowledged = require_acknowledged(evaluation.decisions, Acknowledgements.of(acknowledgements))
    parts = {part.number: part for part in evaluation.planned_parts}
    if order is None or part_no not in parts:
        raise ValidationFailed("no such part today", code="PART_INVALID")
    order_part = next(p for p in order.parts if p.part_no == part_no)
    _part_due(order_part.not_before, now, clinic.timezone)
    planned = parts[part_no]
    if planned.volume is None:  # pragma: no cover - a lot without a volume BLOCKs above
        raise ValidationFailed("no volume for this lot", code="CONCENTRATION_NOT_VERIFIED")
    pump.check_ceiling(planned.volume.volume_ml)
    dose = _new_dose(pump, patient, actor, kind=DoseKind.OBSERVED, day=day, key=key, mg=planned.dose_mg,
                     ml=planned.volume.volume_ml, now=now, order_id=order.id, part_no=part_no,
                     assessment=assessment)
    replay = _insert(session, [dose], keys=[key], patient_id=patient.id, kind=DoseKind.OBSERVED)
    if replay is not None:
        return DoseRequest(replay, False)
    _requested(session, [dose], actor, now, _decisions_detail(
        evaluation, evaluation.decisions, acknowledged, planned.volume, pump.calibration, rule_set))
    return _done(session, [dose], evaluation.decisions)


def _voided(session: Session, dose_id: int) -> bool:
    return session.scalar(select(DoseVoid.id).where(DoseVoid.dose_id == dose_id)) is not None


def delivered_mg(dose: Dose, concentration: Decimal | None) -> Decimal:
    """The mg a finished dose delivered: the plan when completed, else measured ml × concentration."""
    if dose.state is DoseState.COMPLETED and dose.delivered_ml == dose.planned_ml:
        return dose.planned_mg
    if dose.delivered_ml is None or not concentration:
        return Decimal(0)
    return dose.delivered_ml * concentration


def _completions(session: Session, original: Dose) -> list[Dose]:
    return list(session.scalars(
        select(Dose).where(Dose.linked_dose_id == original.id, Dose.kind == DoseKind.COMPLETION).order_by(Dose.id)
    ))


def remainder_mg(session: Session, original: Dose) -> Decimal:
    """What is left to give of a partial dose: planned mg less the mg its delivery and its
    completions delivered (each at its own lot's concentration)."""
    given = Decimal(0)
    for dose in (original, *_completions(session, original)):
        if dose.state in TAKEN:
            lot = session.get(Lot, dose.lot_id) if dose.lot_id else None
            given += delivered_mg(dose, lot.concentration_mg_per_ml if lot else None)
    return max(original.planned_mg - given, Decimal(0))


def complete_partial(
    session: Session, actor: User, rule_set: rules.RuleSet, *, dose_id: int, counter_id: int,
    idempotency_key: str, now: datetime | None = None,
) -> DoseRequest:
    """Authorise the remainder of a PARTIAL delivery as a COMPLETION dose linked to it (same day,
    any counter whose pump holds the same product; the volume follows that pump's lot). Nurses
    only. Committed.

    Raises PermissionDenied, NotFound, Conflict (DOSE_NOT_PARTIAL, DOSE_VOIDED,
    COMPLETION_IN_PROGRESS, NOTHING_LEFT_TO_GIVE, DAY_OVER, CALIBRATION_EXPIRED …), ValidationFailed.
    """
    require_role(actor, Role.NURSE)
    key = require_key(idempotency_key)
    now = now or utcnow()
    begin_write(session)
    original = session.get(Dose, dose_id)
    if original is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    patient = lock_patient(session, actor, original.patient_id)
    replay = _replayed(session, [key], patient.id, DoseKind.COMPLETION, lambda d: d.linked_dose_id == original.id)
    if replay is not None:
        return _replay_result(session, replay)
    if original.state is not DoseState.PARTIAL or original.kind is DoseKind.COMPLETION:
        raise Conflict("only a partial dose is completed", code="DOSE_NOT_PARTIAL")
    if _voided(session, original.id):
        raise Conflict("dose voided", code="DOSE_VOIDED")
    clinic, day = clinic_day(session, patient.clinic_id, now)
    if original.business_date != day:
        raise Conflict("a partial dose is completed the same day", code="DAY_OVER")
    if any(d.state in IN_FLIGHT or d.state is DoseState.UNKNOWN for d in _completions(session, original)):
        raise Conflict("a completion is on its way", code="COMPLETION_IN_PROGRESS")
    mg = remainder_mg(session, original)
    if mg <= 0:
        raise Conflict("nothing left to give", code="NOTHING_LEFT_TO_GIVE")
    pump = _pump(session, clinic, counter_id, day, now, product_id=original.product_id)
    conversion = pump.volume(rule_set, mg)
    if conversion.volume_ml <= 0:
        raise Conflict("nothing left to give", code="NOTHING_LEFT_TO_GIVE")
    pump.check_ceiling(conversion.volume_ml)
    dose = _new_dose(pump, patient, actor, kind=DoseKind.COMPLETION, day=day, key=key, mg=mg,
                     ml=conversion.volume_ml, now=now, order_id=original.order_id, part_no=original.part_no,
                     assessment=None, linked_dose_id=original.id)
    dose.assessment_id = original.assessment_id
    replay = _insert(session, [dose], keys=[key], patient_id=patient.id, kind=DoseKind.COMPLETION)
    if replay is not None:
        return DoseRequest(replay, False)
    _requested(session, [dose], actor, now,
               {**_decisions_detail(None, (), [], conversion, pump.calibration, rule_set), "completes": original.id})
    return _done(session, [dose], ())


def authorize_replacement(
    session: Session, actor: User, rule_set: rules.RuleSet, *, order_id: int, counter_id: int,
    idempotency_key: str, now: datetime | None = None,
) -> DoseRequest:
    """Authorise the replacement dose a physician ordered (after a witnessed vomit, or for a voided
    record): one dose per replacement order, on the order's day, after a negative pre-dose check.
    Nurses only. Committed.

    Raises PermissionDenied, NotFound (ORDER_NOT_FOUND), Conflict (ORDER_EXPIRED,
    REPLACEMENT_ALREADY_GIVEN …), DoseBlocked (pre-dose check), ValidationFailed.
    """
    require_role(actor, Role.NURSE)
    key = require_key(idempotency_key)
    now = now or utcnow()
    begin_write(session)
    order = session.get(Order, order_id)
    if order is None or order.kind is not OrderKind.REPLACEMENT or order.status is not OrderStatus.SIGNED:
        raise NotFound("replacement order", code="ORDER_NOT_FOUND")
    patient = lock_patient(session, actor, order.patient_id)
    replay = _replayed(session, [key], patient.id, DoseKind.REPLACEMENT, lambda d: d.order_id == order.id)
    if replay is not None:
        return _replay_result(session, replay)
    clinic, day = clinic_day(session, patient.clinic_id, now)
    if not (order.valid_from <= day and (order.valid_until is None or day <= order.valid_until)):
        raise Conflict("replacement order not for today", code="ORDER_EXPIRED")
    given = session.scalar(select(Dose.id).where(
        Dose.order_id == order.id, Dose.kind == DoseKind.REPLACEMENT, Dose.state != DoseState.FAILED).limit(1))
    if given is not None:
        raise Conflict("replacement already given", code="REPLACEMENT_ALREADY_GIVEN", dose_id=given)
    assessment = latest_assessment(session, patient.id, day)
    decisions = rules.apply_lifts(rules.check_predose(rule_set, rules_assessment(assessment)),
                                  lifts_from(signed_orders(session, patient.id)))
    blocked = rules.blocking(decisions)
    if blocked:
        raise DoseBlocked(blocked)
    linked = session.get(Dose, order.linked_dose_id) if order.linked_dose_id else None
    pump = _pump(session, clinic, counter_id, day, now, product_id=linked.product_id if linked else None)
    conversion = pump.volume(rule_set, order.daily_total_mg)
    pump.check_ceiling(conversion.volume_ml)
    dose = _new_dose(pump, patient, actor, kind=DoseKind.REPLACEMENT, day=day, key=key, mg=order.daily_total_mg,
                     ml=conversion.volume_ml, now=now, order_id=order.id, part_no=None, assessment=assessment,
                     linked_dose_id=order.linked_dose_id)
    replay = _insert(session, [dose], keys=[key], patient_id=patient.id, kind=DoseKind.REPLACEMENT)
    if replay is not None:
        return DoseRequest(replay, False)
    _requested(session, [dose], actor, now,
               {**_decisions_detail(None, decisions, [], conversion, pump.calibration, rule_set),
                "replaces": order.linked_dose_id})
    return _done(session, [dose], decisions)


def take_home_keys(key: str, days: Sequence[date], parts: Sequence[int]) -> list[str]:
    """The idempotency keys of the doses of one take-home request, one per day and part."""
    return [f"{key}:{day:%Y%m%d}:{part}" for day in days for part in parts]


def prepare_take_home(
    session: Session, actor: User, rule_set: rules.RuleSet, *, patient_id: int, counter_id: int,
    first_day: date, days: int, idempotency_key: str, acknowledgements: dict[str, str | None] | None = None,
    now: datetime | None = None,
) -> DoseRequest:
    """Authorise take-home doses for ``days`` consecutive days from ``first_day``: one TAKE_HOME
    dose per day and order part, each on the day it covers, delivered by the pump into its own
    container (label: ``take_home_label``). Only when the clinic is in the multi-day programme, the
    order in force carries a take-home plan and the take-home rules ALLOW (commitment signed, phase,
    regime limits, today's pre-dose check…). Nurses only. Committed.

    Raises PermissionDenied, Conflict (TAKE_HOME_NOT_ENABLED, ORDER_NO_TAKE_HOME, ALREADY_DOSED …),
    DoseBlocked (code TAKE_HOME_BLOCKED, with the decisions), ValidationFailed.
    """
    require_role(actor, Role.NURSE)
    key = require_key(idempotency_key)
    if len(key) > 53:
        raise ValidationFailed("key too long for a take-home request", code="IDEMPOTENCY_KEY_INVALID")
    if not 1 <= days <= 31:
        raise ValidationFailed("days", code="TAKE_HOME_DAYS_INVALID")
    now = now or utcnow()
    begin_write(session)
    patient = lock_patient(session, actor, patient_id)
    clinic, day = clinic_day(session, patient.clinic_id, now)
    request = rules.TakeHomeRequest(first_day=first_day, days=days)
    orders = signed_orders(session, patient.id)
    today_order = dosing_order_in_force(orders, day)
    parts = [p.part_no for p in today_order.parts] if today_order is not None else [1]
    keys = take_home_keys(key, request.dates, parts)
    replay = _replayed(session, keys, patient.id, DoseKind.TAKE_HOME)
    if replay is not None:
        return _replay_result(session, replay)
    if not clinic.take_home_enabled:
        raise Conflict("clinic not in the multi-day programme", code="TAKE_HOME_NOT_ENABLED")
    if today_order is None or not today_order.take_home_plan:
        raise Conflict("the order has no take-home plan", code="ORDER_NO_TAKE_HOME")
    plan_max = today_order.take_home_plan.get("max_days") if isinstance(today_order.take_home_plan, dict) else None
    if plan_max is not None and days > int(plan_max):
        raise Conflict("more days than the order allows", code="ORDER_NO_TAKE_HOME", max_days=plan_max)
    pump = _pump(session, clinic, counter_id, day, now)
    assessment = latest_assessment(session, patient.id, day)
    evaluation, _order = counter_evaluation(session, rule_set, patient, day, now, lot=pump.source.lot,
                                            assessment=assessment, use_latest_assessment=False,
                                            device_resolution_ml=resolution_ml(pump.device),
                                            take_home=request)
    blocked = rules.blocking(evaluation.take_home)
    if blocked:
        raise DoseBlocked(blocked, code="TAKE_HOME_BLOCKED")
    acknowledged = require_acknowledged(evaluation.take_home, Acknowledgements.of(acknowledgements))
    doses: list[Dose] = []
    for covered in request.dates:
        order = dosing_order_in_force(orders, covered)
        if order is None:
            raise Conflict("no order on a requested day", code="ORDER_NO_TAKE_HOME", day=covered)
        for part in order.parts:
            taken = _slot_taken(session, patient.id, pump.source.lot.product_id, part.part_no, covered)
            if taken is not None:
                raise AlreadyDosed(taken)
            conversion = pump.volume(rule_set, part.dose_mg)
            pump.check_ceiling(conversion.volume_ml)
            doses.append(_new_dose(
                pump, patient, actor, kind=DoseKind.TAKE_HOME, day=covered,
                key=f"{key}:{covered:%Y%m%d}:{part.part_no}", mg=part.dose_mg, ml=conversion.volume_ml, now=now,
                order_id=order.id, part_no=part.part_no, assessment=assessment))
    replay = _insert(session, doses, keys=keys, patient_id=patient.id, kind=DoseKind.TAKE_HOME)
    if replay is not None:
        return DoseRequest(replay, False)
    _requested(session, doses, actor, now, {
        **_decisions_detail(None, evaluation.take_home, acknowledged, None, pump.calibration, rule_set),
        "take_home": {"first_day": first_day.isoformat(), "days": days},
    })
    return _done(session, doses, evaluation.take_home)


def cancel_request(session: Session, actor: User, dose_id: int, reason: str | None = None,
                   *, now: datetime | None = None) -> Dose:
    """Withdraw a dose the pump has not started (still REQUESTED): it ends FAILED, nothing given.
    A device that picks it up afterwards is refused before RUN. Nurses only. Committed.

    Raises PermissionDenied, NotFound, Conflict(DOSE_NOT_REQUESTED)."""
    require_role(actor, Role.NURSE)
    now = now or utcnow()
    begin_write(session)
    dose = session.get(Dose, dose_id, with_for_update=True, populate_existing=True)
    if dose is None:
        raise NotFound("dose", code="DOSE_NOT_FOUND")
    get_patient(session, actor, dose.patient_id)
    if dose.state is not DoseState.REQUESTED:
        raise Conflict("the pump has already started", code="DOSE_NOT_REQUESTED", state=dose.state.value)
    dose.delivered_ml = Decimal("0.00")
    dose.finished_at = now
    dose.failure_reason = "CANCELLED"
    record_state(session, dose, DoseState.FAILED, at=now, actor_id=actor.id,
                 detail={"cancelled": True, "reason": (reason or "").strip() or None}, action="dose.cancelled")
    session.commit()
    return dose
