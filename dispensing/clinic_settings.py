"""Clinic settings an administrator changes: the rule tables in use, the timezone of the business
day, the take-home programme, and the reconciliation tolerances.

Orders record the rule-table versions they were checked with, so changing a selection never
rewrites history; it only applies to what is checked from then on.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.db import begin_write
from dispensing.errors import ValidationFailed
from dispensing.models import Clinic, Role, User
from dispensing.permissions import require_role
from dispensing.rulebook import RuleBook
from dispensing.rules import RuleSelection, RuleTableError
from dispensing.rules.loading import TABLE_KINDS

MAX_TOLERANCE_PCT = Decimal("10")
MAX_TOLERANCE_ML = Decimal("100")
_PCT_STEP = Decimal("0.001")
_ML_STEP = Decimal("0.01")
_CLINIC_FIELDS = {kind: f"rules_{kind}" for kind in TABLE_KINDS}


@dataclass(frozen=True)
class RuleTableInfo:
    kind: str
    id: str
    version: str
    title: str


@dataclass(frozen=True)
class ClinicSettings:
    """What the settings form edits. Tolerances are exact Decimals (percent and millilitres)."""

    name: str
    timezone: str
    take_home_enabled: bool
    reconcile_tolerance_pct: Decimal
    reconcile_tolerance_ml: Decimal


def available_rule_tables(rules_dir: Path) -> dict[str, list[RuleTableInfo]]:
    """Return the table files of each kind under ``rules_dir`` (header only, not validated)."""
    found: dict[str, list[RuleTableInfo]] = {}
    for kind in TABLE_KINDS:
        found[kind] = []
        for path in sorted(Path(rules_dir, kind).glob("*.toml")):
            try:
                with path.open("rb") as handle:
                    header = tomllib.load(handle).get("table", {})
            except (OSError, tomllib.TOMLDecodeError):
                continue
            found[kind].append(RuleTableInfo(kind, path.stem, str(header.get("version", "")),
                                             str(header.get("title", path.stem))))
    return found


def current_selection(clinic: Clinic) -> RuleSelection:
    return RuleSelection(**{kind: getattr(clinic, field) for kind, field in _CLINIC_FIELDS.items()})


def select_rule_tables(session: Session, actor: User, rulebook: RuleBook, selection: RuleSelection) -> Clinic:
    """Switch the clinic to the rule tables of ``selection``; committed.

    The whole selection is loaded and validated first. Raises PermissionDenied, ValidationFailed
    (RULE_TABLE_INVALID with the loader's message, TAKE_HOME_TABLE_DISABLED when the clinic runs
    the take-home programme and the chosen take-home table is switched off).
    """
    require_role(actor, Role.ADMIN)
    try:
        rule_set = rulebook.load(selection)
    except RuleTableError as exc:
        raise ValidationFailed(str(exc), code="RULE_TABLE_INVALID", problem=str(exc)) from exc
    begin_write(session)
    clinic = session.get(Clinic, actor.clinic_id)
    if clinic.take_home_enabled and not rule_set.take_home.enabled:
        raise ValidationFailed("take-home table disabled", code="TAKE_HOME_TABLE_DISABLED")
    before = current_selection(clinic)
    changed = {}
    for kind, field in _CLINIC_FIELDS.items():
        new = getattr(selection, kind)
        if getattr(before, kind) != new:
            changed[kind] = {"from": getattr(before, kind), "to": new}
            setattr(clinic, field, new)
    if changed:
        audit.record(session, "clinic.rules_selected", actor_id=actor.id, clinic_id=clinic.id, entity=clinic,
                     data={"changed": changed, "rule_set_version": rule_set.version})
    session.commit()
    return clinic


def _exact(value: object, step: Decimal, maximum: Decimal, code: str) -> Decimal:
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except (InvalidOperation, ValueError) as exc:
        raise ValidationFailed("not a number", code=code) from exc
    if not number.is_finite() or number < 0 or number > maximum or number != number.quantize(step):
        raise ValidationFailed("out of range", code=code)
    return number


def validate_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA timezone zoneinfo knows. Raises ValidationFailed."""
    name = (name or "").strip()
    if not name or name not in available_timezones():
        raise ValidationFailed("timezone", code="TIMEZONE_INVALID")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed("timezone", code="TIMEZONE_INVALID") from exc
    return name


def update_clinic_settings(session: Session, actor: User, rulebook: RuleBook, values: ClinicSettings) -> Clinic:
    """Change the clinic's name, timezone, take-home programme and reconciliation tolerances;
    committed.

    Tolerances: percent from 0 to 10 with at most 3 decimals, millilitres from 0 to 100 with at
    most 2. Raises PermissionDenied, ValidationFailed (CLINIC_NAME_REQUIRED, TIMEZONE_INVALID,
    TOLERANCE_PCT_INVALID, TOLERANCE_ML_INVALID, TAKE_HOME_TABLE_DISABLED).
    """
    require_role(actor, Role.ADMIN)
    name = (values.name or "").strip()
    if not name or len(name) > 200:
        raise ValidationFailed("name", code="CLINIC_NAME_REQUIRED")
    timezone = validate_timezone(values.timezone)
    pct = _exact(values.reconcile_tolerance_pct, _PCT_STEP, MAX_TOLERANCE_PCT, "TOLERANCE_PCT_INVALID")
    ml = _exact(values.reconcile_tolerance_ml, _ML_STEP, MAX_TOLERANCE_ML, "TOLERANCE_ML_INVALID")
    begin_write(session)
    clinic = session.get(Clinic, actor.clinic_id)
    if values.take_home_enabled and not rulebook.for_clinic(clinic).take_home.enabled:
        raise ValidationFailed("take-home table disabled", code="TAKE_HOME_TABLE_DISABLED")
    new = {"name": name, "timezone": timezone, "take_home_enabled": bool(values.take_home_enabled),
           "reconcile_tolerance_pct": pct, "reconcile_tolerance_ml": ml}
    changed = {}
    for field, value in new.items():
        if getattr(clinic, field) != value:
            changed[field] = {"from": getattr(clinic, field), "to": value}
            setattr(clinic, field, value)
    if changed:
        audit.record(session, "clinic.settings_changed", actor_id=actor.id, clinic_id=clinic.id, entity=clinic,
                     data={"changed": changed})
    session.commit()
    return clinic
