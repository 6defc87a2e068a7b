"""Small builders so each clinical scenario reads as one line."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from dispensing.rules import (
    Decision,
    DoseKind,
    DoseRecord,
    EcgResult,
    Order,
    PatientHistory,
    Phase,
    PreDoseAssessment,
    RuleSelection,
    RuleSet,
    load_rule_set,
)

RULES_DIR = Path(__file__).resolve().parents[3] / "config" / "rules"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TODAY = date(2025, 6, 16)  # a Monday
D = Decimal


@functools.cache
def rules(**selection: str) -> RuleSet:
    """The shipped rule set, loaded once per selection."""
    return load_rule_set(RULES_DIR, RuleSelection(**selection))


def day(offset: int) -> date:
    """TODAY shifted by ``offset`` days."""
    return TODAY + timedelta(days=offset)


def at(on: date, hour: int = 8, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(on, time(hour, minute, second), tzinfo=TZ)


def order(
    phase: Phase,
    total: str | Decimal,
    start: date = TODAY,
    days: int | None = None,
    parts: Iterable[str] | None = None,
    **kw: object,
) -> Order:
    """An order of ``total`` mg from ``start`` for ``days`` days (default: the phase's longest)."""
    default_days = {Phase.INDUCTION: 1, Phase.TITRATION: 3, Phase.MAINTENANCE: 30, Phase.TAPER: 14}
    length = default_days[phase] if days is None else days
    total = D(total)
    split = tuple(D(p) for p in parts) if parts is not None else (total,)
    kw.setdefault("valid_until", start + timedelta(days=length - 1))
    return Order(phase, total, split, start, **kw)  # type: ignore[arg-type]


def taken(
    *days: date, mg: str = "60", kind: DoseKind = DoseKind.OBSERVED, vomited: bool = False
) -> tuple[DoseRecord, ...]:
    return tuple(DoseRecord(d, kind, D(mg), vomited) for d in days)


def every_day(
    first: date, last: date, mg: str = "60", kind: DoseKind = DoseKind.OBSERVED
) -> tuple[DoseRecord, ...]:
    return taken(
        *(first + timedelta(days=i) for i in range((last - first).days + 1)), mg=mg, kind=kind
    )


LONG_AGO = TODAY - timedelta(days=400)


def history(
    started: date | None = LONG_AGO,
    orders: Iterable[Order] = (),
    doses: Iterable[DoseRecord] = (),
    ecgs: Iterable[EcgResult] = (),
    commitment: bool = True,
) -> PatientHistory:
    return PatientHistory(started, tuple(orders), tuple(doses), tuple(ecgs), commitment)


def ecg(offset: int, qtc: int = 420, ecg_id: str | None = None) -> EcgResult:
    return EcgResult(day(offset), qtc, ecg_id)


def assessment(
    assessment_id: str = "a1", cows: int | None = None, **signs: bool
) -> PreDoseAssessment:
    return PreDoseAssessment(assessment_id, at(TODAY, 7, 30), cows=cows, **signs)


def codes(decisions: Iterable[Decision]) -> list[str]:
    return [d.code.value for d in decisions]


def only(decisions: Iterable[Decision], code: str) -> Decision:
    decisions = list(decisions)
    matching = [d for d in decisions if d.code == code]
    assert len(matching) == 1, f"expected one {code}, got {codes(decisions)}"
    return matching[0]
