"""§10 Interacting drugs: starting an inducer → physician task (withdrawal around day 8–10) and a
2-week watch flag; stopping one → physician task (overdose risk)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispensing.rules import (
    MedicationChange,
    MedicationChangeKind,
    Reason,
    evaluate_medication_change,
)

from .builders import TODAY, rules

STARTED, STOPPED = MedicationChangeKind.STARTED, MedicationChangeKind.STOPPED


@pytest.mark.parametrize(
    ("drug", "change", "task", "task_due_days", "watch"),
    [
        pytest.param(
            "efavirenz",
            STARTED,
            Reason.INTERACTION_LEVELS_LOWERED,
            7,
            True,
            id="efavirenz-started-withdrawal-day-8",
        ),
        pytest.param(
            "Nevirapine",
            STARTED,
            Reason.INTERACTION_LEVELS_LOWERED,
            7,
            True,
            id="nevirapine-started-any-case",
        ),
        pytest.param(
            " rifampin ",
            STARTED,
            Reason.INTERACTION_LEVELS_LOWERED,
            7,
            True,
            id="rifampicin-by-alias",
        ),
        pytest.param(
            "efavirenz",
            STOPPED,
            Reason.INTERACTION_LEVELS_RAISED,
            0,
            False,
            id="efavirenz-stopped-overdose-risk",
        ),
        pytest.param(
            "fluconazole",
            STARTED,
            Reason.INTERACTION_LEVELS_RAISED,
            0,
            False,
            id="inhibitor-started-overdose-risk",
        ),
        pytest.param(
            "fluconazole",
            STOPPED,
            Reason.INTERACTION_LEVELS_LOWERED,
            7,
            True,
            id="inhibitor-stopped-withdrawal",
        ),
    ],
)
def test_interacting_drug_change_creates_tasks_and_watch(drug, change, task, task_due_days, watch):
    outcome = evaluate_medication_change(rules(), MedicationChange(drug, change, TODAY))
    (created,) = outcome.tasks
    assert created.code is task
    assert created.due_on == TODAY + timedelta(days=task_due_days)
    assert created.table_version == "default@2024.1"
    if watch:
        (flag,) = outcome.flags
        assert flag.code is Reason.INTERACTION_WATCH
        assert (flag.starts_on, flag.ends_on) == (
            TODAY,
            TODAY + timedelta(days=13),
        )  # 14 days inclusive
    else:
        assert outcome.flags == ()


def test_task_message_gives_expected_withdrawal_days():
    outcome = evaluate_medication_change(rules(), MedicationChange("efavirenz", STARTED, TODAY))
    assert "khoảng ngày 8–10" in outcome.tasks[0].message_vi
    assert "bắt đầu dùng" in outcome.tasks[0].message_vi


def test_other_drugs_change_nothing():
    outcome = evaluate_medication_change(rules(), MedicationChange("paracetamol", STARTED, TODAY))
    assert (outcome.drug, outcome.tasks, outcome.flags) == (None, (), ())
