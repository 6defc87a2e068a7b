"""Calibration evaluation (pure): factor, limits, validity, liquid used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from devices.calibration import (
    AcceptanceLimits,
    CalibrationMethod,
    CalibrationRun,
    Replicate,
    ValidityPolicy,
    evaluate_calibration,
    replicate_from_weighing,
    require_valid_calibration,
)
from devices.errors import (
    BalanceUnstable,
    CalibrationExpired,
    CalibrationInvalid,
    CalibrationMissing,
    CalibrationNotPassed,
    CalibrationWrongPump,
    WrongUnit,
)
from devices.interfaces import Weighing

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
# 07:30 in Ho Chi Minh City.
MORNING = datetime(2025, 3, 3, 7, 30, tzinfo=HCM)


def gravimetric(grams_by_nominal: dict[str, list[str]], density: str = "1.000") -> CalibrationRun:
    replicates = tuple(
        Replicate(nominal_ml=Decimal(nominal), measured_g=Decimal(g))
        for nominal, values in grams_by_nominal.items()
        for g in values
    )
    return CalibrationRun(
        pump_id="counter-1/pump",
        method=CalibrationMethod.GRAVIMETRIC,
        replicates=replicates,
        performed_at=MORNING,
        liquid="methadone 10 mg/ml",
        lot="MT2501",
        density_g_per_ml=Decimal(density),
    )


def test_pump_two_percent_short_gets_factor_and_passes():
    run = gravimetric({"5.00": ["4.90", "4.91", "4.89"], "10.00": ["9.80", "9.79", "9.81"]})

    result = evaluate_calibration(run, now=MORNING)

    assert result.passed and result.reason is None
    assert result.factor == Decimal("1.0204")
    assert result.mean_error_pct == Decimal("-2.00")
    assert abs(result.corrected_error_pct) <= Decimal("0.10")
    assert result.cv_pct < Decimal("0.3")
    assert result.liquid_used_ml == Decimal("44.10")
    assert (result.liquid, result.lot) == ("methadone 10 mg/ml", "MT2501")
    assert [s.nominal_ml for s in result.per_volume] == [Decimal("5.00"), Decimal("10.00")]


def test_density_converts_grams_to_millilitres():
    # Methadone oral solution at 1.05 g/ml: 10.50 g is 10.00 ml.
    run = gravimetric({"10.00": ["10.50", "10.50", "10.50"]}, density="1.050")
    result = evaluate_calibration(run, now=MORNING)
    assert result.factor == Decimal("1.0000")
    assert result.liquid_used_ml == Decimal("30.00")


def test_scatter_fails_on_cv():
    run = gravimetric({"5.00": ["4.70", "5.00", "5.30"]})
    result = evaluate_calibration(run, now=MORNING)
    assert not result.passed and result.reason == "CV_EXCEEDED"
    assert result.cv_pct == Decimal("6.00")
    assert result.valid_until == MORNING


def test_error_not_proportional_to_volume_fails_after_correction():
    # A fixed 0.3 ml shortfall: -6 % at 5 ml, -1.5 % at 20 ml. One factor cannot fix both.
    run = gravimetric({"5.00": ["4.70"] * 3, "20.00": ["19.70"] * 3})
    result = evaluate_calibration(run, now=MORNING)
    assert not result.passed and result.reason == "MEAN_ERROR_EXCEEDED"


def test_correction_too_large_needs_service():
    run = gravimetric({"5.00": ["4.40", "4.40", "4.41"]})
    result = evaluate_calibration(run, now=MORNING)
    assert not result.passed and result.reason == "CORRECTION_TOO_LARGE"
    assert result.factor == Decimal("1.1355")


def test_too_few_replicates():
    result = evaluate_calibration(gravimetric({"5.00": ["5.00", "5.00"]}), now=MORNING)
    assert (result.passed, result.reason) == (False, "TOO_FEW_REPLICATES")
    custom = evaluate_calibration(
        gravimetric({"5.00": ["5.00", "5.00"]}),
        now=MORNING,
        limits=AcceptanceLimits(min_replicates=2),
    )
    assert custom.passed


def test_missing_density_or_measurement_fails_but_reports_liquid():
    run = gravimetric({"5.00": ["5.00"] * 3})
    no_density = CalibrationRun(**{**run.__dict__, "density_g_per_ml": None})
    result = evaluate_calibration(no_density, now=MORNING)
    assert (result.passed, result.reason) == (False, "DENSITY_REQUIRED")
    assert result.liquid_used_ml == Decimal("15.00")  # nominal, since not measured

    missing = CalibrationRun(
        **{
            **run.__dict__,
            "replicates": (*run.replicates[:2], Replicate(Decimal("5.00"), measured_g=None)),
        }
    )
    result = evaluate_calibration(missing, now=MORNING)
    assert (result.passed, result.reason) == (False, "INVALID_MEASUREMENT")


def test_volumetric_calibration():
    run = CalibrationRun(
        pump_id="counter-2/pump",
        method=CalibrationMethod.VOLUMETRIC,
        replicates=tuple(
            Replicate(Decimal("10.00"), measured_ml=Decimal(v)) for v in ("10.10", "10.05", "10.10")
        ),
        performed_at=MORNING,
    )
    result = evaluate_calibration(run, now=MORNING)
    assert result.passed
    assert result.factor == Decimal("0.9917")
    assert result.liquid == "water" and result.lot is None


def test_default_validity_is_end_of_local_day():
    result = evaluate_calibration(gravimetric({"5.00": ["5.00"] * 3}), now=MORNING)
    assert result.valid_until == datetime(2025, 3, 4, 0, 0, tzinfo=HCM)
    assert result.is_valid_at(datetime(2025, 3, 3, 23, 59, tzinfo=HCM))
    assert not result.is_valid_at(datetime(2025, 3, 4, 0, 0, tzinfo=HCM))


def test_validity_works_from_utc_times_and_custom_policy():
    late_evening_utc = datetime(2025, 3, 3, 16, 30, tzinfo=UTC)  # 23:30 in HCM
    result = evaluate_calibration(gravimetric({"5.00": ["5.00"] * 3}), now=late_evening_utc)
    assert result.valid_until == datetime(2025, 3, 4, 0, 0, tzinfo=HCM)
    rolling = ValidityPolicy(until_end_of_business_day=False, max_age=timedelta(hours=24))
    result = evaluate_calibration(
        gravimetric({"5.00": ["5.00"] * 3}), now=late_evening_utc, validity=rolling
    )
    assert result.valid_until == late_evening_utc + timedelta(hours=24)


def test_require_valid_calibration():
    result = evaluate_calibration(gravimetric({"5.00": ["5.00"] * 3}), now=MORNING)
    assert (
        require_valid_calibration(result, MORNING + timedelta(hours=1), pump_id="counter-1/pump")
        is result
    )
    with pytest.raises(CalibrationExpired):
        require_valid_calibration(result, datetime(2025, 3, 4, 7, 0, tzinfo=HCM))
    with pytest.raises(CalibrationWrongPump):
        require_valid_calibration(result, MORNING, pump_id="counter-2/pump")
    with pytest.raises(CalibrationMissing):
        require_valid_calibration(None, MORNING)
    with pytest.raises(CalibrationInvalid):
        require_valid_calibration(result, MORNING - timedelta(hours=1))
    failed = evaluate_calibration(gravimetric({"5.00": ["4.0", "5.0", "6.0"]}), now=MORNING)
    with pytest.raises(CalibrationNotPassed):
        require_valid_calibration(failed, MORNING)
    with pytest.raises(ValueError):
        require_valid_calibration(result, datetime(2025, 3, 3, 8, 0))  # noqa: DTZ001 - naive on purpose


def test_only_stable_gram_readings_become_replicates():
    at = datetime(2025, 3, 3, tzinfo=UTC)
    assert replicate_from_weighing(
        Decimal("5.00"), Weighing(Decimal("4.98"), True, "g", at)
    ).measured_g == Decimal("4.98")
    with pytest.raises(BalanceUnstable):
        replicate_from_weighing(Decimal("5.00"), Weighing(Decimal("4.98"), False, "g", at))
    with pytest.raises(WrongUnit):
        replicate_from_weighing(Decimal("5.00"), Weighing(Decimal("0.00498"), True, "kg", at))
