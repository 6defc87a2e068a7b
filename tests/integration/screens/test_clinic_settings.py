"""Clinic settings and rule-table selection: validated, exact, audited, admins only."""

from decimal import Decimal

import pytest

from dispensing import clinic_settings
from dispensing.errors import PermissionDenied, ValidationFailed
from dispensing.models import AuditEvent, Role
from dispensing.rulebook import RuleBook
from dispensing.rules import RuleSelection
from dispensing.settings import PROJECT_ROOT
from tests import factories

RULES = PROJECT_ROOT / "config" / "rules"


@pytest.fixture
def rulebook():
    return RuleBook(RULES)


@pytest.fixture
def admin(session):
    clinic = factories.clinic(session)
    return factories.user(session, clinic, Role.ADMIN)


def _values(**changes):
    values = {"name": "Cơ sở Đống Đa", "timezone": "Asia/Ho_Chi_Minh", "take_home_enabled": False,
              "reconcile_tolerance_pct": "0.5", "reconcile_tolerance_ml": "2"}
    values.update(changes)
    return clinic_settings.ClinicSettings(**values)


def test_lists_the_shipped_tables_of_each_kind():
    tables = clinic_settings.available_rule_tables(RULES)
    assert {t.id for t in tables["missed_dose"]} == {"australia-2003", "metaphi"}
    assert {t.id for t in tables["take_home"]} >= {"disabled", "us-2024", "vn-multiday"}
    assert all(t.version and t.title for kind in tables.values() for t in kind)


def test_selecting_tables_changes_the_clinics_rule_set(session, admin, rulebook):
    clinic = clinic_settings.select_rule_tables(session, admin, rulebook, RuleSelection(missed_dose="metaphi"))
    assert clinic.rules_missed_dose == "metaphi"
    assert rulebook.for_clinic(clinic).missed_dose.version.startswith("metaphi@")
    event = session.query(AuditEvent).filter_by(action="clinic.rules_selected").one()
    assert "metaphi" in event.payload


def test_an_unknown_table_is_refused(session, admin, rulebook):
    with pytest.raises(ValidationFailed) as refused:
        clinic_settings.select_rule_tables(session, admin, rulebook, RuleSelection(core="no-such-table"))
    assert refused.value.params["code"] == "RULE_TABLE_INVALID"
    with pytest.raises(ValidationFailed):
        clinic_settings.select_rule_tables(session, admin, rulebook, RuleSelection(core="../core/vn-3140"))


def test_settings_are_stored_exactly(session, admin, rulebook):
    clinic = clinic_settings.update_clinic_settings(
        session, admin, rulebook, _values(reconcile_tolerance_pct="0,75", reconcile_tolerance_ml="1.55",
                                          timezone="Asia/Bangkok"))
    session.expire_all()
    assert clinic.reconcile_tolerance_pct == Decimal("0.75")
    assert clinic.reconcile_tolerance_ml == Decimal("1.55")
    assert clinic.timezone == "Asia/Bangkok"


@pytest.mark.parametrize(("field", "value", "code"), [
    ("timezone", "Asia/Hanoi-ish", "TIMEZONE_INVALID"),
    ("timezone", "", "TIMEZONE_INVALID"),
    ("reconcile_tolerance_pct", "11", "TOLERANCE_PCT_INVALID"),
    ("reconcile_tolerance_pct", "-1", "TOLERANCE_PCT_INVALID"),
    ("reconcile_tolerance_pct", "0.0001", "TOLERANCE_PCT_INVALID"),
    ("reconcile_tolerance_ml", "abc", "TOLERANCE_ML_INVALID"),
    ("reconcile_tolerance_ml", "1.005", "TOLERANCE_ML_INVALID"),
    ("reconcile_tolerance_ml", "NaN", "TOLERANCE_ML_INVALID"),
    ("name", "  ", "CLINIC_NAME_REQUIRED"),
])
def test_invalid_settings_are_refused_with_a_code(session, admin, rulebook, field, value, code):
    with pytest.raises(ValidationFailed) as refused:
        clinic_settings.update_clinic_settings(session, admin, rulebook, _values(**{field: value}))
    assert refused.value.params["code"] == code


def test_take_home_programme_needs_an_enabled_take_home_table(session, admin, rulebook):
    with pytest.raises(ValidationFailed) as refused:
        clinic_settings.update_clinic_settings(session, admin, rulebook, _values(take_home_enabled=True))
    assert refused.value.params["code"] == "TAKE_HOME_TABLE_DISABLED"
    clinic_settings.select_rule_tables(session, admin, rulebook, RuleSelection(take_home="vn-multiday"))
    clinic = clinic_settings.update_clinic_settings(session, admin, rulebook, _values(take_home_enabled=True))
    assert clinic.take_home_enabled
    with pytest.raises(ValidationFailed):
        clinic_settings.select_rule_tables(session, admin, rulebook, RuleSelection(take_home="disabled"))


def test_only_admins(session, rulebook):
    clinic = factories.clinic(session)
    physician = factories.user(session, clinic, Role.PHYSICIAN)
    with pytest.raises(PermissionDenied):
        clinic_settings.update_clinic_settings(session, physician, rulebook, _values())
    with pytest.raises(PermissionDenied):
        clinic_settings.select_rule_tables(session, physician, rulebook, RuleSelection())
