"""The loaded rule tables: typed, validated, immutable. Built by ``dispensing.rules.loading``.

Every table carries ``version`` ("<id>@<revision>", e.g. ``vn-3140@2010.1``); each decision
carries the version of the table that produced it, and ``RuleSet.version`` names all of them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from dispensing.rules.decisions import Outcome, Role
from dispensing.rules.history import Phase
from dispensing.rules.messages import MessageCatalog
from dispensing.rules.reasons import Reason

# A week as the take-home regimes count it (rolling or calendar, ``WeekKind``): a calendar fact,
# not a clinical number.
DAYS_PER_WEEK = 7

# Days of dose history loaded beyond what the selected tables' own parameters say the rules read
# (``RuleSet.dose_history_days``): a week of extra rows, cheap, against an off-by-one in a
# derivation. The property test in tests/unit/rules/test_dose_history_window.py checks the
# derivation without this margin.
DOSE_HISTORY_MARGIN_DAYS = 7


@dataclass(frozen=True)
class UnitRules:
    dose_resolution_mg: Decimal
    volume_resolution_ml: Decimal
    volume_rounding: str  # a decimal module rounding constant, e.g. "ROUND_HALF_EVEN"
    max_rounding_deviation_mg: Decimal


@dataclass(frozen=True)
class ValidityWindow:
    min_days: int
    max_days: int


@dataclass(frozen=True)
class OrderRules:
    windows: Mapping[Phase, ValidityWindow]
    max_parts: int


@dataclass(frozen=True)
class InductionRules:
    first_dose_min_mg: Decimal
    first_dose_caution_from_mg: Decimal
    first_dose_max_mg: Decimal
    day1_max_total_mg: Decimal
    no_increase_until_day: int
    topup_min_minutes: int
    topup_max_minutes: int
    topup_cows_min: int
    topup_cows_moderate_max: int
    topup_moderate_mg: Decimal
    topup_severe_mg: Decimal
    observation_min_minutes: int
    observation_max_minutes: int


@dataclass(frozen=True)
class TitrationRules:
    min_days_between_increases: int
    max_step_mg: Decimal
    high_dose_warn_above_mg: Decimal
    ceiling_mg: Decimal


class EcgCheckOn(enum.StrEnum):
    INCREASE = "increase"  # an order raising the dose above the threshold
    EVERY_ORDER = "every_order"  # every order above the threshold


@dataclass(frozen=True)
class CardiacRules:
    qtc_warn_from_ms: int
    qtc_block_above_ms: int
    high_dose_above_mg: Decimal
    high_dose_ecg_max_age_days: int
    high_dose_check_on: EcgCheckOn
    follow_up_within_days: int
    repeat_every_days: int


@dataclass(frozen=True)
class PreDoseRules:
    signs: tuple[str, ...]


@dataclass(frozen=True)
class VomitRules:
    max_minutes_after_dose: int
    min_percent: Decimal
    max_percent: Decimal


@dataclass(frozen=True)
class TaperRules:
    min_treatment_days: int
    max_step_percent: Decimal
    min_days_between_steps: int
    slow_below_mg: Decimal


@dataclass(frozen=True)
class DosingErrorRules:
    early_period_days: int
    excess_percent_after_early: Decimal
    observation_min_minutes: int


@dataclass(frozen=True)
class CoreTable:
    version: str
    units: UnitRules
    orders: OrderRules
    induction: InductionRules
    titration: TitrationRules
    predose: PreDoseRules
    vomiting: VomitRules
    taper: TaperRules
    cardiac: CardiacRules
    dosing_errors: DosingErrorRules


class SuggestionKind(enum.StrEnum):
    USUAL = "usual"  # the usual daily total
    PERCENT = "percent"  # percent of the usual dose, optionally capped and floored
    INDUCTION = "induction"  # the induction first-dose range of the core table


@dataclass(frozen=True)
class MissedDoseBand:
    from_days: int
    to_days: int | None  # None: and more
    outcome: Outcome
    reason: Reason
    lift_role: Role | None
    suggestion: SuggestionKind
    percent: Decimal | None = None
    cap_mg: Decimal | None = None
    floor_mg: Decimal | None = None

    def covers(self, days: int) -> bool:
        return self.from_days <= days and (self.to_days is None or days <= self.to_days)


@dataclass(frozen=True)
class MissedDoseTable:
    version: str
    bands: tuple[MissedDoseBand, ...]
    interruption_review_from_days: int

    def band_for(self, days: int) -> MissedDoseBand | None:
        return next((b for b in self.bands if b.covers(days)), None)


class WeekKind(enum.StrEnum):
    ROLLING = "rolling"  # any 7 consecutive days
    CALENDAR = "calendar"  # Monday to Sunday


@dataclass(frozen=True)
class TakeHomeBand:
    from_day: int
    to_day: int | None
    max_supply_days: int
    max_per_week: int | None
    max_consecutive_days: int | None

    def covers(self, day: int) -> bool:
        return self.from_day <= day and (self.to_day is None or day <= self.to_day)


@dataclass(frozen=True)
class TakeHomeCriteria:
    min_days_in_treatment: int | None = None
    min_days_on_current_dose: int | None = None
    max_missed_days: int | None = None
    missed_lookback_days: int | None = None


@dataclass(frozen=True)
class TakeHomeTable:
    version: str
    enabled: bool
    requires_commitment: bool
    week: WeekKind
    criteria: TakeHomeCriteria
    bands: tuple[TakeHomeBand, ...]

    def band_for(self, treatment_day: int) -> TakeHomeBand | None:
        return next((b for b in self.bands if b.covers(treatment_day)), None)

    @property
    def dose_history_days(self) -> int | None:
        """How many days before today ``evaluate_take_home`` reads dose records, from this
        table's own parameters (no margin); None: all of them.

        - disabled: nothing (the request is refused before any history is read);
        - recent missed days: ``criteria.missed_lookback_days`` (days today − lookback … today − 1);
        - per-week limit: the weeks touching a requested day (requests start today or later), so
          back to today − (DAYS_PER_WEEK − 1), rolling or calendar;
        - consecutive-day limit: the run of take-home days through the request is walked back
          without bound (its length is shown to the user), so the whole history.
        """
        if not self.enabled:
            return 0
        if any(band.max_consecutive_days is not None for band in self.bands):
            return None
        days = 0
        if any(band.max_per_week is not None for band in self.bands):
            days = DAYS_PER_WEEK - 1
        criteria = self.criteria
        if criteria.max_missed_days is not None and criteria.missed_lookback_days is not None:
            days = max(days, criteria.missed_lookback_days)
        return days


@dataclass(frozen=True)
class TitrationCapBand:
    from_day: int
    to_day: int | None
    cap_mg: Decimal

    def covers(self, day: int) -> bool:
        return self.from_day <= day and (self.to_day is None or day <= self.to_day)


@dataclass(frozen=True)
class TitrationCapTable:
    version: str
    window_days: int
    bands: tuple[TitrationCapBand, ...]

    def cap_for(self, treatment_day: int) -> Decimal:
        return next(b.cap_mg for b in self.bands if b.covers(treatment_day))


class DrugEffect(enum.StrEnum):
    LOWERS_METHADONE = "lowers_methadone"  # inducers: efavirenz, nevirapine, rifampicin…
    RAISES_METHADONE = "raises_methadone"  # inhibitors: fluconazole, fluvoxamine…


@dataclass(frozen=True)
class InteractingDrug:
    name: str
    aliases: tuple[str, ...]
    effect: DrugEffect


@dataclass(frozen=True)
class InteractionTable:
    version: str
    watch_days: int
    withdrawal_from_day: int
    withdrawal_to_day: int
    drugs: tuple[InteractingDrug, ...]

    def find(self, name: str) -> InteractingDrug | None:
        """Return the drug named ``name`` (or one of its aliases), case and spacing ignored."""
        wanted = " ".join(name.split()).casefold()
        for drug in self.drugs:
            if wanted in {n.casefold() for n in (drug.name, *drug.aliases)}:
                return drug
        return None


@dataclass(frozen=True)
class RuleSelection:
    """Which table of each kind a clinic uses (file names without ``.toml``)."""

    core: str = "vn-3140"
    missed_dose: str = "australia-2003"
    take_home: str = "disabled"
    titration_cap: str = "vn-3140"
    interactions: str = "default"


@dataclass(frozen=True)
class RuleSet:
    core: CoreTable
    missed_dose: MissedDoseTable
    take_home: TakeHomeTable
    titration_cap: TitrationCapTable
    interactions: InteractionTable
    messages: MessageCatalog

    @property
    def dose_history_days(self) -> int:
        """Days before today of dose records to load for ``evaluate_counter`` on today's dose under
        these tables (no take-home request), margin included. The loader returns the doses taken
        on ``today − days`` … ``today`` and, for a patient with none there, those of the last day
        dosed before (``dispensing.rules.history.windowed``).

        Today's dose reads no day before the last day dosed: the missed-day count and its BLOCK
        subject (last day dosed before today), the usual dose when no order is in force and none
        was signed (mg taken on the last day dosed), the first-dose observation in induction (a
        dose since the induction started, i.e. the last day dosed ≥ that day). The window holds
        the last day dosed whenever the patient was dosed in it and the fallback holds it
        otherwise, so 0 days are needed: only the margin is loaded. Orders, ECGs and the
        treatment start are loaded whole; the rolling titration cap, taper spacing, the
        dosing-error first weeks and the time-in-treatment bands read orders and dates, not doses.
        ``evaluate_order`` also reads the mg taken the day before an induction order starts:
        ``dispensing.rules.engine.order_dose_history_days``.
        """
        return DOSE_HISTORY_MARGIN_DAYS

    @property
    def take_home_dose_history_days(self) -> int | None:
        """As ``dose_history_days`` for a counter evaluation with a take-home request: what the
        take-home table reads (``TakeHomeTable.dose_history_days``) plus the margin; None: the
        whole history (a consecutive-day limit)."""
        days = self.take_home.dose_history_days
        return None if days is None else max(days + DOSE_HISTORY_MARGIN_DAYS, self.dose_history_days)

    @property
    def version(self) -> str:
        """All table versions, e.g. to store on an order: "core=vn-3140@2010.1;…"."""
        return ";".join(
            f"{kind}={table.version}"
            for kind, table in (
                ("core", self.core),
                ("missed_dose", self.missed_dose),
                ("take_home", self.take_home),
                ("titration_cap", self.titration_cap),
                ("interactions", self.interactions),
                ("messages", self.messages),
            )
        )
