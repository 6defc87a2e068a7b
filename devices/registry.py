"""Device registry: which counter has which devices, on which port, with which settings.

Read from ``config/devices.toml`` (or an equivalent dict). Port URLs are anything
``serial.serial_for_url`` opens (``/dev/ttyUSB0``, ``socket://host:port``) or
``sim://ne1000``, ``sim://reglo``, ``sim://mt-sics``, ``sim://scanner``: start a
simulator on a pty and connect to it (demo, tests).

Numbers in the TOML file are read as ``Decimal`` (floats never appear), and every
setting is checked against the driver's settings class: an unknown key is an error,
not something silently ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from devices.clock import SYSTEM_CLOCK, Clock
from devices.errors import DeviceConfigError, OutOfRange
from devices.interfaces import Balance, Pump, Scanner
from devices.mtsics import MtSicsBalance, MtSicsSettings
from devices.ne1000 import Ne1000Pump, Ne1000Settings
from devices.reglo import RegloIccPump, RegloSettings
from devices.scan import validate_separator
from devices.scanner import ScannerSettings, SerialScanner

ROLES = ("pump", "balance", "scanner")
DRIVERS: dict[str, dict[str, type]] = {
    "pump": {"ne1000": Ne1000Settings, "reglo-icc": RegloSettings},
    "balance": {"mt-sics": MtSicsSettings},
    "scanner": {"serial-scanner": ScannerSettings},
}
SIMULATED_DRIVERS = {
    "sim://ne1000": "ne1000",
    "sim://reglo": "reglo-icc",
    "sim://mt-sics": "mt-sics",
    "sim://scanner": "serial-scanner",
}
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "devices.toml"


@dataclass(frozen=True)
class DeviceConfig:
    counter_id: str
    role: str
    driver: str
    url: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        return f"{self.counter_id}/{self.role}"

    @property
    def simulated(self) -> bool:
        return self.url.startswith("sim://")

    def driver_settings(self) -> Any:
        """Return the driver's settings object; raises DeviceConfigError."""
        return _build_settings(DRIVERS[self.role][self.driver], self.settings, self.device_id)


@dataclass(frozen=True)
class CounterConfig:
    counter_id: str
    name: str
    pump: DeviceConfig | None = None
    balance: DeviceConfig | None = None
    scanner: DeviceConfig | None = None

    def devices(self) -> list[DeviceConfig]:
        return [d for d in (self.pump, self.balance, self.scanner) if d is not None]


@dataclass(frozen=True)
class DeviceRegistry:
    counters: Mapping[str, CounterConfig]
    wedge_separator: str | None = None

    def counter(self, counter_id: str) -> CounterConfig:
        try:
            return self.counters[counter_id]
        except KeyError:
            raise DeviceConfigError(
                f"no counter {counter_id!r} in the device configuration"
            ) from None

    def devices(self) -> list[DeviceConfig]:
        return [device for counter in self.counters.values() for device in counter.devices()]

    def with_urls(self, urls: Mapping[str, str]) -> DeviceRegistry:
        """Return a copy with the URLs of the given device ids replaced."""
        counters = {}
        for counter_id, counter in self.counters.items():
            replaced = {
                role: dataclasses.replace(device, url=urls.get(device.device_id, device.url))
                for role in ROLES
                if (device := getattr(counter, role)) is not None
            }
            counters[counter_id] = dataclasses.replace(counter, **replaced)
        return dataclasses.replace(self, counters=counters)


def load_registry(
    source: str | Path | Mapping[str, Any] | DeviceRegistry | None = None,
) -> DeviceRegistry:
    """Return the registry from a TOML path, a parsed dict, or the default config file.

    Raises DeviceConfigError for a missing file, bad TOML or invalid entries.
    """
    if isinstance(source, DeviceRegistry):
        return source
    if source is None:
        source = DEFAULT_CONFIG_PATH
    if isinstance(source, str | Path):
        try:
            with open(source, "rb") as handle:
                data = tomllib.load(handle, parse_float=Decimal)
        except OSError as exc:
            raise DeviceConfigError(f"cannot read device configuration: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise DeviceConfigError(f"device configuration is not valid TOML: {exc}") from exc
    else:
        data = dict(source)
    counters_raw = data.get("counters")
    if not isinstance(counters_raw, Mapping) or not counters_raw:
        raise DeviceConfigError("device configuration has no [counters.<id>] tables")
    counters = {}
    for counter_id, raw in counters_raw.items():
        if not isinstance(raw, Mapping):
            raise DeviceConfigError(f"counters.{counter_id} must be a table")
        unknown = set(raw) - {"name", *ROLES}
        if unknown:
            raise DeviceConfigError(f"counters.{counter_id}: unknown keys {sorted(unknown)}")
        devices = {role: _device(counter_id, role, raw[role]) for role in ROLES if role in raw}
        counters[counter_id] = CounterConfig(
            counter_id=counter_id, name=str(raw.get("name", counter_id)), **devices
        )
    separator = (
        data.get("scan", {}).get("wedge_separator")
        if isinstance(data.get("scan"), Mapping)
        else None
    )
    if separator is not None:
        try:
            validate_separator(separator)
        except ValueError as exc:
            raise DeviceConfigError(f"scan.wedge_separator: {exc}") from exc
    return DeviceRegistry(counters=counters, wedge_separator=separator)


def _device(counter_id: str, role: str, raw: Any) -> DeviceConfig:
    where = f"counters.{counter_id}.{role}"
    if not isinstance(raw, Mapping):
        raise DeviceConfigError(f"{where} must be a table")
    url = raw.get("url")
    if not isinstance(url, str) or not url:
        raise DeviceConfigError(f"{where}.url is required")
    driver = raw.get("driver") or SIMULATED_DRIVERS.get(url)
    if driver not in DRIVERS[role]:
        raise DeviceConfigError(f"{where}.driver must be one of {sorted(DRIVERS[role])}")
    if url.startswith("sim://") and SIMULATED_DRIVERS.get(url) != driver:
        raise DeviceConfigError(f"{where}: {url} does not simulate driver {driver!r}")
    settings = {k: v for k, v in raw.items() if k not in ("driver", "url")}
    config = DeviceConfig(
        counter_id=counter_id, role=role, driver=driver, url=url, settings=settings
    )
    config.driver_settings()  # validate now, not when the counter first dispenses
    return config


def _build_settings(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise DeviceConfigError(f"{where}: unknown settings {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        try:
            values[name] = _convert(value, hint)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise DeviceConfigError(f"{where}.{name}: {exc}") from exc
    try:
        return cls(**values)
    except (TypeError, ValueError, ArithmeticError, OutOfRange) as exc:
        raise DeviceConfigError(f"{where}: {exc}") from exc


_UnionType = type(int | str)


def _convert(value: Any, hint: Any) -> Any:
    options = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    )
    if value is None and type(None) in options:
        return None
    if Decimal in options:
        if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
            raise TypeError("expected a number (write decimals as strings or TOML decimals)")
        return Decimal(value)
    if bool in options:
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if int in options:
        # Digit strings too: settings may arrive as JSON text from the server.
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected an integer")
        return value
    if float in options:
        # Seconds (timeouts, poll intervals): not quantities, float is fine here.
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise TypeError("expected a number of seconds")
        return float(Decimal(value))
    if str in options:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    raise TypeError(f"unsupported setting type {hint}")


# -- opening devices -------------------------------------------------------------------------


@dataclass
class CounterDevices:
    """The open devices of one counter (and any simulators started for them)."""

    counter: CounterConfig
    pump: Pump | None = None
    balance: Balance | None = None
    scanner: Scanner | None = None
    simulators: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for device in (self.scanner, self.balance, self.pump):
            if device is not None:
                with contextlib.suppress(Exception):
                    device.close()
        for simulator in self.simulators:
            simulator.close()

    def __enter__(self) -> CounterDevices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_device(config: DeviceConfig, *, clock: Clock = SYSTEM_CLOCK) -> Pump | Balance | Scanner:
    """Connect to one device and return its driver.

    Raises DeviceConfigError for ``sim://`` URLs (use ``open_counter`` or
    ``devices.simulators.start_counter_simulators``), PortUnavailable or another
    DeviceError from the device.
    """
    if config.simulated:
        raise DeviceConfigError(f"{config.device_id}: start simulators before opening {config.url}")
    settings = config.driver_settings()
    if config.driver == "ne1000":
        return Ne1000Pump.connect(config.url, settings, device_id=config.device_id, clock=clock)
    if config.driver == "reglo-icc":
        return RegloIccPump.connect(config.url, settings, device_id=config.device_id, clock=clock)
    if config.driver == "mt-sics":
        return MtSicsBalance.connect(config.url, settings, device_id=config.device_id, clock=clock)
    if config.driver == "serial-scanner":
        return SerialScanner.connect(config.url, settings, device_id=config.device_id)
    raise DeviceConfigError(f"{config.device_id}: unknown driver {config.driver!r}")


def open_counter(
    source: str | Path | Mapping[str, Any] | DeviceRegistry | None,
    counter_id: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> CounterDevices:
    """Open every device of ``counter_id``, starting simulators for ``sim://`` URLs.

    Returns a ``CounterDevices`` to close (or use as a context manager). Raises
    DeviceConfigError or a DeviceError; devices opened so far are closed first.
    """
    from devices.simulators import start_counter_simulators

    registry = load_registry(source)
    counter = registry.counter(counter_id)
    opened = CounterDevices(counter=counter)
    try:
        if any(device.simulated for device in counter.devices()):
            simulators = start_counter_simulators(registry, counters=[counter_id], clock=clock)
            opened.simulators.append(simulators)
            counter = simulators.registry.counter(counter_id)
            opened.counter = counter
        for role in ROLES:
            device = getattr(counter, role)
            if device is not None:
                setattr(opened, role, open_device(device, clock=clock))
    except BaseException:
        opened.close()
        raise
    return opened
