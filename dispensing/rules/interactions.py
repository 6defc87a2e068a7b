"""§10 Interacting drugs (table ``interactions``): starting an inducer (or stopping an inhibitor)
lowers methadone levels, withdrawal expected around day 8–10: a physician task on day 8 and a
2-week watch flag. Stopping an inducer (or starting an inhibitor) raises levels, overdose risk:
a physician task due at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from dispensing.rules.decisions import Flag, PhysicianTask, flag, physician_task
from dispensing.rules.history import MedicationChangeKind
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import DrugEffect, InteractingDrug, RuleSet


@dataclass(frozen=True)
class MedicationChange:
    drug: str
    change: MedicationChangeKind
    on: date


@dataclass(frozen=True)
class InteractionOutcome:
    drug: InteractingDrug | None  # None: not an interacting drug, nothing to do
    tasks: tuple[PhysicianTask, ...]
    flags: tuple[Flag, ...]


def evaluate_medication_change(rule_set: RuleSet, change: MedicationChange) -> InteractionOutcome:
    table, messages = rule_set.interactions, rule_set.messages
    drug = table.find(change.drug)
    if drug is None:
        return InteractionOutcome(None, (), ())
    subject = f"medication:{drug.name}:{change.change.value}:{change.on.isoformat()}"
    started = change.change is MedicationChangeKind.STARTED
    lowers = (drug.effect is DrugEffect.LOWERS_METHADONE) == started
    if not lowers:
        task = physician_task(
            messages,
            Reason.INTERACTION_LEVELS_RAISED,
            table.version,
            change.on,
            subject,
            drug=drug.name,
            change=change.change,
        )
        return InteractionOutcome(drug, (task,), ())
    # Day 1 is the day of the change, so "day 8" is seven days later.
    task = physician_task(
        messages,
        Reason.INTERACTION_LEVELS_LOWERED,
        table.version,
        change.on + timedelta(days=table.withdrawal_from_day - 1),
        subject,
        drug=drug.name,
        change=change.change,
        from_day=table.withdrawal_from_day,
        to_day=table.withdrawal_to_day,
    )
    until = change.on + timedelta(days=table.watch_days - 1)
    watch = flag(
        messages,
        Reason.INTERACTION_WATCH,
        table.version,
        change.on,
        until,
        subject,
        drug=drug.name,
        until=until,
    )
    return InteractionOutcome(drug, (task,), (watch,))
