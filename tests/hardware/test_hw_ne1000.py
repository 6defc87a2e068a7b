"""Real NE-1000 family pump in safe mode."""

from __future__ import annotations

from decimal import Decimal

import pytest

from devices.clock import SystemClock
from devices.dispense import DispenseOutcome, dispense_for_calibration
from devices.interfaces import PumpState
from devices.ne1000 import Ne1000Pump, Ne1000Settings
from devices.transcript import Transcript

pytestmark = pytest.mark.hardware


@pytest.fixture
def pump(hw):
    port = hw.text("MMT_HW_PUMP_PORT")
    settings = Ne1000Settings(
        address=hw.integer("MMT_HW_PUMP_ADDRESS", "0"),
        baudrate=hw.integer("MMT_HW_PUMP_BAUD", "19200"),
        safe_mode_timeout_s=hw.integer("MMT_HW_PUMP_SAFE_TIMEOUT_S", "10"),
        syringe_diameter_mm=hw.decimal("MMT_HW_PUMP_DIAMETER_MM"),
        rate_ml_min=hw.decimal("MMT_HW_PUMP_RATE_ML_MIN"),
        max_volume_ml=Decimal("10.00"),
    )
    with Ne1000Pump.connect(port, settings, device_id="hw/pump") as device:
        yield device


def test_identify_and_status(pump):
    assert pump.identity.model.startswith("NE")
    status = pump.status()
    assert status.state in (PumpState.STOPPED, PumpState.PAUSED)
    assert status.dispensed_ml is not None


def test_program_and_read_back_without_running(pump):
    transcript = Transcript()
    with pump.recording(transcript):
        pump.clear_counter()
        assert pump.prepare(Decimal("1.23")) == Decimal("1.23")
    assert b"RUN" not in transcript.bytes_sent()


def test_heartbeat_keeps_idle_pump_out_of_watchdog_alarm(pump):
    SystemClock().sleep(pump.settings.safe_mode_timeout_s * 1.5)
    assert pump.status().state in (PumpState.STOPPED, PumpState.PAUSED)


def test_dispense_and_read_counter_back(pump, hw):
    volume = hw.dispense_volume()
    result = dispense_for_calibration(pump, volume, ceiling_ml=Decimal("10.00"))
    assert result.outcome is DispenseOutcome.COMPLETED, result.to_dict()
    assert result.measured_ml == volume
