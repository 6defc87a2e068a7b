"""Rule tables: every shipped file validates; a malformed one is refused with a message naming
the file, the key path and the problem; the selection picks the tables."""

from __future__ import annotations

import itertools
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from dispensing.rules import (
    CounterContext,
    Lot,
    Phase,
    RuleSelection,
    RuleTableError,
    evaluate_counter,
    load_rule_set,
    validate_all,
)

from .builders import RULES_DIR, TODAY, D, assessment, at, day, history, order, rules, taken

SHIPPED = {
    "core": ["vn-3140"],
    "missed_dose": ["australia-2003", "metaphi"],
    "take_home": ["disabled", "vn-multiday", "us-2001", "us-2024", "south-australia"],
    "titration_cap": ["vn-3140", "uk-2007"],
    "interactions": ["default"],
}


def test_every_shipped_table_validates():
    versions = validate_all(RULES_DIR)
    assert versions == sorted(
        [
            "core/vn-3140@2010.1",
            "interactions/default@2024.1",
            "messages@2025.1",
            "missed_dose/australia-2003@2003.1",
            "missed_dose/metaphi@2015.1",
            "take_home/disabled@2024.1",
            "take_home/south-australia@2019.1",
            "take_home/us-2001@2001.1",
            "take_home/us-2024@2024.1",
            "take_home/vn-multiday@2023.1",
            "titration_cap/uk-2007@2007.1",
            "titration_cap/vn-3140@2010.1",
        ]
    )
    for kind, ids in SHIPPED.items():
        assert sorted(p.stem for p in (RULES_DIR / kind).glob("*.toml")) == sorted(ids)


@pytest.mark.parametrize(
    ("missed_dose", "take_home", "titration_cap"),
    list(itertools.product(SHIPPED["missed_dose"], SHIPPED["take_home"], SHIPPED["titration_cap"])),
)
def test_every_selection_loads_and_names_its_versions(missed_dose, take_home, titration_cap):
    rule_set = rules(missed_dose=missed_dose, take_home=take_home, titration_cap=titration_cap)
    assert f"missed_dose={missed_dose}@" in rule_set.version
    assert f"take_home={take_home}@" in rule_set.version
    assert f"titration_cap={titration_cap}@" in rule_set.version
    assert rule_set.version.startswith("core=vn-3140@2010.1;")


def test_default_selection_of_the_settings_file_loads():
    settings = tomllib.loads((RULES_DIR.parent / "settings.toml").read_text(encoding="utf-8"))
    selection = {k: v for k, v in settings["rules"].items() if k != "dir"}
    assert load_rule_set(RULES_DIR, selection).version == rules().version


def test_defaults_are_the_vietnamese_tables_with_take_home_disabled():
    assert RuleSelection() == RuleSelection(
        "vn-3140", "australia-2003", "disabled", "vn-3140", "default"
    )


def _counter_with_four_missed_days():
    return CounterContext(
        today=TODAY,
        now=at(TODAY),
        history=history(
            orders=[order(Phase.MAINTENANCE, "100", start=day(-10))], doses=taken(day(-5), mg="100")
        ),
        order=order(Phase.MAINTENANCE, "100", start=day(-10)),
        lot=Lot("L1", D("10"), True),
        assessment=assessment(),
    )


@pytest.mark.parametrize(
    ("table", "suggested", "version"),
    [
        pytest.param(
            "australia-2003", "40", "australia-2003@2003.1", id="australia-2003-min-40mg-or-half"
        ),
        pytest.param("metaphi", "50", "metaphi@2015.1", id="metaphi-max-30mg-or-half"),
    ],
)
def test_switching_missed_dose_table_changes_the_suggestion(table, suggested, version):
    evaluation = evaluate_counter(rules(missed_dose=table), _counter_with_four_missed_days())
    assert evaluation.missed_days == 4
    assert evaluation.suggested.min_mg == evaluation.suggested.max_mg == D(suggested)
    assert evaluation.missed.decision.table_version == version


# ---- malformed tables ---------------------------------------------------------------------------

CORE = "core/vn-3140.toml"
MALFORMED = [
    pytest.param(
        CORE,
        r'(first_dose_max_mg = \{ value = )"30"',
        r"\g<1>30.0",
        "induction.first_dose_max_mg.value",
        "TOML float",
        id="wrong-type-float-dose",
    ),
    pytest.param(
        CORE,
        r"(min_days_between_increases = \{ value = )3",
        r'\g<1>"3"',
        "titration.min_days_between_increases.value",
        "expected an integer",
        id="wrong-type-string-days",
    ),
    pytest.param(
        CORE,
        r'(high_dose_check_on = \{ value = )"increase"',
        r'\g<1>"sometimes"',
        "cardiac.high_dose_check_on.value",
        "is not one of",
        id="wrong-type-unknown-choice",
    ),
    pytest.param(
        CORE,
        r"(volume_rounding = \{ value = )\"ROUND_HALF_EVEN\"",
        r'\g<1>"ROUND_05UP"',
        "units.volume_rounding.value",
        "is not one of",
        id="unsupported-rounding-mode",
    ),
    pytest.param(
        CORE,
        r"\nceiling_mg = .*\n",
        "\n",
        "titration.ceiling_mg",
        "missing setting",
        id="missing-key",
    ),
    pytest.param(
        CORE,
        r'(max_step_mg = \{ value = "10"), source = "[^"]*"',
        r"\1",
        "titration.max_step_mg.source",
        "missing key",
        id="number-without-source",
    ),
    pytest.param(
        CORE,
        r'(max_step_mg = \{ value = "10", source = )"[^"]*"',
        r'\1""',
        "titration.max_step_mg.source",
        "empty string",
        id="empty-source",
    ),
    pytest.param(
        CORE,
        r"(max_parts = \{ value = )3",
        r"\g<1>4",
        "orders.max_parts.value",
        "above the maximum 3",
        id="out-of-range-four-parts",
    ),
    pytest.param(
        CORE,
        r"(qtc_warn_from_ms = \{ value = )450",
        r"\g<1>900",
        "cardiac.qtc_warn_from_ms.value",
        "above the maximum 700",
        id="out-of-range-qtc",
    ),
    pytest.param(
        CORE,
        r'(dose_resolution_mg = \{ value = )"0.1"',
        r'\g<1>"0"',
        "units.dose_resolution_mg.value",
        "greater than 0",
        id="out-of-range-zero-resolution",
    ),
    pytest.param(
        CORE,
        r"(\[orders.titration\]\nmin_validity_days = \{ value = )3",
        r"\g<1>6",
        "orders.titration.min_validity_days",
        "must not exceed orders.titration.max_validity_days (6 > 5)",
        id="min-above-max-titration-window",
    ),
    pytest.param(
        CORE,
        r'(first_dose_caution_from_mg = \{ value = )"25"',
        r'\g<1>"35"',
        "induction.first_dose_caution_from_mg",
        "must not exceed induction.first_dose_max_mg (35 > 30)",
        id="caution-above-maximum-first-dose",
    ),
    pytest.param(
        CORE,
        r'(min_percent = \{ value = )"25"',
        r'\g<1>"80"',
        "vomiting.min_percent",
        "must not exceed vomiting.max_percent",
        id="min-above-max-replacement",
    ),
    pytest.param(
        CORE,
        r"(qtc_block_above_ms = \{ value = )500",
        r"\g<1>440",
        "cardiac.qtc_warn_from_ms",
        "must not exceed cardiac.qtc_block_above_ms",
        id="qtc-warn-above-block",
    ),
    pytest.param(
        CORE,
        r"\[titration\]\n",
        '[titration]\nceilling_mg = { value = "200", source = "typo" }\n',
        "titration.ceilling_mg",
        "unknown key",
        id="misspelt-key",
    ),
    pytest.param(
        CORE,
        r'signs = \{ value = \["drowsy"',
        'signs = { value = ["sleepy"',
        "predose.signs",
        "unknown checklist sign 'sleepy'",
        id="unknown-checklist-sign",
    ),
    pytest.param(
        CORE,
        r'id = "vn-3140"',
        'id = "vn-4066"',
        "table.id",
        "must equal the file name",
        id="id-differs-from-file-name",
    ),
    pytest.param(CORE, r"\Z", "\n[units\n", "(syntax)", "not valid TOML", id="toml-syntax-error"),
    pytest.param(
        "missed_dose/metaphi.toml",
        r"from_days = 4",
        "from_days = 5",
        "bands[2].from_days",
        "must be 4",
        id="missed-dose-bands-with-a-gap",
    ),
    pytest.param(
        "missed_dose/australia-2003.toml",
        r'outcome = "BLOCK"\nreason = "MISSED_DOSES_RESTART_INDUCTION"\nlift_role = "physician"\n',
        'outcome = "WARN"\nreason = "MISSED_DOSES_RESTART_INDUCTION"\n',
        "bands[3].outcome",
        "less restrictive",
        id="more-missed-days-less-restrictive",
    ),
    pytest.param(
        "missed_dose/australia-2003.toml",
        r'reason = "MISSED_DOSES_SHORT"',
        'reason = "MISSED_DOSE_SHORT"',
        "bands[0].reason",
        "is not one of",
        id="unknown-reason-code",
    ),
    pytest.param(
        "missed_dose/australia-2003.toml",
        r'cap_mg = "40"',
        'cap_mg = "40"\nfloor_mg = "50"',
        "bands[2].floor_mg",
        "must not exceed bands[2].cap_mg (50 > 40)",
        id="floor-above-cap",
    ),
    pytest.param(
        "missed_dose/australia-2003.toml",
        r'source = "Australia 2003 §3.5: one day[^"]*"\n',
        "",
        "bands[0].source",
        "missing key",
        id="band-without-source",
    ),
    pytest.param(
        "take_home/us-2024.toml",
        r"from_day = 30\n",
        "from_day = 30\nto_day = 99\n",
        "bands[2].to_day",
        "open-ended",
        id="take-home-last-band-closed",
    ),
    pytest.param(
        "take_home/us-2001.toml",
        r"max_per_week = 2\n",
        "max_per_week = 8\n",
        "bands[1].max_per_week",
        "above the maximum 7",
        id="more-than-7-a-week",
    ),
    pytest.param(
        "titration_cap/uk-2007.toml",
        r'cap_mg = "30"',
        "cap_mg = 30.5",
        "bands[0].cap_mg",
        "TOML float",
        id="cap-as-float",
    ),
    pytest.param(
        "interactions/default.toml",
        r'aliases = \["NVP"\]',
        'aliases = ["NVP", "Efavirenz"]',
        "drugs[1].aliases",
        "already listed",
        id="drug-listed-twice",
    ),
    pytest.param(
        "messages.toml",
        r"\[messages.TAPER_LOW_DOSE_SLOWER\]\nvi = .*\nen = .*\n",
        "",
        "messages.TAPER_LOW_DOSE_SLOWER",
        "missing table",
        id="reason-without-message",
    ),
    pytest.param(
        "messages.toml",
        r"(Dose \{dose_mg\} mg is below )\{threshold_mg\}",
        r"\1{limit_mg}",
        "messages.TAPER_LOW_DOSE_SLOWER.en",
        "unknown placeholder {limit_mg}",
        id="unknown-placeholder",
    ),
    pytest.param(
        "messages.toml",
        r'taper = \{ vi = "giảm liều", en = "taper" \}\n',
        "",
        "labels.taper",
        "missing table",
        id="phase-without-label",
    ),
]


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    return target


def _selection_for(file: str) -> RuleSelection:
    kind, _, name = file.rpartition("/")
    return RuleSelection(**({kind: name.removesuffix(".toml")} if kind else {}))


@pytest.mark.parametrize(("file", "pattern", "replacement", "key", "problem"), MALFORMED)
def test_malformed_table_is_refused_naming_file_key_and_problem(
    rules_copy, file, pattern, replacement, key, problem
):
    path = rules_copy / file
    text, count = re.subn(pattern, replacement, path.read_text(encoding="utf-8"), count=1)
    assert count == 1, f"the scenario no longer matches {file}"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(RuleTableError) as caught:
        load_rule_set(rules_copy, _selection_for(file))
    error = caught.value
    assert error.file == str(path)
    assert error.key == key
    assert problem in error.problem
    assert str(error) == f"{path}: {key}: {error.problem}"


def test_validate_all_finds_a_broken_table_no_clinic_has_selected(rules_copy):
    """CI checks every file, so an alternative table is caught before a clinic selects it."""
    path = rules_copy / "missed_dose" / "metaphi.toml"
    text = path.read_text(encoding="utf-8").replace('floor_mg = "30"', 'floor_mg = "-30"')
    path.write_text(text, encoding="utf-8")
    load_rule_set(rules_copy)  # the default selection does not read it
    with pytest.raises(RuleTableError) as caught:
        validate_all(rules_copy)
    assert (caught.value.file, caught.value.key) == (str(path), "bands[2].floor_mg")
    assert "greater than 0" in caught.value.problem


@pytest.mark.parametrize(
    ("selection", "key", "problem"),
    [
        pytest.param(
            {"missed_dose": "ontario"},
            "selection.missed_dose",
            "available: australia-2003, metaphi",
            id="unknown-table-lists-the-available-ones",
        ),
        pytest.param(
            {"stock": "default"}, "selection.stock", "unknown kind of rule table", id="unknown-kind"
        ),
        pytest.param(
            {"core": "../messages"},
            "selection.core",
            "is not a table name",
            id="path-in-table-name",
        ),
    ],
)
def test_bad_selection_is_refused(selection, key, problem):
    with pytest.raises(RuleTableError) as caught:
        load_rule_set(RULES_DIR, selection)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_missing_rules_directory_is_refused(tmp_path):
    with pytest.raises(RuleTableError, match="no table 'vn-3140'"):
        load_rule_set(tmp_path)


def test_bare_value_without_source_is_refused(rules_copy):
    path = rules_copy / "core" / "vn-3140.toml"
    text = re.sub(r"max_parts = \{[^}]*\}", "max_parts = 3", path.read_text(encoding="utf-8"))
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleTableError) as caught:
        load_rule_set(rules_copy)
    assert caught.value.key == "orders.max_parts"
    assert "every value carries its source" in caught.value.problem
