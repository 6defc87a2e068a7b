"""Pure state logic of the counter: device outcome → dose state, slot status, keys and labels,
calibration verdicts, and the device service's view of a job."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from devices.calibration import CalibrationMethod
from devices.scan import LabelType, ScanKind, classify_scan
from devices.service import Job, calibration_result, registry_for
from dispensing.counter.common import calibration_problem, require_key
from dispensing.counter.delivery import DeviceOutcome, _final_state
from dispensing.counter.dosing import take_home_keys
from dispensing.counter.panel import SlotStatus, slot_status
from dispensing.counter.records import dose_id_from_label, take_home_label_code
from dispensing.errors import ValidationFailed
from dispensing.models import DoseState

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def outcome(kind, measured="0.00", uncertain=False, reason=None):
    return DeviceOutcome.from_dict({"outcome": kind, "target_ml": "6.00", "measured_ml": measured,
                                    "reason": reason, "uncertain": uncertain})


@pytest.mark.parametrize(
    ("result", "state", "delivered"),
    [
        (outcome("COMPLETED", "6.00"), DoseState.COMPLETED, Decimal("6.00")),
        (outcome("PARTIAL", "1.20", reason="PUMP_STALL"), DoseState.PARTIAL, Decimal("1.20")),
        # The pump could not confirm: a human decides (the last reading is kept on the dose).
        (outcome("FAILED", "1.25", uncertain=True, reason="POWER_RESET"), DoseState.UNKNOWN, None),
        (outcome("FAILED", "0.00", uncertain=True, reason="CRC_ERROR"), DoseState.UNKNOWN, None),
        # Nothing left the pump.
        (outcome("FAILED", "0.00", reason="READBACK_MISMATCH"), DoseState.FAILED, Decimal("0.00")),
        # Over-delivery: the patient got it all, the record must say so.
        (outcome("FAILED", "6.10", reason="OVER_DELIVERY"), DoseState.COMPLETED, Decimal("6.10")),
    ],
)
def test_device_outcome_maps_to_dose_state(result, state, delivered):
    assert _final_state(SimpleNamespace(), result) == (state, delivered)


@pytest.mark.parametrize(
    "data",
    [
        {"outcome": "DONE", "target_ml": "1", "measured_ml": "1", "uncertain": False},
        {"outcome": "COMPLETED", "target_ml": "1", "measured_ml": "1.005", "uncertain": False},
        {"outcome": "COMPLETED", "target_ml": "1", "measured_ml": "-1", "uncertain": False},
        {"outcome": "COMPLETED", "target_ml": "x", "measured_ml": "1", "uncertain": False},
        {"outcome": "COMPLETED", "target_ml": "1", "measured_ml": "NaN", "uncertain": False},
    ],
)
def test_unreadable_device_results_are_refused(data):
    with pytest.raises(ValidationFailed) as caught:
        DeviceOutcome.from_dict(data)
    assert caught.value.params["code"] == "DEVICE_RESULT_INVALID"


def dose(state):
    return SimpleNamespace(state=state)


@pytest.mark.parametrize(
    ("held", "blocked", "needs", "expected"),
    [
        (None, False, False, SlotStatus.TO_COME),
        (None, False, True, SlotStatus.NEEDS_ASSESSMENT),
        (None, True, True, SlotStatus.BLOCKED),
        (dose(DoseState.REQUESTED), True, False, SlotStatus.IN_PROGRESS),
        (dose(DoseState.RUNNING), False, False, SlotStatus.IN_PROGRESS),
        (dose(DoseState.COMPLETED), True, False, SlotStatus.DOSED),
        (dose(DoseState.PARTIAL), False, False, SlotStatus.PARTIAL),
        (dose(DoseState.UNKNOWN), False, False, SlotStatus.UNKNOWN),
        # A failed dose gave nothing: the slot is open again.
        (dose(DoseState.FAILED), False, False, SlotStatus.TO_COME),
    ],
)
def test_slot_status(held, blocked, needs, expected):
    assert slot_status(held, blocked, needs) == expected


def test_take_home_keys_are_one_per_day_and_part_and_fit_the_column():
    keys = take_home_keys("k" * 53, [date(2026, 3, 3), date(2026, 3, 4)], [1, 2])
    assert len(set(keys)) == 4 and all(len(k) <= 64 for k in keys)


@pytest.mark.parametrize("key", ["", "short", "x" * 65, "tab\there!"])
def test_bad_idempotency_keys_are_refused(key):
    with pytest.raises(ValidationFailed):
        require_key(key)


def test_take_home_label_codes_classify_as_take_home_labels_and_round_trip():
    code = take_home_label_code(123)
    scan = classify_scan(code)
    assert (scan.kind, scan.label_type) == (ScanKind.CONTAINER_LABEL, LabelType.TAKE_HOME)
    assert dose_id_from_label(code.lower()) == 123
    with pytest.raises(ValidationFailed):
        dose_id_from_label("C00000123")


def calibration(**values):
    return SimpleNamespace(**{"passed": True, "valid_until": NOW + timedelta(hours=1), **values})


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (None, "CALIBRATION_MISSING"),
        (calibration(passed=False), "CALIBRATION_NOT_PASSED"),
        (calibration(valid_until=NOW), "CALIBRATION_EXPIRED"),
        (calibration(), None),
    ],
)
def test_a_pump_without_valid_calibration_is_not_used(record, problem):
    assert calibration_problem(record, NOW) == problem


def test_job_and_calibration_as_the_device_service_reads_them():
    job = Job.from_dict({"dose_id": 7, "volume_ml": "6.00", "ceiling_ml": "25.00", "calibration": {
        "factor": "1.020000", "method": "GRAVIMETRIC", "passed": True,
        "evaluated_at": NOW.isoformat(), "valid_until": (NOW + timedelta(hours=8)).isoformat()}})
    assert (job.dose_id, job.volume_ml, job.ceiling_ml) == (7, Decimal("6.00"), Decimal("25.00"))
    result = calibration_result(job.calibration, "Q1/pump")
    assert result.pump_id == "Q1/pump" and result.factor == Decimal("1.02")
    assert result.method is CalibrationMethod.GRAVIMETRIC and result.is_valid_at(NOW)
    assert calibration_result(None, "Q1/pump") is None


def test_pump_setup_becomes_a_one_counter_registry():
    registry = registry_for({"counter_code": "Q1", "driver": "ne1000", "url": "sim://ne1000",
                             "settings": {"address": 0, "rate_ml_min": "120"}})
    from devices.registry import load_registry

    loaded = load_registry(registry)
    assert loaded.counter("Q1").pump.device_id == "Q1/pump"
    assert loaded.counter("Q1").pump.driver_settings().rate_ml_min == Decimal("120")
