"""Device registry, simulators started from config, and ``run.py devices check``."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

from devices.cli import EXIT_CONFIG_ERROR, EXIT_DEVICE_FAILED, EXIT_OK, check_devices
from devices.dispense import DispenseOutcome, GravimetricCheck, dispense
from devices.mtsics import MtSicsBalance
from devices.ne1000 import Ne1000Pump
from devices.registry import load_registry, open_counter
from devices.scan import ScanKind
from devices.simulators import MtSicsSimulator, ScannerSimulator, start_counter_simulators

CONFIG = Path(__file__).resolve().parents[3] / "config" / "devices.toml"


def test_check_devices_with_project_config_identifies_every_device():
    out = io.StringIO()

    code = check_devices(CONFIG, out=out)

    text = out.getvalue()
    assert code == EXIT_OK, text
    assert "Q1 (Quầy 1)" in text
    assert "pump     ne1000         OK     NE1000 fw 3.928; STOPPED, counter 0.000 ml" in text
    assert "balance  mt-sics        OK     XSR204 220 g s/n B812345678; 0.000 g (stable)" in text
    assert "pump     reglo-icc      OK     REGLO ICC fw 0208; STOPPED" in text
    assert "FAILED" not in text


def test_check_devices_reports_missing_port():
    config = {
        "counters": {
            "c1": {
                "pump": {
                    "driver": "ne1000",
                    "url": "/dev/does-not-exist",
                    "reply_timeout_s": "0.1",
                },
                "balance": {"url": "sim://mt-sics"},
            }
        }
    }
    out = io.StringIO()

    code = check_devices(config, out=out)

    assert code == EXIT_DEVICE_FAILED
    assert "pump     ne1000         FAILED PORT_UNAVAILABLE" in out.getvalue()
    assert "balance  mt-sics        OK" in out.getvalue()


def test_check_devices_reports_silent_device():
    # A TCP port nobody answers on: the simulator is there but muted.
    with MtSicsSimulator(transport="tcp") as sim:
        sim.mute()
        config = {
            "counters": {
                "c1": {"balance": {"driver": "mt-sics", "url": sim.url, "reply_timeout_s": "0.1"}}
            }
        }
        out = io.StringIO()
        code = check_devices(config, out=out)
    assert code == EXIT_DEVICE_FAILED
    assert "FAILED NO_REPLY" in out.getvalue()


def test_check_devices_with_bad_config_is_exit_2():
    out = io.StringIO()
    assert check_devices(
        {"counters": {"c1": {"pump": {"url": "sim://ne1000", "colour": "red"}}}}, out=out
    ) == (EXIT_CONFIG_ERROR)
    assert "unknown settings ['colour']" in out.getvalue()


def test_open_counter_starts_coupled_simulators(clock, make_calibration):
    with open_counter(CONFIG, "Q1", clock=clock) as devices:
        assert isinstance(devices.pump, Ne1000Pump) and isinstance(devices.balance, MtSicsBalance)
        assert devices.pump.device_id == "Q1/pump"
        assert devices.counter.pump.url.startswith("/dev/")
        check = GravimetricCheck(balance=devices.balance, density_g_per_ml=Decimal("1.000"))
        result = dispense(
            devices.pump,
            Decimal("3.00"),
            calibration=make_calibration(pump_id="Q1/pump"),
            ceiling_ml=Decimal("40"),
            clock=clock,
            gravimetric=check,
        )
    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("3.00")
    assert any("balance: 3.000 g" in note for note in result.notes)


def test_start_counter_simulators_for_the_demo(clock):
    registry = load_registry(CONFIG)
    with start_counter_simulators(registry, clock=clock) as simulators:
        scanner_sim = simulators["Q1/scanner"]
        assert isinstance(scanner_sim, ScannerSimulator)
        resolved = simulators.registry
        assert all(not device.simulated for device in resolved.devices())
        with open_counter(resolved, "Q1", clock=clock) as devices:
            assert devices.simulators == []
            scanner_sim.emit("P000123")
            scan = devices.scanner.read_scan(1)
    assert scan.kind is ScanKind.PATIENT_CARD
    assert not any(sim.serving for sim in simulators.simulators.values())
