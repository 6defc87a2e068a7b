"""Real Ismatec Reglo ICC."""

from __future__ import annotations

from decimal import Decimal

import pytest

from devices.dispense import DispenseOutcome, dispense_for_calibration
from devices.interfaces import PumpState
from devices.reglo import RegloIccPump, RegloSettings

pytestmark = pytest.mark.hardware


@pytest.fixture
def pump(hw):
    port = hw.text("MMT_HW_REGLO_PORT")
    settings = RegloSettings(
        address=hw.integer("MMT_HW_REGLO_ADDRESS", "1"),
        flow_ml_min=hw.decimal("MMT_HW_REGLO_FLOW_ML_MIN"),
        max_volume_ml=Decimal("10.00"),
    )
    with RegloIccPump.connect(port, settings, device_id="hw/reglo") as device:
        yield device


def test_identify_status_and_volume_readback(pump):
    assert pump.identity.model
    assert pump.status().state is PumpState.STOPPED
    assert pump.prepare(Decimal("1.50")) == Decimal("1.50")


def test_dispense_completes_on_setpoint(pump, hw):
    volume = hw.dispense_volume()
    result = dispense_for_calibration(pump, volume, ceiling_ml=Decimal("10.00"))
    assert result.outcome is DispenseOutcome.COMPLETED, result.to_dict()
