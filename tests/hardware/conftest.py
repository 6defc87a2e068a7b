"""Hardware tests: run only when an environment variable names a real port.

    MMT_HW_PUMP_PORT=/dev/ttyUSB0 MMT_HW_PUMP_DIAMETER_MM=26.70 MMT_HW_PUMP_RATE_ML_MIN=30 \\
        .venv/bin/pytest tests/hardware -m hardware

Variables (a test is skipped when its port variable is unset):

* NE-1000: MMT_HW_PUMP_PORT, MMT_HW_PUMP_ADDRESS (0), MMT_HW_PUMP_BAUD (19200),
  MMT_HW_PUMP_DIAMETER_MM and MMT_HW_PUMP_RATE_ML_MIN (required: connecting writes
  them to the pump, so they must be the real syringe's), MMT_HW_PUMP_SAFE_TIMEOUT_S (10).
* Reglo ICC: MMT_HW_REGLO_PORT, MMT_HW_REGLO_ADDRESS (1), MMT_HW_REGLO_FLOW_ML_MIN (required).
* Balance: MMT_HW_BALANCE_PORT, MMT_HW_BALANCE_BAUD (9600).
* Scanner: MMT_HW_SCANNER_PORT, MMT_HW_SCANNER_EXPECT (the code you will scan within 30 s).
* Liquid moves only with MMT_HW_ALLOW_DISPENSE=1 and MMT_HW_DISPENSE_ML (e.g. 1.00);
  put a container under the outlet.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest


class HardwareEnvironment:
    """Reads MMT_HW_* variables; a missing one skips the test that needs it."""

    def text(self, name: str, default: str | None = None) -> str:
        value = os.environ.get(name, default)
        if not value:
            pytest.skip(f"{name} not set")
        return value

    def integer(self, name: str, default: str | None = None) -> int:
        return int(self.text(name, default))

    def decimal(self, name: str, default: str | None = None) -> Decimal:
        return Decimal(self.text(name, default))

    def dispense_volume(self) -> Decimal:
        """Return the volume a test may dispense; skips unless liquid may move."""
        if os.environ.get("MMT_HW_ALLOW_DISPENSE") != "1":
            pytest.skip("MMT_HW_ALLOW_DISPENSE=1 not set (this test moves liquid)")
        return self.decimal("MMT_HW_DISPENSE_ML")


@pytest.fixture
def hw() -> HardwareEnvironment:
    return HardwareEnvironment()
