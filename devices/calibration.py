"""Pump calibration: replicates in, correction factor and verdict out (pure).

A calibration run dispenses several replicates at one or more nominal volumes and
measures each one, gravimetrically (balance, grams / density of the lot) or
volumetrically (graduated cylinder, ml).

How the factor is used
    ``factor = sum(nominal) / sum(measured)``. The dispense routine programs
    ``target x factor`` and converts the pump's counter back with ``counter /
    factor``: a pump that delivers 2 % short gets factor 1.0204, is asked for
    10.20 ml to deliver 10.00 ml, and its counter of 10.20 is reported as 10.00 ml.

Acceptance (defaults, all parameters of ``AcceptanceLimits``)
    * at least 3 replicates at every nominal volume;
    * CV <= 2 % at every nominal volume (repeatability; a factor cannot fix scatter);
    * after correction, mean error within +/-2 % at every nominal volume (a single
      factor cannot fix a pump whose error is not proportional to volume);
    * the correction itself within +/-10 % (beyond that the pump needs service,
      not a factor).
    ``mean_error_pct`` reports the uncorrected error (what the pump did on its own).

Validity (default, ``ValidityPolicy``)
    Until the end of the local business day in Asia/Ho_Chi_Minh (midnight), and never
    more than 24 h: "calibrate daily" means a calibration done at 07:00 covers that
    day's dosing and not the next morning's.

Calibration liquid
    ``liquid_used_ml`` is what was actually dispensed (measured where known, nominal
    otherwise) so the stock ledger can book it as calibration waste when the liquid
    is a medicine lot.
"""

from __future__ import annotations

import enum
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

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
from devices.quantities import as_decimal, round_ml

CLINIC_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
_FACTOR_STEP = Decimal("0.0001")
_PCT_STEP = Decimal("0.01")


class CalibrationMethod(enum.StrEnum):
    GRAVIMETRIC = "GRAVIMETRIC"
    VOLUMETRIC = "VOLUMETRIC"


class CalibrationReason(enum.StrEnum):
    TOO_FEW_REPLICATES = "TOO_FEW_REPLICATES"
    INVALID_MEASUREMENT = "INVALID_MEASUREMENT"
    DENSITY_REQUIRED = "DENSITY_REQUIRED"
    CV_EXCEEDED = "CV_EXCEEDED"
    MEAN_ERROR_EXCEEDED = "MEAN_ERROR_EXCEEDED"
    CORRECTION_TOO_LARGE = "CORRECTION_TOO_LARGE"


@dataclass(frozen=True)
class Replicate:
    """One dispense of ``nominal_ml`` and what was measured."""

    nominal_ml: Decimal
    measured_g: Decimal | None = None
    measured_ml: Decimal | None = None


@dataclass(frozen=True)
class CalibrationRun:
    """The replicates of one calibration of one pump."""

    pump_id: str
    method: CalibrationMethod
    replicates: tuple[Replicate, ...]
    performed_at: datetime
    liquid: str = "water"
    lot: str | None = None
    density_g_per_ml: Decimal | None = None


@dataclass(frozen=True)
class AcceptanceLimits:
    max_mean_error_pct: Decimal = Decimal("2")
    max_cv_pct: Decimal = Decimal("2")
    min_replicates: int = 3
    max_correction_pct: Decimal = Decimal("10")


@dataclass(frozen=True)
class ValidityPolicy:
    """How long a passed calibration may be used."""

    timezone: ZoneInfo = CLINIC_TZ
    max_age: timedelta = timedelta(hours=24)
    until_end_of_business_day: bool = True
    business_day_ends: time = time(0, 0)

    def valid_until(self, evaluated_at: datetime) -> datetime:
        """Return the first instant at which the calibration is no longer valid."""
        until = evaluated_at + self.max_age
        if self.until_end_of_business_day:
            local = evaluated_at.astimezone(self.timezone)
            end = datetime.combine(local.date(), self.business_day_ends, tzinfo=self.timezone)
            if end <= local:
                end = datetime.combine(
                    local.date() + timedelta(days=1), self.business_day_ends, tzinfo=self.timezone
                )
            until = min(until, end)
        return until


DEFAULT_LIMITS = AcceptanceLimits()
DAILY = ValidityPolicy()


@dataclass(frozen=True)
class VolumeStats:
    """Statistics of the replicates at one nominal volume."""

    nominal_ml: Decimal
    replicates: int
    mean_ml: Decimal
    error_pct: Decimal
    corrected_error_pct: Decimal
    cv_pct: Decimal


@dataclass(frozen=True)
class CalibrationResult:
    """Verdict of one calibration run; what ``dispense`` needs as ``calibration``."""

    pump_id: str
    method: CalibrationMethod
    factor: Decimal
    mean_error_pct: Decimal
    corrected_error_pct: Decimal
    cv_pct: Decimal
    passed: bool
    reason: str | None
    evaluated_at: datetime
    valid_until: datetime
    liquid: str
    lot: str | None
    liquid_used_ml: Decimal
    per_volume: tuple[VolumeStats, ...] = field(default=())

    def is_valid_at(self, now: datetime) -> bool:
        return self.passed and self.evaluated_at - timedelta(minutes=5) <= now < self.valid_until


def replicate_from_weighing(nominal_ml: Decimal, weighing: Weighing) -> Replicate:
    """Return a gravimetric replicate from a balance reading.

    Raises BalanceUnstable for a dynamic reading and WrongUnit for anything but grams:
    such a reading never becomes calibration data.
    """
    if not weighing.stable:
        raise BalanceUnstable("balance reading is not stable")
    if weighing.unit != "g":
        raise WrongUnit(f"balance reading in {weighing.unit!r}, grams required")
    return Replicate(nominal_ml=as_decimal(nominal_ml, what="nominal"), measured_g=weighing.grams)


def _measured_ml(replicate: Replicate, run: CalibrationRun) -> Decimal | None:
    if run.method is CalibrationMethod.GRAVIMETRIC:
        if replicate.measured_g is None or not run.density_g_per_ml:
            return None
        return replicate.measured_g / run.density_g_per_ml
    return replicate.measured_ml


def _pct(value: Decimal) -> Decimal:
    return value.quantize(_PCT_STEP, rounding=ROUND_HALF_UP)


def evaluate_calibration(
    run: CalibrationRun,
    *,
    now: datetime,
    limits: AcceptanceLimits = DEFAULT_LIMITS,
    validity: ValidityPolicy = DAILY,
) -> CalibrationResult:
    """Return factor, errors, CV and verdict for ``run``.

    Never raises for bad measurements: a failed calibration still reports the liquid
    it used. Raises ValueError only for a naive ``now``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    reason: str | None = None
    volumes: list[tuple[Decimal, Decimal]] = []
    used = Decimal(0)
    for replicate in run.replicates:
        measured = _measured_ml(replicate, run)
        used += (
            measured
            if measured is not None and measured > 0
            else max(replicate.nominal_ml, Decimal(0))
        )
        if measured is None or measured <= 0 or replicate.nominal_ml <= 0:
            reason = reason or (
                CalibrationReason.DENSITY_REQUIRED
                if run.method is CalibrationMethod.GRAVIMETRIC and not run.density_g_per_ml
                else CalibrationReason.INVALID_MEASUREMENT
            )
            continue
        volumes.append((replicate.nominal_ml, measured))

    def failed(why: str, **stats: Decimal) -> CalibrationResult:
        return CalibrationResult(
            pump_id=run.pump_id,
            method=run.method,
            factor=stats.get("factor", Decimal(0)),
            mean_error_pct=stats.get("mean_error", Decimal(0)),
            corrected_error_pct=stats.get("corrected", Decimal(0)),
            cv_pct=stats.get("cv", Decimal(0)),
            passed=False,
            reason=why,
            evaluated_at=now,
            valid_until=now,
            liquid=run.liquid,
            lot=run.lot,
            liquid_used_ml=round_ml(used),
        )

    if reason is not None:
        return failed(reason)
    if not volumes:
        return failed(CalibrationReason.TOO_FEW_REPLICATES)

    total_nominal = sum((n for n, _ in volumes), Decimal(0))
    total_measured = sum((m for _, m in volumes), Decimal(0))
    factor = (total_nominal / total_measured).quantize(_FACTOR_STEP, rounding=ROUND_HALF_EVEN)
    mean_error = _pct((total_measured - total_nominal) / total_nominal * 100)

    grouped: dict[Decimal, list[Decimal]] = defaultdict(list)
    for nominal, measured in volumes:
        grouped[nominal].append(measured)
    per_volume = []
    for nominal in sorted(grouped):
        values = grouped[nominal]
        mean = sum(values, Decimal(0)) / len(values)
        cv = statistics.stdev(values) / mean * 100 if len(values) > 1 else Decimal(0)
        per_volume.append(
            VolumeStats(
                nominal_ml=nominal,
                replicates=len(values),
                mean_ml=round_ml(mean),
                error_pct=_pct((mean - nominal) / nominal * 100),
                corrected_error_pct=_pct((mean * factor - nominal) / nominal * 100),
                cv_pct=_pct(cv),
            )
        )
    worst_cv = max(s.cv_pct for s in per_volume)
    worst_corrected = max((s.corrected_error_pct for s in per_volume), key=abs)
    correction_pct = abs(factor - 1) * 100

    if any(s.replicates < limits.min_replicates for s in per_volume):
        reason = CalibrationReason.TOO_FEW_REPLICATES
    elif worst_cv > limits.max_cv_pct:
        reason = CalibrationReason.CV_EXCEEDED
    elif abs(worst_corrected) > limits.max_mean_error_pct:
        reason = CalibrationReason.MEAN_ERROR_EXCEEDED
    elif correction_pct > limits.max_correction_pct:
        reason = CalibrationReason.CORRECTION_TOO_LARGE
    passed = reason is None
    return CalibrationResult(
        pump_id=run.pump_id,
        method=run.method,
        factor=factor,
        mean_error_pct=mean_error,
        corrected_error_pct=worst_corrected,
        cv_pct=worst_cv,
        passed=passed,
        reason=None if passed else str(reason),
        evaluated_at=now,
        valid_until=validity.valid_until(now) if passed else now,
        liquid=run.liquid,
        lot=run.lot,
        liquid_used_ml=round_ml(used),
        per_volume=tuple(per_volume),
    )


def require_valid_calibration(
    calibration: CalibrationResult | None, now: datetime, *, pump_id: str | None = None
) -> CalibrationResult:
    """Return ``calibration`` if it may be used for dispensing at ``now``.

    Raises CalibrationMissing, CalibrationNotPassed, CalibrationWrongPump,
    CalibrationExpired, or CalibrationInvalid (dated in the future).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if calibration is None:
        raise CalibrationMissing("pump has no calibration")
    if not calibration.passed:
        raise CalibrationNotPassed(f"calibration failed: {calibration.reason}")
    if pump_id is not None and calibration.pump_id != pump_id:
        raise CalibrationWrongPump("calibration belongs to another pump")
    if now >= calibration.valid_until:
        raise CalibrationExpired(f"calibration expired at {calibration.valid_until.isoformat()}")
    if now < calibration.evaluated_at - timedelta(minutes=5):
        raise CalibrationInvalid("calibration is dated in the future (clock problem?)")
    return calibration
