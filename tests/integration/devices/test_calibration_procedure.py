"""Gravimetric calibration of a simulated pump on a simulated balance, end to end."""

from __future__ import annotations

from decimal import Decimal

import pytest

from devices.calibration import CalibrationMethod, evaluate_calibration
from devices.calibration_procedure import run_gravimetric_calibration
from devices.dispense import DispenseOutcome, dispense
from devices.errors import CalibrationAborted

DENSITY = Decimal("1.000")


@pytest.fixture
def rig(ne_pump, ne_sim, balance, balance_sim):
    # The balance weighs what the pump really delivered, in a 20 g cup.
    balance_sim.load_g = Decimal("20.000")
    balance_sim.mass_source = lambda: ne_sim.delivered_ml * DENSITY
    return ne_pump, ne_sim, balance, balance_sim


def test_calibrate_then_dispense_accurately_then_expire(rig, clock):
    pump, sim, balance, _ = rig
    sim.delivery_factor = Decimal("0.98")  # the pump delivers 2 % short

    run = run_gravimetric_calibration(
        pump,
        balance,
        nominal_volumes_ml=[Decimal("2.00"), Decimal("5.00")],
        replicates=3,
        density_g_per_ml=DENSITY,
        liquid="water",
        ceiling_ml=Decimal("40"),
        clock=clock,
    )
    result = evaluate_calibration(run, now=clock.now())

    assert run.method is CalibrationMethod.GRAVIMETRIC and len(run.replicates) == 6
    assert [r.measured_g for r in run.replicates[:3]] == [Decimal("1.960")] * 3
    assert result.passed, result.reason
    assert result.factor == Decimal("1.0204")
    assert result.mean_error_pct == Decimal("-2.00")
    assert result.liquid_used_ml == Decimal("20.58")  # 0.98 x (3 x 2 + 3 x 5)

    before = sim.delivered_ml
    dosed = dispense(
        pump, Decimal("8.00"), calibration=result, ceiling_ml=Decimal("40"), clock=clock
    )
    assert dosed.outcome is DispenseOutcome.COMPLETED
    assert dosed.programmed_ml == Decimal("8.16")
    assert dosed.measured_ml == Decimal("8.00")
    assert abs(sim.delivered_ml - before - Decimal("8.00")) <= Decimal("0.01")

    # Daily calibration: the next morning this pump refuses volume dispensing.
    clock.advance(24 * 3600)
    refused = dispense(
        pump, Decimal("8.00"), calibration=result, ceiling_ml=Decimal("40"), clock=clock
    )
    assert (refused.outcome, refused.reason) == (DispenseOutcome.FAILED, "CALIBRATION_EXPIRED")
    assert len(refused.transcript) == 0


def test_unstable_balance_aborts_calibration_and_reports_liquid(rig, clock):
    pump, sim, balance, balance_sim = rig
    balance_sim.unstable = True

    with pytest.raises(CalibrationAborted) as raised:
        run_gravimetric_calibration(
            pump,
            balance,
            nominal_volumes_ml=[Decimal("2.00")],
            density_g_per_ml=DENSITY,
            liquid="methadone 10 mg/ml",
            lot="MT2501",
            ceiling_ml=Decimal("40"),
            clock=clock,
            stable_timeout_s=1,
        )
    # The balance would not even tare: nothing was dispensed.
    assert raised.value.cause_reason == "UNSTABLE_READING"
    assert raised.value.liquid_used_ml == 0
    assert sim.delivered_ml == 0


def test_balance_in_wrong_unit_aborts_after_dispense(rig, clock, monkeypatch):
    pump, sim, balance, balance_sim = rig
    original_tare = balance.tare

    def tare_then_someone_switches_the_display_to_carats():
        value = original_tare()
        balance_sim.unit = "ct"
        return value

    monkeypatch.setattr(balance, "tare", tare_then_someone_switches_the_display_to_carats)
    with pytest.raises(CalibrationAborted) as raised:
        run_gravimetric_calibration(
            pump,
            balance,
            nominal_volumes_ml=[Decimal("2.00")],
            density_g_per_ml=DENSITY,
            liquid="water",
            ceiling_ml=Decimal("40"),
            clock=clock,
        )
    # The carat reading is refused; the 2 ml already dispensed is still reported.
    assert raised.value.cause_reason == "WRONG_UNIT"
    assert raised.value.liquid_used_ml == Decimal("2.00")


def test_stall_during_calibration_aborts_with_partial_liquid(rig, clock):
    pump, sim, balance, _ = rig
    sim.stall_at(Decimal("1.50"))
    with pytest.raises(CalibrationAborted) as raised:
        run_gravimetric_calibration(
            pump,
            balance,
            nominal_volumes_ml=[Decimal("2.00")],
            density_g_per_ml=DENSITY,
            liquid="water",
            ceiling_ml=Decimal("40"),
            clock=clock,
        )
    assert raised.value.cause_reason == "PUMP_STALL"
    assert raised.value.liquid_used_ml == Decimal("1.50")
