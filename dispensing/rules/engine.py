"""The two entry points services call: a physician signing an order (``evaluate_order``) and the
counter deciding for one patient on one day (``evaluate_counter``). Both compose the per-section
rule functions; neither reads anything but its arguments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from dispensing.rules.cardiac import EcgDue, check_high_dose_ecg, check_qtc_for_increase, ecg_due
from dispensing.rules.decisions import (
    Decision,
    Flag,
    Lift,
    Observation,
    Outcome,
    apply_lifts,
    decision,
    is_blocked,
    worst,
)
from dispensing.rules.history import (
    DoseChange,
    Lot,
    Order,
    PatientHistory,
    Phase,
    PreDoseAssessment,
    days_between,
    dose_changes,
    induction_started_on,
    mg_taken_on,
    previous_order,
)
from dispensing.rules.induction import (
    check_cows_recorded,
    check_day1_total,
    check_early_increase,
    check_first_dose,
    first_dose_observation,
)
from dispensing.rules.messages import DoseRange
from dispensing.rules.missed_doses import MissedDoseAssessment, assess_missed_doses
from dispensing.rules.orders import check_order, check_order_in_force
from dispensing.rules.predose import check_predose
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet
from dispensing.rules.take_home import TakeHomeRequest, evaluate_take_home
from dispensing.rules.taper import check_taper_step
from dispensing.rules.titration import check_dose_level, check_increase
from dispensing.rules.units import PlannedPart, plan_parts


def evaluate_order(
    rule_set: RuleSet, proposal: Order, history: PatientHistory, today: date
) -> list[Decision]:
    """Check an order a physician is about to sign against the previous order and the history.

    ``today`` is the signing day (ECG recency, time in treatment). Returns the decisions to show
    before signing; an empty list means nothing to say. Store ``rule_set.version`` with the order.
    """
    found = check_order(rule_set, proposal)
    previous = previous_order(history.orders, proposal)
    earlier = dose_changes(history.orders, excluding=proposal, until=proposal.valid_from)
    change = (
        DoseChange(
            proposal.valid_from, previous.daily_total_mg, proposal.daily_total_mg, proposal.phase
        )
        if previous is not None
        else None
    )

    if proposal.phase is Phase.INDUCTION:
        day = (proposal.valid_from - induction_started_on(history.orders, proposal)).days + 1
        if day == 1:
            found += check_first_dose(
                rule_set, proposal.parts[0] if proposal.parts else proposal.daily_total_mg
            )
            found += check_day1_total(rule_set, proposal.daily_total_mg)
        elif previous is not None:
            # Day 2 commonly repeats day 1's total including its top-up: compare with what was taken.
            taken = mg_taken_on(history.doses, proposal.valid_from - timedelta(days=1))
            found += check_early_increase(
                rule_set, day, proposal.daily_total_mg, max(previous.daily_total_mg, taken)
            )

    starts_or_raises = change is None or change.increase
    if change is not None and proposal.phase is Phase.TAPER:
        found += check_taper_step(
            rule_set, earlier, change, days_between(history.treatment_started_on, today)
        )
    elif change is not None and change.increase:
        found += check_increase(
            rule_set,
            earlier,
            change,
            days_between(history.treatment_started_on, proposal.valid_from),
        )
    if starts_or_raises and not (change is not None and proposal.phase is Phase.TAPER):
        found += check_qtc_for_increase(rule_set, history.ecgs, today)
    found += check_high_dose_ecg(
        rule_set, proposal.daily_total_mg, starts_or_raises, history.ecgs, today
    )
    found += check_dose_level(rule_set, proposal)
    return found


def order_dose_history_days(rule_set: RuleSet, proposal: Order, today: date) -> int:
    """Days before ``today`` of dose records ``evaluate_order`` reads for ``proposal`` (with the
    rule set's margin): the mg taken the day before an induction order starts (early-increase
    check), which lies before today when the order starts in the past."""
    before_start = (today - proposal.valid_from).days + 1 if proposal.phase is Phase.INDUCTION else 0
    return rule_set.dose_history_days + max(before_start, 0)


@dataclass(frozen=True)
class CounterContext:
    """What the counter knows when a patient's card is scanned.

    ``order``: the order in force (None when there is none); ``lot``: the lot the pump or bottle
    holds (None before one is chosen); ``assessment``: today's pre-dose assessment (None before it
    is recorded); ``lifts``: physician actions linked to earlier BLOCKs; ``take_home``: the
    take-home doses asked for today, if any; ``device_resolution_ml``: the pump's resolution.
    """

    today: date
    now: datetime
    history: PatientHistory
    order: Order | None
    lot: Lot | None = None
    assessment: PreDoseAssessment | None = None
    lifts: tuple[Lift, ...] = ()
    take_home: TakeHomeRequest | None = None
    device_resolution_ml: Decimal | None = None


@dataclass(frozen=True)
class CounterEvaluation:
    decisions: tuple[Decision, ...]  # about today's dose, lifts applied
    missed: MissedDoseAssessment
    planned_parts: tuple[PlannedPart, ...]
    take_home: tuple[Decision, ...]  # empty when no take-home was asked for
    after_dose: tuple[Observation, ...]  # to open once the dose is given
    flags: tuple[Flag, ...]
    ecg_due: tuple[EcgDue, ...]
    rule_set_version: str

    @property
    def outcome(self) -> Outcome:
        return worst(self.decisions)

    @property
    def blocked(self) -> bool:
        return is_blocked(self.decisions)

    @property
    def missed_days(self) -> int:
        return self.missed.missed_days

    @property
    def suggested(self) -> DoseRange | None:
        return self.missed.suggested


def _usual_dose(history: PatientHistory, order: Order | None) -> Decimal:
    """The daily total of the order in force, else of the latest order, else what was taken on
    the last day dosed (the base of the missed-dose suggestion)."""
    if order is not None:
        return order.daily_total_mg
    if history.orders:
        return max(enumerate(history.orders), key=lambda pair: (pair[1].valid_from, pair[0]))[
            1
        ].daily_total_mg
    last = max((d.on for d in history.doses), default=None)
    return mg_taken_on(history.doses, last) if last is not None else Decimal(0)


def evaluate_counter(rule_set: RuleSet, ctx: CounterContext) -> CounterEvaluation:
    """Decide for one patient on ``ctx.today``: order in force, lot, pre-dose check (and COWS in
    induction), missed days with the suggested dose, mg and ml per part, take-home if asked."""
    if ctx.now.tzinfo is None or ctx.now.utcoffset() is None:
        raise ValueError("naive datetime refused: pass a timezone-aware value")
    history, order = ctx.history, ctx.order
    decisions = check_order_in_force(rule_set, order, ctx.today)
    missed = assess_missed_doses(rule_set, history.doses, ctx.today, _usual_dose(history, order))
    if missed.decision is not None:
        decisions.append(missed.decision)
    predose = check_predose(rule_set, ctx.assessment)
    decisions += predose
    parts: tuple[PlannedPart, ...] = ()
    after_dose: tuple[Observation, ...] = ()
    if order is not None:
        plan = plan_parts(rule_set, order, ctx.lot, ctx.device_resolution_ml)
        parts = plan.parts
        decisions += plan.decisions
        if order.phase is Phase.INDUCTION:
            decisions += check_cows_recorded(rule_set, ctx.assessment)
            started = induction_started_on(history.orders, order)
            if not any(d.on >= started for d in history.doses):
                after_dose = (first_dose_observation(rule_set, ctx.now),)
    decisions = apply_lifts(decisions, ctx.lifts)

    take_home: list[Decision] = []
    if ctx.take_home is not None and order is None:
        take_home = [
            decision(
                rule_set.messages,
                Outcome.BLOCK,
                Reason.TAKE_HOME_DOSE_BLOCKED,
                rule_set.take_home.version,
            )
        ]
    elif ctx.take_home is not None and order is not None:
        take_home = evaluate_take_home(
            rule_set,
            ctx.take_home,
            order=order,
            history=history,
            today=ctx.today,
            predose_blocked=any(d.code is Reason.PREDOSE_CHECK_POSITIVE for d in predose),
            dose_blocked=is_blocked(decisions),
        )
    return CounterEvaluation(
        decisions=tuple(decisions),
        missed=missed,
        planned_parts=parts,
        take_home=tuple(take_home),
        after_dose=after_dose,
        flags=missed.flags,
        ecg_due=ecg_due(rule_set, history, order.daily_total_mg if order else None, ctx.today),
        rule_set_version=rule_set.version,
    )
