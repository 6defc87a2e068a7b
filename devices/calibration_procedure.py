"""Run a gravimetric pump calibration against a balance.

For each replicate: tare the balance with the receiving container on it, dispense
the nominal volume uncorrected, take a stable reading in grams. The replicates go
to ``devices.calibration.evaluate_calibration``; that module stays pure.

If a replicate fails, ``CalibrationAborted`` is raised with the liquid dispensed so
far, because the stock ledger must book it whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import structlog

from devices.calibration import (
    CalibrationMethod,
    CalibrationRun,
    Replicate,
    replicate_from_weighing,
)
from devices.clock import SYSTEM_CLOCK, Clock
from devices.dispense import DispenseOutcome, DispenseResult, dispense_for_calibration
from devices.errors import CalibrationAborted, DeviceError
from devices.interfaces import Balance, Pump
from devices.quantities import ZERO_ML, round_ml

log = structlog.get_logger(__name__)


def run_gravimetric_calibration(
    pump: Pump,
    balance: Balance,
    *,
    nominal_volumes_ml: Sequence[Decimal],
    replicates: int = 3,
    density_g_per_ml: Decimal,
    liquid: str,
    lot: str | None = None,
    ceiling_ml: Decimal,
    clock: Clock = SYSTEM_CLOCK,
    stable_timeout_s: float = 30.0,
    on_replicate: Callable[[Replicate, DispenseResult], None] | None = None,
) -> CalibrationRun:
    """Return the calibration run with one replicate per dispense.

    Raises CalibrationAborted (with ``liquid_used_ml``) when a dispense does not
    complete or the balance gives no stable reading in grams.
    """
    if density_g_per_ml <= 0:
        raise ValueError("density must be positive")
    taken: list[Replicate] = []
    used = ZERO_ML
    performed_at = clock.now()
    for nominal in nominal_volumes_ml:
        for _ in range(replicates):
            try:
                balance.tare()
            except DeviceError as exc:
                raise CalibrationAborted(
                    "balance could not tare", cause_reason=exc.reason, liquid_used_ml=used
                ) from exc
            result = dispense_for_calibration(pump, nominal, ceiling_ml=ceiling_ml, clock=clock)
            if result.outcome is not DispenseOutcome.COMPLETED:
                used += result.measured_ml
                raise CalibrationAborted(
                    f"replicate dispense {result.outcome}",
                    cause_reason=result.reason or str(result.outcome),
                    liquid_used_ml=round_ml(used),
                )
            try:
                replicate = replicate_from_weighing(
                    nominal, balance.stable_weight(stable_timeout_s)
                )
            except DeviceError as exc:
                used += result.measured_ml
                raise CalibrationAborted(
                    "no stable reading in grams",
                    cause_reason=exc.reason,
                    liquid_used_ml=round_ml(used),
                ) from exc
            used += replicate.measured_g / density_g_per_ml  # type: ignore[operator]
            taken.append(replicate)
            log.info("calibration.replicate", pump=pump.device_id, nominal_ml=str(nominal))
            if on_replicate is not None:
                on_replicate(replicate, result)
    return CalibrationRun(
        pump_id=pump.device_id,
        method=CalibrationMethod.GRAVIMETRIC,
        replicates=tuple(taken),
        performed_at=performed_at,
        liquid=liquid,
        lot=lot,
        density_g_per_ml=density_g_per_ml,
    )
