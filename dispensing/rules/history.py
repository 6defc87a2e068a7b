"""Plain inputs of the engine (what services read from the database) and what is derived from them.

Enum values equal those of the application models (``dispensing.models``), which the engine does
not import: it stays free of SQLAlchemy.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal


class Phase(enum.StrEnum):
    INDUCTION = "induction"  # khởi liều / dò liều
    TITRATION = "titration"  # điều chỉnh liều
    MAINTENANCE = "maintenance"  # liều duy trì
    TAPER = "taper"  # giảm liều tiến tới ngừng


class MedicationChangeKind(enum.StrEnum):
    STARTED = "started"
    STOPPED = "stopped"


class DoseKind(enum.StrEnum):
    OBSERVED = "observed"
    TAKE_HOME = "take_home"
    REPLACEMENT = "replacement"
    COMPLETION = "completion"


@dataclass(frozen=True)
class Order:
    """A dosing order (y lệnh), signed or proposed. ``parts`` split the daily total (chia liều)."""

    phase: Phase
    daily_total_mg: Decimal
    parts: tuple[Decimal, ...]
    valid_from: date
    valid_until: date | None
    id: str | None = None
    signed_by: str | None = None
    cosigned_by: str | None = None

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)


@dataclass(frozen=True)
class DoseRecord:
    """One administration the patient actually took (completed or partial delivery).

    A take-home dose is recorded on each day it covers. A dose later vomited still counts as taken.
    """

    on: date
    kind: DoseKind
    mg: Decimal
    vomited: bool = False


@dataclass(frozen=True)
class EcgResult:
    taken_on: date
    qtc_ms: int
    id: str | None = None


class ChecklistSign(enum.StrEnum):
    """The pre-dose checklist questions; each is a boolean of ``PreDoseAssessment``."""

    DROWSY = "drowsy"
    SLURRED_SPEECH = "slurred_speech"
    PINPOINT_PUPILS = "pinpoint_pupils"
    ALCOHOL_SMELL = "alcohol_smell"
    UNSTEADY_GAIT = "unsteady_gait"


CHECKLIST_SIGNS = tuple(sign.value for sign in ChecklistSign)


@dataclass(frozen=True)
class PreDoseAssessment:
    """The nurse's checklist before a dose; the COWS score is recorded during induction."""

    id: str
    assessed_at: datetime
    drowsy: bool = False
    slurred_speech: bool = False
    pinpoint_pupils: bool = False
    alcohol_smell: bool = False
    unsteady_gait: bool = False
    cows: int | None = None

    def positive_signs(self, signs: Iterable[str]) -> tuple[ChecklistSign, ...]:
        """Return those of ``signs`` answered yes, in the order given."""
        return tuple(ChecklistSign(sign) for sign in signs if getattr(self, sign))


@dataclass(frozen=True)
class Lot:
    code: str
    concentration_mg_per_ml: Decimal | None
    concentration_verified: bool


@dataclass(frozen=True)
class PatientHistory:
    """What the rules need to know about a patient.

    ``orders`` are the signed orders, oldest signature first (superseded ones included);
    ``doses`` the doses taken (any order), ``ecgs`` the ECG results.
    """

    treatment_started_on: date | None
    orders: tuple[Order, ...] = ()
    doses: tuple[DoseRecord, ...] = ()
    ecgs: tuple[EcgResult, ...] = ()
    take_home_commitment_signed: bool = False


@dataclass(frozen=True)
class DoseChange:
    on: date
    from_mg: Decimal
    to_mg: Decimal
    phase: Phase

    @property
    def increase(self) -> bool:
        return self.to_mg > self.from_mg

    @property
    def decrease(self) -> bool:
        return self.to_mg < self.from_mg


def _chronological(orders: Iterable[Order], excluding: Order | None = None) -> list[Order]:
    """Orders by start date; among equal start dates the later signed one comes last."""
    kept = [
        o
        for o in orders
        if excluding is None or not (o == excluding or (o.id is not None and o.id == excluding.id))
    ]
    return [o for _, o in sorted(enumerate(kept), key=lambda pair: (pair[1].valid_from, pair[0]))]


def previous_order(orders: Sequence[Order], proposal: Order) -> Order | None:
    """Return the order in force just before ``proposal`` starts (the one it changes)."""
    earlier = [o for o in _chronological(orders, proposal) if o.valid_from <= proposal.valid_from]
    return earlier[-1] if earlier else None


def dose_changes(
    orders: Sequence[Order], *, excluding: Order | None = None, until: date | None = None
) -> list[DoseChange]:
    """Return every change of daily total between consecutive orders starting by ``until``."""
    chain = [o for o in _chronological(orders, excluding) if until is None or o.valid_from <= until]
    return [
        DoseChange(after.valid_from, before.daily_total_mg, after.daily_total_mg, after.phase)
        for before, after in zip(chain, chain[1:], strict=False)
        if after.daily_total_mg != before.daily_total_mg
    ]


def induction_started_on(orders: Sequence[Order], current: Order) -> date:
    """Return the first day of the induction ``current`` belongs to.

    Walks back through induction orders that follow each other without a gap; any other phase
    or a gap starts a new induction (e.g. a restart after missed doses).
    """
    start = current.valid_from
    for order in reversed([o for o in _chronological(orders, current) if o.valid_from < start]):
        if order.phase is not Phase.INDUCTION:
            break
        if order.valid_until is not None and (start - order.valid_until).days > 1:
            break
        start = order.valid_from
    return start


def dosed_days(doses: Iterable[DoseRecord]) -> set[date]:
    return {d.on for d in doses}


def mg_taken_on(doses: Iterable[DoseRecord], day: date) -> Decimal:
    return sum((d.mg for d in doses if d.on == day), Decimal(0))


def days_between(start: date | None, end: date) -> int | None:
    """Whole days from ``start`` to ``end`` (0 on the start day); None without a start."""
    return None if start is None else (end - start).days


def windowed(doses: Iterable[DoseRecord], today: date, days: int | None) -> tuple[DoseRecord, ...]:
    """The doses of ``doses`` (one patient's) the record loader returns for ``today`` with a
    window of ``days`` (``RuleSet.dose_history_days``): those taken on ``today − days`` …
    ``today``, or, when there are none, those of the last day dosed before the window; with
    ``days`` None every dose up to ``today``. The contract of ``dispensing.history``'s loader,
    kept here so the rules' tests can check a window is enough."""
    doses = tuple(d for d in doses if d.on <= today)
    if days is None:
        return doses
    since = today - timedelta(days=days)
    inside = tuple(d for d in doses if d.on >= since)
    if inside:
        return inside
    last = max((d.on for d in doses), default=None)
    return tuple(d for d in doses if d.on == last)
