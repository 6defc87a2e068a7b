"""§10 Heart: QTc thresholds on dose increases, an ECG before high doses, and the ECG schedule
(baseline, follow-up within 30 days, yearly, above 100 mg/day; Krantz et al. 2009)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from dispensing.rules.decisions import Decision, Outcome, Role, decision
from dispensing.rules.history import EcgResult, PatientHistory
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import EcgCheckOn, RuleSet


def latest_ecg(ecgs: Iterable[EcgResult], on_or_before: date | None = None) -> EcgResult | None:
    eligible = [e for e in ecgs if on_or_before is None or e.taken_on <= on_or_before]
    return max(eligible, key=lambda e: e.taken_on, default=None)


def check_qtc_for_increase(
    rule_set: RuleSet, ecgs: Iterable[EcgResult], today: date
) -> list[Decision]:
    """For a dose increase, from the latest ECG: QTc 450–500 ms WARN; > 500 ms BLOCK until a
    physician reviews that ECG (the lift names the ECG)."""
    rules, messages, version = rule_set.core.cardiac, rule_set.messages, rule_set.core.version
    ecg = latest_ecg(ecgs, today)
    if ecg is None or ecg.qtc_ms < rules.qtc_warn_from_ms:
        return []
    if ecg.qtc_ms > rules.qtc_block_above_ms:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.QTC_CRITICAL_INCREASE_BLOCKED,
                version,
                lift_role=Role.PHYSICIAN,
                subject=f"ecg:{ecg.id or ecg.taken_on.isoformat()}",
                qtc_ms=ecg.qtc_ms,
                taken_on=ecg.taken_on,
                threshold_ms=rules.qtc_block_above_ms,
            )
        ]
    return [
        decision(
            messages,
            Outcome.WARN,
            Reason.QTC_ELEVATED_INCREASE,
            version,
            qtc_ms=ecg.qtc_ms,
            taken_on=ecg.taken_on,
        )
    ]


def has_recent_ecg(ecgs: Iterable[EcgResult], today: date, max_age_days: int) -> bool:
    return any(today - timedelta(days=max_age_days) <= e.taken_on <= today for e in ecgs)


def check_high_dose_ecg(
    rule_set: RuleSet, dose_mg: Decimal, is_increase: bool, ecgs: Iterable[EcgResult], today: date
) -> list[Decision]:
    """BLOCK an order above 100 mg/day without an ECG from the last 30 days. By default only an
    order that raises the dose is checked (table: ``high_dose_check_on``)."""
    rules = rule_set.core.cardiac
    if dose_mg <= rules.high_dose_above_mg:
        return []
    if not is_increase and rules.high_dose_check_on is EcgCheckOn.INCREASE:
        return []
    if has_recent_ecg(ecgs, today, rules.high_dose_ecg_max_age_days):
        return []
    return [
        decision(
            rule_set.messages,
            Outcome.BLOCK,
            Reason.ECG_REQUIRED_HIGH_DOSE,
            rule_set.core.version,
            dose_mg=dose_mg,
            threshold_mg=rules.high_dose_above_mg,
            max_age_days=rules.high_dose_ecg_max_age_days,
        )
    ]


@dataclass(frozen=True)
class EcgDue:
    code: Reason
    table_version: str
    due_on: date
    overdue: bool
    message_vi: str
    message_en: str


def ecg_due(
    rule_set: RuleSet, history: PatientHistory, current_mg: Decimal | None, today: date
) -> tuple[EcgDue, ...]:
    """Return the ECGs outstanding on ``today``: baseline (no ECG at all; due at the start),
    follow-up (none after the start; due by start + 30 days), yearly (the latest is a year old),
    high dose (above 100 mg/day without an ECG from the last 30 days)."""
    rules, version = rule_set.core.cardiac, rule_set.core.version
    start = history.treatment_started_on
    ecgs = [e for e in history.ecgs if e.taken_on <= today]
    due: list[tuple[Reason, date, dict]] = []
    if not ecgs:  # once treatment has begun, any first ECG stands in for the baseline
        due.append((Reason.ECG_BASELINE_DUE, today if start is None else min(start, today), {}))
    if start is not None and today > start and not any(e.taken_on > start for e in ecgs):
        due.append(
            (Reason.ECG_FOLLOW_UP_DUE, start + timedelta(days=rules.follow_up_within_days), {})
        )
    last = latest_ecg(ecgs)
    if last is not None:
        yearly = last.taken_on + timedelta(days=rules.repeat_every_days)
        if yearly <= today:
            due.append((Reason.ECG_YEARLY_DUE, yearly, {}))
    if (
        current_mg is not None
        and current_mg > rules.high_dose_above_mg
        and not has_recent_ecg(ecgs, today, rules.high_dose_ecg_max_age_days)
    ):
        due.append((Reason.ECG_HIGH_DOSE_DUE, today, {"dose_mg": current_mg}))
    items = []
    for code, due_on, extra in due:
        vi, en = rule_set.messages.render(code, {"due_on": due_on, **extra})
        items.append(EcgDue(code, version, due_on, today > due_on, vi, en))
    return tuple(items)
