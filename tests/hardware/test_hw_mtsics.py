"""Real Mettler Toledo balance speaking MT-SICS."""

from __future__ import annotations

import pytest

from devices.mtsics import MtSicsBalance, MtSicsSettings

pytestmark = pytest.mark.hardware


@pytest.fixture
def balance(hw):
    port = hw.text("MMT_HW_BALANCE_PORT")
    settings = MtSicsSettings(baudrate=hw.integer("MMT_HW_BALANCE_BAUD", "9600"))
    with MtSicsBalance.connect(port, settings, device_id="hw/balance") as device:
        yield device


def test_identify_with_serial_number(balance):
    assert balance.identity.model
    assert balance.identity.serial_number


def test_stable_reading_in_grams(balance):
    weighing = balance.stable_weight(timeout_s=20)
    assert weighing.stable and weighing.unit == "g"


def test_tare_then_zero_net(balance):
    balance.tare()
    assert abs(balance.stable_weight(timeout_s=20).grams) < 1
