"""What the counter shows: today's worklist (who is due, dosed, still to come, blocked and why) and
the patient panel after a card scan or a search (photo, phase, planned mg and ml per part from the
pump's lot, missed days, flags, decisions, and the nurse's next allowed actions).

Reads only. The worklist evaluates every patient of the clinic with a fixed number of queries
(orders, doses, assessments… loaded for all patients at once, the rule engine run in memory).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import bindparam, exists, or_, select
from sqlalchemy.orm import Session

from dispensing import rules
from dispensing.clock import business_date, utcnow
from dispensing.counter.common import IN_FLIGHT, clinic_day, get_counter, require_counter
from dispensing.counter.medication import medication_orders_on
from dispensing.counter.pumps import PumpReadiness, pump_state, readiness_of
from dispensing.counter_rules import evaluate_loaded, latest_assessment
from dispensing.errors import NotFound
from dispensing.history import (
    build_history,
    dose_records_by_patient,
    patient_history,
    signed_order_rows,
    signed_orders,
)
from dispensing.models import (
    REGULAR_KINDS,
    Assessment,
    Clinic,
    Dose,
    DoseKind,
    DoseState,
    DoseVoid,
    EcgResult,
    MedicationOrder,
    Order,
    OrderKind,
    OrderStatus,
    Patient,
    PatientFlag,
    PatientPhoto,
    PatientStatus,
    Product,
    Role,
    User,
)
from dispensing.permissions import require_role, require_same_clinic

STAFF = (Role.NURSE, Role.PHYSICIAN, Role.PHARMACIST, Role.ADMIN)
# Blocks every patient has before the nurse's checklist: shown as "assessment needed", not "blocked".
BEFORE_ASSESSMENT = frozenset({rules.Reason.PREDOSE_CHECK_MISSING, rules.Reason.INDUCTION_COWS_MISSING})


class SlotStatus:
    TO_COME = "to_come"
    NEEDS_ASSESSMENT = "needs_assessment"
    BLOCKED = "blocked"
    IN_PROGRESS = "in_progress"
    UNKNOWN = "unknown"
    PARTIAL = "partial"
    DOSED = "dosed"


def slot_status(dose: Dose | None, blocked: bool, needs_assessment: bool) -> str:
    """The worklist status of one slot from the dose holding it (None: nothing yet)."""
    if dose is not None:
        if dose.state is DoseState.COMPLETED:
            return SlotStatus.DOSED
        if dose.state is DoseState.PARTIAL:
            return SlotStatus.PARTIAL
        if dose.state in IN_FLIGHT:
            return SlotStatus.IN_PROGRESS
        if dose.state is DoseState.UNKNOWN:
            return SlotStatus.UNKNOWN
    if blocked:
        return SlotStatus.BLOCKED
    if needs_assessment:
        return SlotStatus.NEEDS_ASSESSMENT
    return SlotStatus.TO_COME


SlotKey = tuple[int, int | None, int | None]


def _slot_holders(doses: Iterable[Dose]) -> dict[SlotKey, Dose]:
    """{(patient, product or None for methadone, part): the regular dose holding the slot} among
    one day's doses (a failed one only when nothing else was tried after it)."""
    holders: dict[SlotKey, Dose] = {}
    for dose in sorted(doses, key=lambda d: d.id):
        if dose.kind not in REGULAR_KINDS:
            continue
        key = (dose.patient_id, dose.product_id if dose.medication_order_id else None, dose.part_no)
        current = holders.get(key)
        if current is None or current.state is DoseState.FAILED:
            holders[key] = dose
    return holders


def _outcome_codes(evaluation: rules.CounterEvaluation) -> tuple[bool, bool, tuple[str, ...]]:
    """(blocked, needs assessment, reason codes worth showing) of an evaluation."""
    blocks = [d for d in evaluation.decisions if d.outcome is rules.Outcome.BLOCK]
    real = [d for d in blocks if d.code not in BEFORE_ASSESSMENT]
    shown = [d.code.value for d in evaluation.decisions if d.outcome is not rules.Outcome.ALLOW]
    return bool(real), bool(blocks) and not real, tuple(shown)


# ---------------------------------------------------------------------------------------------
# Worklist


@dataclass(frozen=True)
class WorklistRow:
    patient_id: int
    patient_code: str
    patient_name: str
    what: str  # "methadone" or "medication"
    part_no: int
    status: str
    reasons: tuple[str, ...] = ()
    mg: Decimal | None = None
    units: Decimal | None = None
    product_name: str | None = None
    phase: str | None = None
    order_id: int | None = None
    medication_order_id: int | None = None
    not_before: str | None = None
    dose_id: int | None = None
    dose_state: str | None = None
    counter_id: int | None = None
    missed_days: int = 0


@dataclass(frozen=True)
class Worklist:
    day: date
    counter_id: int | None
    rows: tuple[WorklistRow, ...]
    counts: dict[str, int] = field(default_factory=dict)


def worklist(session: Session, actor: User, rule_set: rules.RuleSet, *, day: date | None = None,
             counter_id: int | None = None, now: datetime | None = None) -> Worklist:
    """Return the clinic's worklist for ``day`` (default today): one row per order part (and per
    unit-dose administration) of every patient with an order in force — dosed, in progress,
    unknown, still to come, waiting for the pre-dose check, or blocked with the reason codes. With
    ``counter_id``, the doses given at other counters are left out of the dosed rows.
    A fixed number of queries whatever the number of patients."""
    require_role(actor, *STAFF)
    now = now or utcnow()
    clinic, today = clinic_day(session, actor.clinic_id, now)
    day = day or today
    if counter_id is not None:
        get_counter(session, clinic.id, counter_id)
    # Plain rows (no ORM entities) for the whole clinic: the rules and the rows read only columns.
    connection = session.connection()
    patients = {p.id: p for p in connection.execute(
        select(Patient.id, Patient.code, Patient.full_name, Patient.treatment_start_date,
               Patient.take_home_commitment_on)
        .where(Patient.clinic_id == clinic.id, Patient.status == PatientStatus.ACTIVE))}
    orders = signed_order_rows(session, clinic.id)
    medications = medication_orders_on(session, list(patients), day)
    products = {p.id: p for p in session.scalars(
        select(Product).where(Product.id.in_({m.product_id for m in medications})))} if medications else {}
    ids = sorted(set(orders) | {m.patient_id for m in medications})
    todays = connection.execute(
        select(Dose.id, Dose.kind, Dose.state, Dose.patient_id, Dose.product_id, Dose.medication_order_id,
               Dose.part_no, Dose.counter_id)
        .where(Dose.clinic_id == clinic.id, Dose.business_date == day)).all()
    holders = _slot_holders(todays)
    assessments = {}
    for assessment in connection.execute(
        select(Assessment.id, Assessment.patient_id, Assessment.assessed_at, Assessment.drowsy,
               Assessment.slurred_speech, Assessment.pinpoint_pupils, Assessment.alcohol_smell,
               Assessment.unsteady_gait, Assessment.cows)
        .where(Assessment.clinic_id == clinic.id, Assessment.business_date == day)
        .order_by(Assessment.assessed_at, Assessment.id)
    ):
        assessments[assessment.patient_id] = assessment
    history_ids = [pid for pid in ids if pid in orders]
    doses = dose_records_by_patient(session, history_ids, day, days=rule_set.dose_history_days)
    ecgs: dict[int, list] = defaultdict(list)
    if history_ids:
        for ecg in connection.execute(select(EcgResult.id, EcgResult.patient_id, EcgResult.taken_on,
                                             EcgResult.qtc_ms).where(EcgResult.patient_id.in_(history_ids))):
            ecgs[ecg.patient_id].append(ecg)

    rows: list[WorklistRow] = []
    for patient_id in history_ids:
        patient = patients[patient_id]
        history = build_history(patient, orders[patient_id], doses[patient_id], ecgs[patient_id])
        evaluation, order = evaluate_loaded(rule_set, history, orders[patient_id], day, now,
                                            assessment=assessments.get(patient_id))
        if order is None:
            continue
        blocked, needs_assessment, codes = _outcome_codes(evaluation)
        for part in order.parts:
            held = holders.get((patient_id, None, part.part_no))
            rows.append(WorklistRow(
                patient_id=patient_id, patient_code=patient.code, patient_name=patient.full_name, what="methadone",
                part_no=part.part_no, status=slot_status(held, blocked, needs_assessment), reasons=codes,
                mg=part.dose_mg, phase=order.phase.value if order.phase else None, order_id=order.id,
                not_before=part.not_before, dose_id=held.id if held else None,
                dose_state=held.state.value if held else None, counter_id=held.counter_id if held else None,
                missed_days=evaluation.missed_days,
            ))
    for medication in medications:
        patient = patients[medication.patient_id]
        product = products[medication.product_id]
        for number in range(1, medication.administrations_per_day + 1):
            held = holders.get((patient.id, product.id, number))
            rows.append(WorklistRow(
                patient_id=patient.id, patient_code=patient.code, patient_name=patient.full_name,
                what="medication", part_no=number, status=slot_status(held, False, False),
                units=medication.units_per_administration, product_name=product.name,
                medication_order_id=medication.id, dose_id=held.id if held else None,
                dose_state=held.state.value if held else None, counter_id=held.counter_id if held else None,
            ))
    if counter_id is not None:
        rows = [row for row in rows if row.counter_id in (None, counter_id) or row.status != SlotStatus.DOSED]
    rows.sort(key=lambda row: (row.patient_code, row.what != "methadone", row.part_no))
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.status] += 1
    return Worklist(day, counter_id, tuple(rows), dict(counts))


# ---------------------------------------------------------------------------------------------
# Patient panel


@dataclass(frozen=True)
class PartView:
    part_no: int
    mg: Decimal
    ml: Decimal | None
    not_before: str | None
    status: str
    dose: Dose | None


@dataclass(frozen=True)
class MedicationDue:
    order: MedicationOrder
    product: Product
    administrations: tuple[tuple[int, Dose | None], ...]


@dataclass(frozen=True)
class Panel:
    patient: Patient
    day: date
    order: Order | None
    evaluation: rules.CounterEvaluation
    parts: tuple[PartView, ...]
    doses: tuple[Dose, ...]  # today's doses, and doses of earlier days still UNKNOWN
    voided: frozenset[int]
    assessment: Assessment | None
    pump: PumpReadiness | None
    flags: tuple[PatientFlag, ...]
    medications: tuple[MedicationDue, ...]
    replacements: tuple[Order, ...]  # signed replacement orders for today not given yet
    has_photo: bool
    take_home_possible: bool
    actions: tuple[dict, ...]


def find_by_card(session: Session, actor: User, card_barcode: str) -> Patient:
    """Return the patient whose card carries ``card_barcode``. Raises NotFound(CARD_UNKNOWN)."""
    require_role(actor, *STAFF)
    patient = session.scalar(select(Patient).where(Patient.card_barcode == card_barcode.strip().upper()))
    if patient is None or patient.clinic_id != actor.clinic_id:
        raise NotFound("card", code="CARD_UNKNOWN")
    return patient


_PATIENT_CLINIC = (
    select(Patient, Clinic, exists().where(PatientPhoto.patient_id == Patient.id).correlate(Patient))
    .join(Clinic, Clinic.id == Patient.clinic_id)
    .where(Patient.id == bindparam("patient_id"))
)


def patient_panel(session: Session, actor: User, rule_set: rules.RuleSet, patient_id: int, *,
                  counter_id: int | None = None, now: datetime | None = None) -> Panel:
    """Return everything the counter shows for a patient today; with ``counter_id`` the planned
    ml come from the lot of the bottle on that counter's pump. Raises NotFound, PermissionDenied."""
    require_role(actor, *STAFF)
    now = now or utcnow()
    # get_patient, the clinic and whether a photo exists: one statement.
    row = session.execute(_PATIENT_CLINIC, {"patient_id": patient_id}).first()
    if row is None:
        raise NotFound("patient", code="PATIENT_NOT_FOUND")
    patient, clinic, has_photo = row
    require_same_clinic(actor, patient.clinic_id)
    day = business_date(now, clinic.timezone)
    pump = None
    if counter_id is not None:
        # The counter and its pump in one read (get_counter's refusals, then pump_readiness).
        state = pump_state(session, counter_id, now)
        require_counter(state.counter, clinic.id)
        pump = readiness_of(state.counter, state, now, day)
    assessment = latest_assessment(session, patient.id, day)
    orders = signed_orders(session, patient.id)
    evaluation, order = evaluate_loaded(
        rule_set, patient_history(session, patient, day, orders=orders, days=rule_set.dose_history_days),
        orders, day, now,
        lot=pump.lot if pump is not None else None, assessment=assessment,
        device_resolution_ml=pump.resolution_ml if pump is not None else None)
    doses = tuple(session.scalars(
        select(Dose).where(Dose.patient_id == patient.id,
                           or_(Dose.business_date == day, Dose.state == DoseState.UNKNOWN))
        .order_by(Dose.id)
    ))
    voided = frozenset(session.scalars(
        select(DoseVoid.dose_id).where(DoseVoid.dose_id.in_([d.id for d in doses]))) if doses else ())
    holders = _slot_holders(d for d in doses if d.business_date == day)
    blocked, needs_assessment, _codes = _outcome_codes(evaluation)
    parts = []
    if order is not None:
        volumes = {p.number: p.volume.volume_ml if p.volume else None for p in evaluation.planned_parts}
        for part in order.parts:
            held = holders.get((patient.id, None, part.part_no))
            parts.append(PartView(part.part_no, part.dose_mg, volumes.get(part.part_no), part.not_before,
                                  slot_status(held, blocked, needs_assessment), held))
    flags = tuple(session.scalars(
        select(PatientFlag).where(PatientFlag.patient_id == patient.id, PatientFlag.starts_on <= day,
                                  or_(PatientFlag.ends_on.is_(None), PatientFlag.ends_on >= day))
    ))
    medications = []
    for medication in medication_orders_on(session, [patient.id], day):
        product = session.get(Product, medication.product_id)
        given = {d.part_no: d for d in doses if d.medication_order_id == medication.id
                 and d.business_date == day and d.state is not DoseState.FAILED}
        medications.append(MedicationDue(medication, product, tuple(
            (n, given.get(n)) for n in range(1, medication.administrations_per_day + 1))))
    take_home_possible = bool(clinic.take_home_enabled and order is not None and order.take_home_plan)
    replacements = tuple(replacement_orders_due(session, orders, day))
    panel = Panel(patient, day, order, evaluation, tuple(parts), doses, voided, assessment, pump, flags,
                  tuple(medications), replacements, has_photo, take_home_possible, ())
    return Panel(**{**panel.__dict__, "actions": next_actions(panel, actor)})


def next_actions(panel: Panel, actor: User) -> tuple[dict, ...]:
    """What the signed-in user may do next for this patient, as the screen offers it."""
    found: list[dict] = []
    nurse = actor.has_role(Role.NURSE)
    physician = actor.has_role(Role.PHYSICIAN)
    if panel.patient.status is not PatientStatus.ACTIVE:
        return ()
    if nurse or physician:
        found.append({"action": "record_assessment"})
    pump_ready = panel.pump is not None and panel.pump.ready
    if nurse and panel.order is not None and pump_ready:
        warns = [d for d in panel.evaluation.decisions if d.outcome is rules.Outcome.WARN]
        for part in panel.parts:
            if part.status in (SlotStatus.TO_COME,):
                found.append({"action": "authorize", "part_no": part.part_no,
                              "acknowledge": [d.code.value for d in warns],
                              "reason_required": [d.code.value for d in warns if d.needs_reason]})
    for dose in panel.doses:
        if dose.id in panel.voided:
            continue
        if nurse and dose.state is DoseState.UNKNOWN:
            found.append({"action": "resolve_unknown", "dose_id": dose.id})
        if nurse and dose.state is DoseState.REQUESTED:
            found.append({"action": "cancel", "dose_id": dose.id})
        if dose.business_date != panel.day:
            continue
        if nurse and pump_ready and dose.state is DoseState.PARTIAL and dose.kind is not DoseKind.COMPLETION:
            found.append({"action": "complete_partial", "dose_id": dose.id})
        if dose.state in (DoseState.COMPLETED, DoseState.PARTIAL):
            if (nurse or physician) and dose.kind in (DoseKind.OBSERVED, DoseKind.REPLACEMENT, DoseKind.COMPLETION) \
                    and dose.order_id is not None:
                found.append({"action": "record_vomit", "dose_id": dose.id})
            if physician and dose.order_id is not None:
                found.append({"action": "order_replacement", "dose_id": dose.id})
        if (nurse or physician) and dose.state in (DoseState.COMPLETED, DoseState.PARTIAL, DoseState.FAILED):
            found.append({"action": "void", "dose_id": dose.id})
    if nurse and pump_ready:
        for order in panel.replacements:
            found.append({"action": "authorize_replacement", "order_id": order.id})
    if nurse and pump_ready and panel.take_home_possible:
        found.append({"action": "prepare_take_home"})
    if nurse:
        for due in panel.medications:
            for number, dose in due.administrations:
                if dose is None:
                    found.append({"action": "unit_dose", "medication_order_id": due.order.id,
                                  "administration_no": number})
    return tuple(found)


def replacement_orders_due(session: Session, orders: Iterable[Order], day: date) -> list[Order]:
    """Of a patient's signed orders, the replacement orders for ``day`` whose dose has not been
    given (or failed)."""
    due = [o for o in orders if o.kind is OrderKind.REPLACEMENT and o.status is OrderStatus.SIGNED
           and o.valid_from <= day and (o.valid_until is None or day <= o.valid_until)]
    if not due:
        return []
    given = set(session.scalars(select(Dose.order_id).where(
        Dose.order_id.in_([o.id for o in due]), Dose.kind == DoseKind.REPLACEMENT,
        Dose.state != DoseState.FAILED)))
    return [order for order in due if order.id not in given]
