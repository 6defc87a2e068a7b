"""Reglo ICC driver and dispense routine against the pty simulator.

The Reglo has no volume counter: a run that stops by itself no earlier than the
volume could have been delivered counts as the setpoint; anything else is unknown
unless a balance confirms it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from devices.dispense import DispenseOutcome, GravimetricCheck, MeasurementSource, dispense
from devices.errors import CommandRejected, VolumeCounterUnavailable
from devices.interfaces import PumpState
from devices.reglo import RegloIccPump, RegloSettings
from devices.simulators import ReplyFault

CEILING = Decimal("40.00")


def go(pump, clock, calibration, volume="2.00", **kwargs):
    return dispense(
        pump, Decimal(volume), calibration=calibration, ceiling_ml=CEILING, clock=clock, **kwargs
    )


def starts(result) -> int:
    return result.transcript.bytes_sent().count(b"1H\r")


def test_session_sets_volume_at_rate_mode_and_flow(reglo_pump, reglo_sim):
    assert reglo_pump.identity.model == "REGLO ICC"
    assert reglo_sim.mode == "O"
    assert reglo_sim.flow == Decimal("30")
    assert not reglo_sim.events_enabled
    with pytest.raises(VolumeCounterUnavailable):
        reglo_pump.dispensed_volume()


def test_dispense_completes_on_setpoint(reglo_pump, reglo_sim, clock, calibration):
    result = go(reglo_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert result.measurement_source is MeasurementSource.SETPOINT
    assert reglo_sim.delivered_ml == Decimal("2.00")
    assert starts(result) == 1
    sent = result.transcript.bytes_sent()
    assert b"1v2000+0\r" in sent and b"1E\r" in sent


def test_early_stop_without_balance_is_uncertain(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.stop_early_at(Decimal("0.80"))

    result = go(reglo_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "SHORT_DELIVERY")
    assert result.uncertain
    assert result.measured_ml == 0  # the pump cannot tell how much
    assert starts(result) == 1


def test_early_stop_with_balance_is_partial_by_weight(
    reglo_pump, reglo_sim, clock, calibration, balance_sim, balance
):
    balance_sim.mass_source = lambda: reglo_sim.delivered_ml * Decimal("1.050")
    reglo_sim.stop_early_at(Decimal("0.80"))
    check = GravimetricCheck(balance=balance, density_g_per_ml=Decimal("1.050"))

    result = go(reglo_pump, clock, calibration, gravimetric=check)

    assert (result.outcome, result.reason) == (DispenseOutcome.PARTIAL, "SHORT_DELIVERY")
    assert result.measured_ml == Decimal("0.80")
    assert result.measurement_source is MeasurementSource.BALANCE
    assert not result.uncertain


def test_complete_dispense_confirmed_by_balance(
    reglo_pump, reglo_sim, clock, calibration, balance_sim, balance
):
    balance_sim.load_g = Decimal("12.345")  # the cup
    balance_sim.mass_source = lambda: reglo_sim.delivered_ml * Decimal("1.050")

    result = go(
        reglo_pump,
        clock,
        calibration,
        gravimetric=GravimetricCheck(balance=balance, density_g_per_ml=Decimal("1.050")),
    )

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert result.measurement_source is MeasurementSource.BALANCE


def test_balance_disagreeing_with_pump_is_uncertain(
    reglo_pump, reglo_sim, clock, calibration, balance_sim, balance
):
    # Tubing worn: the pump believes it pumped 2.00 ml, 1.80 ml reached the cup.
    reglo_sim.delivery_factor = Decimal("0.90")
    balance_sim.mass_source = lambda: reglo_sim.delivered_ml

    result = go(
        reglo_pump,
        clock,
        calibration,
        gravimetric=GravimetricCheck(balance=balance, density_g_per_ml=Decimal(1)),
    )

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "GRAVIMETRIC_MISMATCH")
    assert result.uncertain
    assert result.measured_ml == Decimal("1.80")


def test_refused_start_reports_pump_reason(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.refuse_start = True

    result = go(reglo_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "COMMAND_REJECTED")
    assert not result.uncertain
    assert b"1xe\r" in result.transcript.bytes_sent()
    with pytest.raises(CommandRejected) as raised:
        reglo_pump.start()
    assert raised.value.code == "R"


def test_noise_looking_like_acceptance_is_not_believed(reglo_pump, reglo_sim):
    reglo_sim.inject(ReplyFault.GARBAGE, on="v", times=1)
    # Noise "\x00*~" arrives before "*": the driver must not read it as "done",
    # it retries and reads the volume back.
    assert reglo_pump.prepare(Decimal("3.00")) == Decimal("3.00")
    assert reglo_sim.count("v3000+0") == 2


def test_garbage_on_every_reply_before_run_fails_safely(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.inject(ReplyFault.GARBAGE, times=None)

    result = go(reglo_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "PROTOCOL_ERROR")
    assert starts(result) == 0


def test_no_reply_to_start_is_not_retried(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.inject(ReplyFault.NO_REPLY, on="H")

    result = go(reglo_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert starts(result) == 1 and reglo_sim.count("H") == 1


def test_start_lost_on_the_way_is_failed_not_retried(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.inject(ReplyFault.DROP_COMMAND, on="H")

    result = go(reglo_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "NO_REPLY")
    assert result.uncertain  # without a counter the Reglo cannot prove it did not move
    assert starts(result) == 1
    assert reglo_sim.delivered_ml == 0


def test_partial_line_and_slow_reply_are_retried(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.inject(ReplyFault.PARTIAL_FRAME, on="v", times=1)
    reglo_sim.inject(ReplyFault.SLOW_REPLY, on="E", times=2, delay_s=0.3)

    result = go(reglo_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert starts(result) == 1


def test_readback_mismatch_fails_before_start(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.readback_override = Decimal("2.500")

    result = go(reglo_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "READBACK_MISMATCH")
    assert starts(result) == 0


def test_port_lost_mid_run_is_uncertain(reglo_pump, reglo_sim, clock, calibration):
    reglo_sim.vanish_at(Decimal("1.00"))

    result = go(reglo_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "PORT_LOST")
    assert result.uncertain


def test_status_and_stop(reglo_pump, reglo_sim, clock):
    reglo_pump.prepare(Decimal("5.00"))
    reglo_pump.start()
    assert reglo_pump.status().state is PumpState.RUNNING
    clock.sleep(1)
    reglo_pump.stop()
    assert reglo_pump.status().state is PumpState.STOPPED
    assert reglo_sim.delivered_ml == Decimal("0.50")


def test_volume_needing_five_digits_is_refused_before_sending(reglo_sim, clock):
    settings = RegloSettings(reply_timeout_s=0.15, max_volume_ml=Decimal("500"))
    with RegloIccPump.connect(reglo_sim.port, settings, clock=clock) as pump:
        before = len(reglo_sim.commands)
        with pytest.raises(CommandRejected):
            pump.prepare(Decimal("123.45"))
        assert len(reglo_sim.commands) == before
