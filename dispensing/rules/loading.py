"""Reading and validating the rule tables in ``config/rules/``.

Layout: ``core/<id>.toml``, ``missed_dose/<id>.toml``, ``take_home/<id>.toml``,
``titration_cap/<id>.toml``, ``interactions/<id>.toml`` and ``messages.toml``. Each file opens with
``[table]`` (kind, id = the file name, version). A setting is ``key = { value = …, source = "…" }``;
a row of an array of tables (``[[bands]]``, ``[[drugs]]``) has plain values and one ``source``.
Decimal quantities are strings or integers, never TOML floats. Unknown keys are refused, so a typo
cannot silently fall back to a default.

Every problem raises ``RuleTableError`` naming the file, the key path and the problem; the
application refuses to start with that message.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import fields
from decimal import ROUND_DOWN, ROUND_HALF_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal
from pathlib import Path
from typing import Any, NoReturn

from dispensing.rules.decisions import Outcome, Role
from dispensing.rules.history import CHECKLIST_SIGNS, MedicationChangeKind, Phase
from dispensing.rules.messages import MessageCatalog
from dispensing.rules.reasons import PLACEHOLDERS, Reason
from dispensing.rules.tables import (
    CardiacRules,
    CoreTable,
    DosingErrorRules,
    DrugEffect,
    EcgCheckOn,
    InductionRules,
    InteractingDrug,
    InteractionTable,
    MissedDoseBand,
    MissedDoseTable,
    OrderRules,
    PreDoseRules,
    RuleSelection,
    RuleSet,
    SuggestionKind,
    TakeHomeBand,
    TakeHomeCriteria,
    TakeHomeTable,
    TaperRules,
    TitrationCapBand,
    TitrationCapTable,
    TitrationRules,
    UnitRules,
    ValidityWindow,
    VomitRules,
    WeekKind,
)

ROUNDING_MODES = (ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_HALF_DOWN, ROUND_DOWN, ROUND_UP)
MESSAGES_FILE = "messages.toml"
TABLE_KINDS = ("core", "missed_dose", "take_home", "titration_cap", "interactions")
MISSED_DOSE_REASONS = frozenset(
    {
        Reason.MISSED_DOSES_SHORT,
        Reason.MISSED_DOSES_REVIEW,
        Reason.MISSED_DOSES_SEE_PATIENT,
        Reason.MISSED_DOSES_RESTART_INDUCTION,
    }
)
_TABLE_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_MG_MAX = Decimal(1000)


class RuleTableError(Exception):
    """A rule table is missing or invalid. ``str(error)`` is "<file>: <key path>: <problem>"."""

    def __init__(self, file: Path | str, key: str, problem: str):
        super().__init__(f"{file}: {key}: {problem}")
        self.file = str(file)
        self.key = key
        self.problem = problem


# ---- reading one node of a TOML document ----------------------------------------------------------


class _Node:
    """A table of a TOML file being read; remembers which keys were read to refuse the others."""

    def __init__(self, file: Path, prefix: str, data: Any):
        self.file = file
        self.prefix = prefix
        if not isinstance(data, dict):
            self.fail(None, f"must be a table, got {_type_name(data)}")
        self.data: dict = data
        self.read: set[str] = set()

    def key(self, name: str | None) -> str:
        """The dotted key path of ``name`` in this node ("" for the document itself)."""
        if name is None:
            return self.prefix
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str | None, problem: str) -> NoReturn:
        raise RuleTableError(self.file, self.key(name) or "(top level)", problem)

    def has(self, name: str) -> bool:
        return name in self.data

    def sub(self, name: str) -> _Node:
        self.read.add(name)
        if name not in self.data:
            self.fail(name, "missing table")
        return _Node(self.file, self.key(name), self.data[name])

    def rows(self, name: str, *, required: bool = True) -> list[_Node]:
        self.read.add(name)
        if name not in self.data:
            if required:
                self.fail(name, "missing array of tables ([[" + name + "]])")
            return []
        items = self.data[name]
        if not isinstance(items, list) or not items:
            self.fail(name, "must be a non-empty array of tables ([[" + name + "]])")
        rows = [_Node(self.file, f"{self.key(name)}[{i}]", item) for i, item in enumerate(items)]
        for row in rows:
            row.plain("source", str)
        return rows

    def setting(
        self, name: str, kind: Callable[..., Any], *, required: bool = True, **limits: Any
    ) -> Any:
        """Read ``name = { value = …, source = "…" }``."""
        self.read.add(name)
        if name not in self.data:
            if required:
                self.fail(name, 'missing setting (expected { value = …, source = "…" })')
            return None
        if not isinstance(self.data[name], dict):
            self.fail(name, 'expected { value = …, source = "…" }: every value carries its source')
        node = _Node(self.file, self.key(name), self.data[name])
        value = node.plain("value", kind, **limits)
        node.plain("source", str)
        node.finish()
        return value

    def plain(
        self, name: str, kind: Callable[..., Any], *, required: bool = True, **limits: Any
    ) -> Any:
        """Read a plain value ``name = …`` converted by ``kind``."""
        self.read.add(name)
        if name not in self.data:
            if required:
                self.fail(name, "missing key")
            return None
        return _convert(self, name, self.data[name], kind, **limits)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            self.fail(
                unknown[0],
                "unknown key (misspelt? compare with the shipped table of this kind)",
            )


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "an array", bool: "a boolean", float: "a float"}.get(
        type(value), type(value).__name__
    )


def _convert(
    node: _Node,
    name: str,
    raw: Any,
    kind: Callable[..., Any],
    *,
    lo: Any = None,
    hi: Any = None,
    positive: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    if kind is Decimal:
        if isinstance(raw, float):
            node.fail(
                name, f'expected a decimal string such as "{raw}", got a TOML float (inexact)'
            )
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            node.fail(name, f"expected a decimal string, got {_type_name(raw)}")
        try:
            value: Any = Decimal(str(raw).strip())
        except ArithmeticError:
            node.fail(name, f"not a decimal number: {raw!r}")
        if not value.is_finite():
            node.fail(name, f"not a finite number: {raw!r}")
    elif kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            node.fail(name, f"expected an integer, got {_type_name(raw)}")
        value = raw
    elif kind is bool:
        if not isinstance(raw, bool):
            node.fail(name, f"expected true or false, got {_type_name(raw)}")
        value = raw
    elif kind is str:
        if not isinstance(raw, str):
            node.fail(name, f"expected a non-empty string, got {_type_name(raw)}")
        if not raw.strip():
            node.fail(name, "expected a non-empty string, got an empty string")
        value = raw
    elif kind is list:
        if not isinstance(raw, list) or not all(
            isinstance(item, str) and item.strip() for item in raw
        ):
            node.fail(name, "expected an array of non-empty strings")
        value = tuple(raw)
    else:  # an enum
        if not isinstance(raw, str):
            node.fail(name, f"expected a string, got {_type_name(raw)}")
        try:
            value = kind(raw)
        except ValueError:
            allowed = ", ".join(repr(member.value) for member in kind)
            node.fail(name, f"{raw!r} is not one of {allowed}")
    if choices is not None and value not in choices:
        node.fail(name, f"{value!r} is not one of {', '.join(choices)}")
    if positive and not value > 0:
        node.fail(name, f"out of range: {raw} must be greater than 0")
    if lo is not None and value < lo:
        node.fail(name, f"out of range: {raw} is below the minimum {lo}")
    if hi is not None and value > hi:
        node.fail(name, f"out of range: {raw} is above the maximum {hi}")
    return value


def _not_above(node: _Node, low_name: str, low: Any, high_name: str, high: Any) -> None:
    """Cross-field sanity: ``low`` ≤ ``high`` (e.g. a minimum not above its maximum)."""
    if low is not None and high is not None and low > high:
        node.fail(low_name, f"must not exceed {node.key(high_name)} ({low} > {high})")


def _read_file(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise RuleTableError(path, "(file)", "no such rule table file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleTableError(path, "(syntax)", f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise RuleTableError(path, "(file)", f"cannot read: {exc}") from None


def _open(path: Path, kind: str) -> tuple[_Node, str]:
    """Return the document's root node and its version string "<id>@<version>"."""
    root = _Node(path, "", _read_file(path))
    header = root.sub("table")
    header.plain("kind", str, choices=(kind,))
    table_id = header.plain("id", str)
    if table_id != path.stem:
        header.fail("id", f"{table_id!r} must equal the file name {path.stem!r}")
    version = header.plain("version", str)
    header.plain("title", str, required=False)
    header.finish()
    return root, f"{table_id}@{version}"


# ---- one loader per kind of table ------------------------------------------------------------------


def load_core(path: Path) -> CoreTable:
    root, version = _open(path, "core")
    mg = {"lo": Decimal(0), "hi": _MG_MAX}

    units_node = root.sub("units")
    units = UnitRules(
        dose_resolution_mg=units_node.setting(
            "dose_resolution_mg", Decimal, positive=True, hi=Decimal(10)
        ),
        volume_resolution_ml=units_node.setting(
            "volume_resolution_ml", Decimal, positive=True, hi=Decimal(10)
        ),
        volume_rounding=units_node.setting("volume_rounding", str, choices=ROUNDING_MODES),
        max_rounding_deviation_mg=units_node.setting("max_rounding_deviation_mg", Decimal, **mg),
    )
    units_node.finish()

    orders_node = root.sub("orders")
    windows = {}
    for phase in Phase:
        window_node = orders_node.sub(phase.value)
        window = ValidityWindow(
            min_days=window_node.setting("min_validity_days", int, lo=1, hi=366),
            max_days=window_node.setting("max_validity_days", int, lo=1, hi=366),
        )
        _not_above(
            window_node, "min_validity_days", window.min_days, "max_validity_days", window.max_days
        )
        window_node.finish()
        windows[phase] = window
    orders = OrderRules(
        windows=windows, max_parts=orders_node.setting("max_parts", int, lo=1, hi=3)
    )
    orders_node.finish()

    n = root.sub("induction")
    induction = InductionRules(
        first_dose_min_mg=n.setting("first_dose_min_mg", Decimal, **mg),
        first_dose_caution_from_mg=n.setting("first_dose_caution_from_mg", Decimal, **mg),
        first_dose_max_mg=n.setting("first_dose_max_mg", Decimal, positive=True, hi=_MG_MAX),
        day1_max_total_mg=n.setting("day1_max_total_mg", Decimal, positive=True, hi=_MG_MAX),
        no_increase_until_day=n.setting("no_increase_until_day", int, lo=1, hi=30),
        topup_min_minutes=n.setting("topup_min_minutes", int, lo=0, hi=1440),
        topup_max_minutes=n.setting("topup_max_minutes", int, lo=0, hi=1440),
        topup_cows_min=n.setting("topup_cows_min", int, lo=0, hi=48),
        topup_cows_moderate_max=n.setting("topup_cows_moderate_max", int, lo=0, hi=48),
        topup_moderate_mg=n.setting("topup_moderate_mg", Decimal, **mg),
        topup_severe_mg=n.setting("topup_severe_mg", Decimal, **mg),
        observation_min_minutes=n.setting("observation_min_minutes", int, lo=0, hi=1440),
        observation_max_minutes=n.setting("observation_max_minutes", int, lo=0, hi=1440),
    )
    _not_above(
        n,
        "first_dose_min_mg",
        induction.first_dose_min_mg,
        "first_dose_caution_from_mg",
        induction.first_dose_caution_from_mg,
    )
    _not_above(
        n,
        "first_dose_caution_from_mg",
        induction.first_dose_caution_from_mg,
        "first_dose_max_mg",
        induction.first_dose_max_mg,
    )
    _not_above(
        n,
        "first_dose_max_mg",
        induction.first_dose_max_mg,
        "day1_max_total_mg",
        induction.day1_max_total_mg,
    )
    _not_above(
        n,
        "topup_min_minutes",
        induction.topup_min_minutes,
        "topup_max_minutes",
        induction.topup_max_minutes,
    )
    _not_above(
        n,
        "topup_cows_min",
        induction.topup_cows_min,
        "topup_cows_moderate_max",
        induction.topup_cows_moderate_max,
    )
    _not_above(
        n,
        "topup_moderate_mg",
        induction.topup_moderate_mg,
        "topup_severe_mg",
        induction.topup_severe_mg,
    )
    _not_above(
        n,
        "observation_min_minutes",
        induction.observation_min_minutes,
        "observation_max_minutes",
        induction.observation_max_minutes,
    )
    n.finish()

    n = root.sub("titration")
    titration = TitrationRules(
        min_days_between_increases=n.setting("min_days_between_increases", int, lo=0, hi=60),
        max_step_mg=n.setting("max_step_mg", Decimal, positive=True, hi=_MG_MAX),
        high_dose_warn_above_mg=n.setting("high_dose_warn_above_mg", Decimal, **mg),
        ceiling_mg=n.setting("ceiling_mg", Decimal, positive=True, hi=_MG_MAX),
    )
    _not_above(
        n,
        "high_dose_warn_above_mg",
        titration.high_dose_warn_above_mg,
        "ceiling_mg",
        titration.ceiling_mg,
    )
    n.finish()

    n = root.sub("predose")
    signs = n.setting("signs", list)
    for sign in signs:
        if sign not in CHECKLIST_SIGNS:
            n.fail("signs", f"unknown checklist sign {sign!r}; known: {', '.join(CHECKLIST_SIGNS)}")
    if len(set(signs)) != len(signs):
        n.fail("signs", "a sign is listed twice")
    predose = PreDoseRules(signs=signs)
    n.finish()

    n = root.sub("vomiting")
    vomiting = VomitRules(
        max_minutes_after_dose=n.setting("max_minutes_after_dose", int, lo=0, hi=1440),
        min_percent=n.setting("min_percent", Decimal, lo=Decimal(0), hi=Decimal(100)),
        max_percent=n.setting("max_percent", Decimal, positive=True, hi=Decimal(100)),
    )
    _not_above(n, "min_percent", vomiting.min_percent, "max_percent", vomiting.max_percent)
    n.finish()

    n = root.sub("taper")
    taper = TaperRules(
        min_treatment_days=n.setting("min_treatment_days", int, lo=0, hi=3650),
        max_step_percent=n.setting("max_step_percent", Decimal, positive=True, hi=Decimal(100)),
        min_days_between_steps=n.setting("min_days_between_steps", int, lo=0, hi=365),
        slow_below_mg=n.setting("slow_below_mg", Decimal, **mg),
    )
    n.finish()

    n = root.sub("cardiac")
    cardiac = CardiacRules(
        qtc_warn_from_ms=n.setting("qtc_warn_from_ms", int, lo=300, hi=700),
        qtc_block_above_ms=n.setting("qtc_block_above_ms", int, lo=300, hi=700),
        high_dose_above_mg=n.setting("high_dose_above_mg", Decimal, **mg),
        high_dose_ecg_max_age_days=n.setting("high_dose_ecg_max_age_days", int, lo=0, hi=3650),
        high_dose_check_on=n.setting("high_dose_check_on", EcgCheckOn),
        follow_up_within_days=n.setting("follow_up_within_days", int, lo=1, hi=3650),
        repeat_every_days=n.setting("repeat_every_days", int, lo=1, hi=3650),
    )
    _not_above(
        n,
        "qtc_warn_from_ms",
        cardiac.qtc_warn_from_ms,
        "qtc_block_above_ms",
        cardiac.qtc_block_above_ms,
    )
    if cardiac.high_dose_above_mg > titration.ceiling_mg:
        n.fail(
            "high_dose_above_mg",
            f"must not exceed titration.ceiling_mg ({cardiac.high_dose_above_mg} > {titration.ceiling_mg})",
        )
    n.finish()

    n = root.sub("dosing_errors")
    dosing_errors = DosingErrorRules(
        early_period_days=n.setting("early_period_days", int, lo=0, hi=365),
        excess_percent_after_early=n.setting(
            "excess_percent_after_early", Decimal, lo=Decimal(0), hi=Decimal(1000)
        ),
        observation_min_minutes=n.setting("observation_min_minutes", int, lo=0, hi=1440),
    )
    n.finish()
    root.finish()
    return CoreTable(
        version=version,
        units=units,
        orders=orders,
        induction=induction,
        titration=titration,
        predose=predose,
        vomiting=vomiting,
        taper=taper,
        cardiac=cardiac,
        dosing_errors=dosing_errors,
    )


def _check_bands(
    rows: list[_Node],
    starts: list[int],
    ends: list[int | None],
    first: int,
    start_key: str,
    end_key: str,
) -> None:
    """Bands must start at ``first``, follow each other without gap or overlap, and end open."""
    for i, (row, start, end) in enumerate(zip(rows, starts, ends, strict=True)):
        expected = first if i == 0 else ends[i - 1] + 1  # type: ignore[operator]
        if start != expected:
            row.fail(
                start_key,
                f"must be {expected} (bands start at {first} and follow each other without gap or overlap)",
            )
        if end is not None and end < start:
            row.fail(end_key, f"must not be below {start_key} ({end} < {start})")
        last = i == len(rows) - 1
        if end is None and not last:
            row.fail(end_key, "missing: only the last band may be open-ended")
        if end is not None and last:
            row.fail(end_key, "the last band must be open-ended (remove this key)")


def load_missed_dose(path: Path) -> MissedDoseTable:
    root, version = _open(path, "missed_dose")
    settings = root.sub("settings")
    interruption = settings.setting("interruption_review_from_days", int, lo=1, hi=3650)
    settings.finish()
    rows = root.rows("bands")
    bands = []
    for row in rows:
        outcome = row.plain("outcome", Outcome)
        reason = row.plain("reason", Reason)
        if reason not in MISSED_DOSE_REASONS:
            row.fail(
                "reason",
                f"{reason} is not a missed-dose reason ({', '.join(sorted(MISSED_DOSE_REASONS))})",
            )
        lift_role = row.plain("lift_role", Role, required=False)
        if lift_role is not None and outcome is not Outcome.BLOCK:
            row.fail("lift_role", "only a BLOCK band can name a lifting role")
        suggestion = row.plain("suggestion", SuggestionKind)
        percent = row.plain("percent", Decimal, required=False, positive=True, hi=Decimal(100))
        cap = row.plain("cap_mg", Decimal, required=False, positive=True, hi=_MG_MAX)
        floor = row.plain("floor_mg", Decimal, required=False, positive=True, hi=_MG_MAX)
        if suggestion is SuggestionKind.PERCENT and percent is None:
            row.fail("percent", 'missing key (required when suggestion = "percent")')
        if suggestion is not SuggestionKind.PERCENT:
            for name, value in (("percent", percent), ("cap_mg", cap), ("floor_mg", floor)):
                if value is not None:
                    row.fail(name, 'only allowed when suggestion = "percent"')
        _not_above(row, "floor_mg", floor, "cap_mg", cap)
        bands.append(
            MissedDoseBand(
                from_days=row.plain("from_days", int, lo=1, hi=3650),
                to_days=row.plain("to_days", int, required=False, lo=1, hi=3650),
                outcome=outcome,
                reason=reason,
                lift_role=lift_role,
                suggestion=suggestion,
                percent=percent,
                cap_mg=cap,
                floor_mg=floor,
            )
        )
        row.finish()
    _check_bands(
        rows, [b.from_days for b in bands], [b.to_days for b in bands], 1, "from_days", "to_days"
    )
    for row, before, band in zip(rows[1:], bands, bands[1:], strict=False):
        if band.outcome.severity < before.outcome.severity:
            row.fail(
                "outcome",
                f"{band.outcome} is less restrictive than the band before ({before.outcome}); more missed days must never be less restrictive",
            )
    root.finish()
    return MissedDoseTable(
        version=version, bands=tuple(bands), interruption_review_from_days=interruption
    )


def load_take_home(path: Path) -> TakeHomeTable:
    root, version = _open(path, "take_home")
    regime = root.sub("regime")
    enabled = regime.setting("enabled", bool)
    requires_commitment = regime.setting("requires_commitment", bool)
    week = regime.setting("week", WeekKind)
    regime.finish()

    criteria = TakeHomeCriteria()
    if root.has("criteria"):
        n = root.sub("criteria")
        criteria = TakeHomeCriteria(
            min_days_in_treatment=n.setting(
                "min_days_in_treatment", int, required=False, lo=0, hi=3650
            ),
            min_days_on_current_dose=n.setting(
                "min_days_on_current_dose", int, required=False, lo=0, hi=3650
            ),
            max_missed_days=n.setting("max_missed_days", int, required=False, lo=0, hi=3650),
            missed_lookback_days=n.setting(
                "missed_lookback_days", int, required=False, lo=1, hi=3650
            ),
        )
        if (criteria.max_missed_days is None) != (criteria.missed_lookback_days is None):
            n.fail(
                "missed_lookback_days"
                if criteria.missed_lookback_days is None
                else "max_missed_days",
                "max_missed_days and missed_lookback_days go together",
            )
        _not_above(
            n,
            "max_missed_days",
            criteria.max_missed_days,
            "missed_lookback_days",
            criteria.missed_lookback_days,
        )
        n.finish()

    rows = root.rows("bands", required=enabled)
    bands = []
    for row in rows:
        band = TakeHomeBand(
            from_day=row.plain("from_day", int, lo=0, hi=36500),
            to_day=row.plain("to_day", int, required=False, lo=0, hi=36500),
            max_supply_days=row.plain("max_supply_days", int, lo=0, hi=90),
            max_per_week=row.plain("max_per_week", int, required=False, lo=0, hi=7),
            max_consecutive_days=row.plain(
                "max_consecutive_days", int, required=False, lo=1, hi=90
            ),
        )
        row.finish()
        bands.append(band)
    if rows:
        _check_bands(
            rows, [b.from_day for b in bands], [b.to_day for b in bands], 0, "from_day", "to_day"
        )
    root.finish()
    return TakeHomeTable(
        version=version,
        enabled=enabled,
        requires_commitment=requires_commitment,
        week=week,
        criteria=criteria,
        bands=tuple(bands),
    )


def load_titration_cap(path: Path) -> TitrationCapTable:
    root, version = _open(path, "titration_cap")
    settings = root.sub("settings")
    window_days = settings.setting("window_days", int, lo=1, hi=31)
    settings.finish()
    rows = root.rows("bands")
    bands = []
    for row in rows:
        bands.append(
            TitrationCapBand(
                from_day=row.plain("from_day", int, lo=0, hi=36500),
                to_day=row.plain("to_day", int, required=False, lo=0, hi=36500),
                cap_mg=row.plain("cap_mg", Decimal, positive=True, hi=_MG_MAX),
            )
        )
        row.finish()
    _check_bands(
        rows, [b.from_day for b in bands], [b.to_day for b in bands], 0, "from_day", "to_day"
    )
    root.finish()
    return TitrationCapTable(version=version, window_days=window_days, bands=tuple(bands))


def load_interactions(path: Path) -> InteractionTable:
    root, version = _open(path, "interactions")
    settings = root.sub("settings")
    watch_days = settings.setting("watch_days", int, lo=1, hi=365)
    from_day = settings.setting("withdrawal_from_day", int, lo=0, hi=365)
    to_day = settings.setting("withdrawal_to_day", int, lo=0, hi=365)
    _not_above(settings, "withdrawal_from_day", from_day, "withdrawal_to_day", to_day)
    settings.finish()
    drugs = []
    seen: dict[str, str] = {}
    for row in root.rows("drugs"):
        drug = InteractingDrug(
            name=row.plain("name", str),
            aliases=row.plain("aliases", list, required=False) or (),
            effect=row.plain("effect", DrugEffect),
        )
        for name in (drug.name, *drug.aliases):
            folded = " ".join(name.split()).casefold()
            if folded in seen:
                row.fail(
                    "name" if name == drug.name else "aliases",
                    f"{name!r} is already listed (for {seen[folded]!r})",
                )
            seen[folded] = drug.name
        row.finish()
        drugs.append(drug)
    root.finish()
    return InteractionTable(
        version=version,
        watch_days=watch_days,
        withdrawal_from_day=from_day,
        withdrawal_to_day=to_day,
        drugs=tuple(drugs),
    )


REQUIRED_LABELS = (
    tuple(p.value for p in Phase) + CHECKLIST_SIGNS + tuple(c.value for c in MedicationChangeKind)
)


def _bilingual(node: _Node) -> tuple[str, str]:
    texts = (node.plain("vi", str), node.plain("en", str))
    node.finish()
    return texts


def load_messages(path: Path) -> MessageCatalog:
    root, version = _open(path, "messages")
    labels_node = root.sub("labels")
    labels = {}
    for value in REQUIRED_LABELS:
        labels[value] = _bilingual(labels_node.sub(value))
    labels_node.finish()

    messages_node = root.sub("messages")
    texts = {}
    for reason in Reason:
        node = messages_node.sub(reason.value)
        pair = _bilingual(node)
        for lang, text in zip(("vi", "en"), pair, strict=True):
            try:
                parsed = list(string.Formatter().parse(text))
            except ValueError as exc:
                node.fail(lang, f"malformed placeholder: {exc}")
            for _, field, spec, conversion in parsed:
                if field is None:
                    continue
                if field not in PLACEHOLDERS[reason]:
                    allowed = (
                        ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS[reason])) or "none"
                    )
                    node.fail(lang, f"unknown placeholder {{{field}}}; allowed: {allowed}")
                if spec or conversion:
                    node.fail(lang, f"placeholder {{{field}}} must not have a format or conversion")
        texts[reason] = pair
    messages_node.finish()
    root.finish()
    return MessageCatalog(version=version, texts=texts, labels=labels)


_LOADERS: dict[str, Callable[[Path], Any]] = {
    "core": load_core,
    "missed_dose": load_missed_dose,
    "take_home": load_take_home,
    "titration_cap": load_titration_cap,
    "interactions": load_interactions,
}


def _selection(
    rules_dir: Path, selection: RuleSelection | Mapping[str, str] | None
) -> RuleSelection:
    if selection is None:
        return RuleSelection()
    if isinstance(selection, RuleSelection):
        return selection
    known = {f.name for f in fields(RuleSelection)}
    for kind, table_id in selection.items():
        if kind not in known:
            raise RuleTableError(
                rules_dir,
                f"selection.{kind}",
                f"unknown kind of rule table; known: {', '.join(sorted(known))}",
            )
        if not isinstance(table_id, str):
            raise RuleTableError(rules_dir, f"selection.{kind}", "must be a table name")
    return RuleSelection(**selection)


def load_rule_set(
    rules_dir: Path, selection: RuleSelection | Mapping[str, str] | None = None
) -> RuleSet:
    """Return the validated rule set a clinic selected (defaults: ``RuleSelection()``).

    Raises RuleTableError naming the file, the key path and the problem.
    """
    rules_dir = Path(rules_dir)
    chosen = _selection(rules_dir, selection)
    tables = {}
    for kind in TABLE_KINDS:
        table_id = getattr(chosen, kind)
        if not _TABLE_ID.match(table_id):
            raise RuleTableError(
                rules_dir, f"selection.{kind}", f"{table_id!r} is not a table name"
            )
        path = rules_dir / kind / f"{table_id}.toml"
        if not path.is_file():
            available = sorted(p.stem for p in (rules_dir / kind).glob("*.toml"))
            raise RuleTableError(
                path,
                f"selection.{kind}",
                f"no table {table_id!r}; available: {', '.join(available) or 'none'}",
            )
        tables[kind] = _LOADERS[kind](path)
    return RuleSet(messages=load_messages(rules_dir / MESSAGES_FILE), **tables)


def validate_all(rules_dir: Path) -> list[str]:
    """Load every table file under ``rules_dir``; return their versions, sorted.

    Raises RuleTableError for the first invalid file, or when a kind has no table at all.
    """
    rules_dir = Path(rules_dir)
    versions = [load_messages(rules_dir / MESSAGES_FILE).version]
    for kind, loader in _LOADERS.items():
        paths = sorted((rules_dir / kind).glob("*.toml"))
        if not paths:
            raise RuleTableError(rules_dir / kind, "(directory)", "no rule table of this kind")
        versions += [f"{kind}/{loader(path).version}" for path in paths]
    return sorted(versions)
