"""``run.py devices check``: identify every configured device and print its state."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from devices.clock import SYSTEM_CLOCK, Clock
from devices.errors import DeviceConfigError, DeviceError
from devices.interfaces import Balance, Pump
from devices.registry import ROLES, DeviceConfig, DeviceRegistry, load_registry, open_device

EXIT_OK = 0
EXIT_DEVICE_FAILED = 1
EXIT_CONFIG_ERROR = 2


def check_devices(
    path_or_dict: str | Path | Mapping[str, Any] | DeviceRegistry | None = None,
    out: TextIO = sys.stdout,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Identify each configured device, print one line per device, return an exit code.

    0 all devices answered, 1 at least one failed, 2 the configuration is invalid.
    ``sim://`` devices are checked against simulators started for the occasion.
    """
    from devices.simulators import start_counter_simulators

    try:
        registry = load_registry(path_or_dict)
    except DeviceConfigError as exc:
        print(f"device configuration error: {exc}", file=out)
        return EXIT_CONFIG_ERROR
    simulators = None
    if any(device.simulated for device in registry.devices()):
        simulators = start_counter_simulators(registry, clock=clock)
        registry = simulators.registry
    failures = 0
    try:
        for counter in registry.counters.values():
            print(f"{counter.counter_id} ({counter.name})", file=out)
            for role in ROLES:
                device = getattr(counter, role)
                if device is None:
                    print(f"  {role:<8} not configured", file=out)
                    continue
                ok, detail = _check(device, clock)
                failures += not ok
                shown_url = (
                    "simulator " + device.url
                    if simulators and device.device_id in simulators.simulators
                    else device.url
                )
                status = "OK    " if ok else "FAILED"
                print(f"  {role:<8} {device.driver:<14} {status} {detail}  [{shown_url}]", file=out)
    finally:
        if simulators is not None:
            simulators.close()
    return EXIT_DEVICE_FAILED if failures else EXIT_OK


def _check(config: DeviceConfig, clock: Clock) -> tuple[bool, str]:
    try:
        device = open_device(config, clock=clock)
    except DeviceError as exc:
        return False, f"{exc.reason}: {exc}"
    try:
        if isinstance(device, Pump):
            identity = device.identify()
            status = device.status()
            counter = "" if status.dispensed_ml is None else f", counter {status.dispensed_ml} ml"
            return True, f"{identity}; {status.state}{counter}; ceiling {device.max_volume_ml} ml"
        if isinstance(device, Balance):
            identity = device.identify()
            weighing = device.immediate_weight()
            state = "stable" if weighing.stable else "not stable"
            return True, f"{identity}; {weighing.grams} g ({state})"
        return True, "port open (serial scanners do not identify themselves)"
    except DeviceError as exc:
        return False, f"{exc.reason}: {exc}"
    finally:
        device.close()


if __name__ == "__main__":  # python -m devices.cli [config/devices.toml]
    sys.exit(check_devices(sys.argv[1] if len(sys.argv) > 1 else None))
