"""Loading config/devices.toml and validating device settings."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from devices.errors import DeviceConfigError
from devices.mtsics import MtSicsSettings
from devices.ne1000 import Ne1000Settings
from devices.registry import load_registry
from devices.reglo import RegloSettings

CONFIG = Path(__file__).resolve().parents[3] / "config" / "devices.toml"


def test_project_config_loads_with_exact_decimals():
    registry = load_registry(CONFIG)

    assert set(registry.counters) == {"Q1", "Q2"}
    counter = registry.counter("Q1")
    assert counter.name == "Quầy 1"
    pump = counter.pump.driver_settings()
    assert isinstance(pump, Ne1000Settings)
    assert pump.max_volume_ml == Decimal("100.00") and isinstance(pump.max_volume_ml, Decimal)
    assert pump.syringe_diameter_mm == Decimal("26.70")
    assert pump.safe_mode_timeout_s == 10
    assert isinstance(counter.balance.driver_settings(), MtSicsSettings)
    assert isinstance(registry.counter("Q2").pump.driver_settings(), RegloSettings)
    assert registry.counter("Q2").balance is None
    assert registry.wedge_separator == "|"
    assert counter.pump.device_id == "Q1/pump" and counter.pump.simulated


def test_toml_floats_become_decimals(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(
        '[counters.c1.pump]\ndriver = "ne1000"\nurl = "/dev/ttyUSB0"\nmax_volume_ml = 25.5\nrate_ml_min = 12.25\n',
        encoding="utf-8",
    )
    settings = load_registry(path).counter("c1").pump.driver_settings()
    assert settings.max_volume_ml == Decimal("25.5")
    assert settings.rate_ml_min == Decimal("12.25")


def test_driver_defaults_from_sim_url_and_url_replacement():
    registry = load_registry({"counters": {"c1": {"pump": {"url": "sim://reglo"}}}})
    assert registry.counter("c1").pump.driver == "reglo-icc"
    moved = registry.with_urls({"c1/pump": "/dev/pts/9"})
    assert moved.counter("c1").pump.url == "/dev/pts/9"
    assert registry.counter("c1").pump.url == "sim://reglo"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "no \\[counters"),
        ({"counters": {"c1": {"pump": {"driver": "ne1000"}}}}, "url is required"),
        (
            {"counters": {"c1": {"pump": {"driver": "imed", "url": "/dev/x"}}}},
            "driver must be one of",
        ),
        (
            {"counters": {"c1": {"pump": {"driver": "ne1000", "url": "sim://reglo"}}}},
            "does not simulate",
        ),
        (
            {"counters": {"c1": {"pump": {"url": "sim://ne1000", "max_volume_ml": 25.5}}}},
            "expected a number",
        ),
        (
            {"counters": {"c1": {"pump": {"url": "sim://ne1000", "address": 120}}}},
            "address must be 0-99",
        ),
        (
            {"counters": {"c1": {"pump": {"url": "sim://ne1000", "safe_mode_timeout_s": 0}}}},
            "1-255",
        ),
        (
            {"counters": {"c1": {"pump": {"url": "sim://ne1000", "rate_ml_min": "123.45"}}}},
            "4 digits",
        ),
        (
            {"counters": {"c1": {"pump": {"url": "sim://ne1000", "heartbeat": "yes"}}}},
            "true or false",
        ),
        (
            {"counters": {"c1": {"pump": {"url": "sim://ne1000", "poll_interval_s": 9}}}},
            "half the safe-mode",
        ),
        ({"counters": {"c1": {"printer": {"url": "/dev/lp0"}}}}, "unknown keys"),
        (
            {"counters": {"c1": {"scanner": {"url": "sim://scanner", "separator": "-"}}}},
            "separator",
        ),
        ({"scan": {"wedge_separator": "A"}, "counters": {"c1": {}}}, "wedge_separator"),
    ],
)
def test_invalid_configuration_is_refused(config, message):
    with pytest.raises(DeviceConfigError, match=message):
        load_registry(config)


def test_unreadable_or_invalid_toml(tmp_path):
    with pytest.raises(DeviceConfigError, match="cannot read"):
        load_registry(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[counters\n", encoding="utf-8")
    with pytest.raises(DeviceConfigError, match="not valid TOML"):
        load_registry(bad)


def test_unknown_counter():
    with pytest.raises(DeviceConfigError, match="no counter"):
        load_registry(CONFIG).counter("counter-9")
