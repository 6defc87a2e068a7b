"""NE-1000 driver session behaviour against the pty simulator."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import pytest

from devices.errors import OutOfRange, PortUnavailable, PumpAlarm, VolumeCeilingExceeded
from devices.interfaces import Pump, PumpState
from devices.ne1000 import Ne1000Pump
from devices.simulators import Ne1000Simulator
from devices.transcript import Transcript


def wait_until(condition, timeout_s=2.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_connect_identifies_configures_and_acknowledges_power_on(ne_pump, ne_sim):
    assert isinstance(ne_pump, Pump)
    assert str(ne_pump.identity) == "NE1000 fw 3.928"
    # The power-on alarm was acknowledged, and the settings written and read back.
    assert ne_sim.alarm is None
    assert ne_sim.diameter == Decimal("26.70")
    assert (ne_sim.rate, ne_sim.rate_units, ne_sim.direction) == (Decimal("30"), "MM", "INF")
    assert ne_sim.safe_mode and ne_sim.safe_timeout_s == 4


def test_power_on_reset_is_remembered_for_recovery(ne_pump, clock, ne_settings):
    # The simulator was just "powered on": its counter says nothing about earlier doses.
    assert ne_pump.power_reset_seen and ne_pump.last_unsolicited_alarm == "R"
    with Ne1000Simulator(clock=clock, power_on_alarm=False) as sim:
        with Ne1000Pump.connect(sim.port, ne_settings, device_id="p", clock=clock) as pump:
            assert not pump.power_reset_seen and pump.last_unsolicited_alarm is None


def test_status_and_counter(ne_pump):
    status = ne_pump.status()
    assert status.state is PumpState.STOPPED
    assert status.dispensed_ml == 0


def test_prepare_above_ceiling_sends_nothing(ne_pump):
    transcript = Transcript()
    with ne_pump.recording(transcript), pytest.raises(VolumeCeilingExceeded):
        ne_pump.prepare(Decimal("50.01"))
    assert len(transcript) == 0


@pytest.mark.parametrize("volume", ["0.00", "-1", "1.001"])
def test_prepare_refuses_invalid_volume_without_sending(ne_pump, volume):
    transcript = Transcript()
    with ne_pump.recording(transcript), pytest.raises((OutOfRange, ValueError)):
        ne_pump.prepare(Decimal(volume))
    assert len(transcript) == 0


def test_prepare_returns_pump_readback(ne_pump, ne_sim):
    assert ne_pump.prepare(Decimal("12.34")) == Decimal("12.34")
    assert ne_sim.volume == Decimal("12.34")


def test_pump_rejection_is_typed(ne_pump, ne_sim):
    ne_pump.prepare(Decimal("1.00"))
    ne_pump.start()
    # Changing the volume while infusing is "not applicable" on the pump.
    with pytest.raises(Exception) as raised:
        ne_pump.prepare(Decimal("2.00"))
    assert getattr(raised.value, "code", None) == "NA"
    ne_pump.stop()
    assert ne_sim.prompt == "S"


def test_stop_from_running_needs_two_stp_and_ends_stopped(ne_pump, ne_sim, clock):
    ne_pump.clear_counter()
    ne_pump.prepare(Decimal("5.00"))
    ne_pump.start()
    clock.sleep(1)
    ne_pump.stop()
    assert ne_sim.prompt == "S"
    assert ne_sim.count("STP") == 2
    assert ne_pump.dispensed_volume() == Decimal("0.50")


def test_alarm_in_reply_is_raised_with_code(ne_pump, ne_sim, clock):
    ne_pump.clear_counter()
    ne_pump.prepare(Decimal("5.00"))
    ne_pump.start()
    ne_sim.stall_at(Decimal("0.25"))
    clock.sleep(1)
    with pytest.raises(PumpAlarm) as raised:
        ne_pump.status()
    assert raised.value.code == "S" and raised.value.reason == "PUMP_STALL"
    # The alarm reply acknowledged it; the counter is readable again.
    assert ne_pump.dispensed_volume() == Decimal("0.25")


def test_heartbeat_keeps_idle_pump_alive(ne_pump, ne_sim, clock):
    # Safe-mode timeout 4 s: the heartbeat must speak at least every 2 s of clock
    # time while the pump is idle.
    for _ in range(5):
        sent = len(ne_sim.commands)
        clock.advance(2.2)
        assert wait_until(lambda sent=sent: len(ne_sim.commands) > sent), "no heartbeat"
    assert "T" not in ne_sim.alarm_history
    assert ne_sim.alarm is None


def test_without_heartbeat_idle_watchdog_fires_and_is_acknowledged(ne_sim, ne_settings, clock):
    settings = dataclasses.replace(ne_settings, heartbeat=False)
    with Ne1000Pump.connect(ne_sim.port, settings, device_id="p", clock=clock) as pump:
        clock.advance(5)
        assert wait_until(lambda: "T" in ne_sim.alarm_history)
        # An idle watchdog alarm is acknowledged and the command goes through.
        pump.clear_counter()
        assert pump.status().state is PumpState.STOPPED
    assert ne_sim.alarm is None


def test_power_cycle_while_idle_triggers_reconfiguration(ne_pump, ne_sim):
    ne_sim.power_cycle()
    ne_sim.diameter = Decimal("10.00")  # as if the pump came back with other settings
    assert ne_pump.prepare(Decimal("1.00")) == Decimal("1.00")
    assert ne_sim.diameter == Decimal("26.70")


def test_basic_mode_pump_is_switched_to_safe_mode(clock, ne_settings):
    with Ne1000Simulator(clock=clock, safe_mode=False, power_on_alarm=False) as sim:
        with Ne1000Pump.connect(sim.port, ne_settings, device_id="p", clock=clock) as pump:
            assert sim.safe_mode and sim.safe_timeout_s == 4
            assert pump.status().state is PumpState.STOPPED


def test_wrong_address_is_no_reply(clock, ne_settings):
    with Ne1000Simulator(clock=clock, address=7) as sim:
        with pytest.raises(Exception) as raised:
            Ne1000Pump.connect(sim.port, ne_settings, device_id="p", clock=clock)
    assert raised.value.reason in ("NO_REPLY", "FRAMING_ERROR")


def test_missing_port_is_port_unavailable(ne_settings, clock):
    with pytest.raises(PortUnavailable):
        Ne1000Pump.connect("/dev/does-not-exist", ne_settings, clock=clock)


def test_prime_reports_purged_volume(ne_pump, ne_sim, clock):
    # Purge runs at the pump's purge rate (60 ml/min here) for 2 s of clock time.
    volume = ne_pump.prime(2.0)
    assert volume == Decimal("2.000")
    assert ne_sim.prompt == "S"
    assert ne_sim.delivered_ml == Decimal("2.000")
