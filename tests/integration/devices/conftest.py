"""Fixtures: real drivers against pty simulators on a virtual clock.

The virtual clock only moves when the code under test sleeps on it, so a 10 s
dispense takes milliseconds and the pump simulator's delivery is exact. Serial
reply timeouts stay real seconds; they are short here so fault tests stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from devices.calibration import CalibrationMethod, CalibrationResult
from devices.clock import VirtualClock
from devices.mtsics import MtSicsBalance, MtSicsSettings
from devices.ne1000 import Ne1000Pump, Ne1000Settings
from devices.reglo import RegloIccPump, RegloSettings
from devices.scanner import ScannerSettings, SerialScanner
from devices.simulators import MtSicsSimulator, Ne1000Simulator, RegloSimulator, ScannerSimulator

REPLY_TIMEOUT_S = 0.15
PUMP_ID = "counter-1/pump"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def ne_settings() -> Ne1000Settings:
    return Ne1000Settings(
        reply_timeout_s=REPLY_TIMEOUT_S,
        poll_interval_s=0.5,
        safe_mode_timeout_s=4,
        rate_ml_min=Decimal("30"),
        max_volume_ml=Decimal("50.00"),
    )


@pytest.fixture
def ne_sim(clock: VirtualClock) -> Iterator[Ne1000Simulator]:
    with Ne1000Simulator(clock=clock) as sim:
        yield sim
    assert sim.errors == []


@pytest.fixture
def ne_pump(
    ne_sim: Ne1000Simulator, ne_settings: Ne1000Settings, clock: VirtualClock
) -> Iterator[Ne1000Pump]:
    pump = Ne1000Pump.connect(ne_sim.port, ne_settings, device_id=PUMP_ID, clock=clock)
    yield pump
    pump.close()


@pytest.fixture
def reglo_sim(clock: VirtualClock) -> Iterator[RegloSimulator]:
    with RegloSimulator(clock=clock) as sim:
        yield sim
    assert sim.errors == []


@pytest.fixture
def reglo_pump(reglo_sim: RegloSimulator, clock: VirtualClock) -> Iterator[RegloIccPump]:
    settings = RegloSettings(
        reply_timeout_s=REPLY_TIMEOUT_S,
        poll_interval_s=0.5,
        flow_ml_min=Decimal("30"),
        max_volume_ml=Decimal("50.00"),
        quiet_s=0.005,
    )
    pump = RegloIccPump.connect(reglo_sim.port, settings, device_id=PUMP_ID, clock=clock)
    yield pump
    pump.close()


@pytest.fixture
def balance_sim(clock: VirtualClock) -> Iterator[MtSicsSimulator]:
    with MtSicsSimulator(clock=clock) as sim:
        yield sim
    assert sim.errors == []


@pytest.fixture
def balance(balance_sim: MtSicsSimulator, clock: VirtualClock) -> Iterator[MtSicsBalance]:
    settings = MtSicsSettings(
        reply_timeout_s=REPLY_TIMEOUT_S, stable_timeout_s=5, retry_interval_s=0.25
    )
    device = MtSicsBalance.connect(
        balance_sim.port, settings, device_id="counter-1/balance", clock=clock
    )
    yield device
    device.close()


@pytest.fixture
def scanner_sim(clock: VirtualClock) -> Iterator[ScannerSimulator]:
    with ScannerSimulator(clock=clock) as sim:
        yield sim
    assert sim.errors == []


@pytest.fixture
def scanner(scanner_sim: ScannerSimulator) -> Iterator[SerialScanner]:
    device = SerialScanner.connect(
        scanner_sim.port, ScannerSettings(), device_id="counter-1/scanner"
    )
    yield device
    device.close()


def _calibration(clock: VirtualClock, factor: str, pump_id: str, hours: float) -> CalibrationResult:
    now = clock.now()
    return CalibrationResult(
        pump_id=pump_id,
        method=CalibrationMethod.GRAVIMETRIC,
        factor=Decimal(factor),
        mean_error_pct=Decimal(0),
        corrected_error_pct=Decimal(0),
        cv_pct=Decimal(0),
        passed=True,
        reason=None,
        evaluated_at=now,
        valid_until=now + timedelta(hours=hours),
        liquid="water",
        lot=None,
        liquid_used_ml=Decimal("30.00"),
    )


@pytest.fixture
def make_calibration(clock: VirtualClock) -> Callable[..., CalibrationResult]:
    """Return a factory for passed calibrations valid from the clock's now."""

    def make(
        factor: str = "1.0000", *, pump_id: str = PUMP_ID, hours: float = 8
    ) -> CalibrationResult:
        return _calibration(clock, factor, pump_id, hours)

    return make


@pytest.fixture
def calibration(clock: VirtualClock) -> CalibrationResult:
    return _calibration(clock, "1.0000", PUMP_ID, 8)
