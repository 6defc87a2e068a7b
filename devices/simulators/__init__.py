"""Device simulators speaking the exact bytes on a pty, for tests and the demo.

``start_counter_simulators`` starts one simulator per ``sim://`` device in the
registry and returns the registry with those URLs replaced by the pty paths, so the
real drivers connect to them exactly as to hardware.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from devices.clock import SYSTEM_CLOCK, Clock
from devices.simulators.base import ReplyFault, SimulatorBase
from devices.simulators.mtsics import MtSicsSimulator
from devices.simulators.ne1000 import Ne1000Simulator
from devices.simulators.reglo import RegloSimulator
from devices.simulators.scanner import ScannerSimulator

__all__ = [
    "CounterSimulators",
    "MtSicsSimulator",
    "Ne1000Simulator",
    "RegloSimulator",
    "ReplyFault",
    "ScannerSimulator",
    "SimulatorBase",
    "start_counter_simulators",
]

# Simulated liquid on the simulated balance: water-like, so grams read as ml.
SIMULATED_DENSITY_G_PER_ML = Decimal("1.000")


class CounterSimulators:
    """Running simulators by device id, and the registry pointing at them."""

    def __init__(self, registry: Any, simulators: dict[str, SimulatorBase]) -> None:
        self.registry = registry
        self.simulators = simulators

    def __getitem__(self, device_id: str) -> SimulatorBase:
        return self.simulators[device_id]

    def close(self) -> None:
        for simulator in self.simulators.values():
            simulator.close()

    def __enter__(self) -> CounterSimulators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_counter_simulators(
    source: str | Path | Mapping[str, Any] | Any | None = None,
    *,
    counters: Iterable[str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> CounterSimulators:
    """Start simulators for every ``sim://`` device (of ``counters``, default all).

    Returns them with the rewritten registry; a simulated balance on the same counter
    as a simulated pump weighs what that pump delivers. Raises DeviceConfigError.
    """
    from devices.registry import load_registry

    registry = load_registry(source)
    wanted = set(counters) if counters is not None else set(registry.counters)
    started: dict[str, SimulatorBase] = {}
    try:
        for counter_id in wanted:
            counter = registry.counter(counter_id)
            pump_sim: SimulatorBase | None = None
            for device in counter.devices():
                if not device.simulated:
                    continue
                settings = device.driver_settings()
                simulator: SimulatorBase
                if device.driver == "ne1000":
                    simulator = Ne1000Simulator(
                        clock=clock,
                        address=settings.address,
                        safe_timeout_s=settings.safe_mode_timeout_s,
                    )
                    pump_sim = simulator
                elif device.driver == "reglo-icc":
                    simulator = RegloSimulator(clock=clock, address=settings.address)
                    pump_sim = simulator
                elif device.driver == "mt-sics":
                    simulator = MtSicsSimulator(clock=clock)
                else:
                    simulator = ScannerSimulator(clock=clock)
                started[device.device_id] = simulator.start()
            balance = counter.balance
            if pump_sim is not None and balance is not None and balance.device_id in started:
                source_pump = pump_sim
                balance_sim = started[balance.device_id]
                assert isinstance(balance_sim, MtSicsSimulator)
                balance_sim.mass_source = lambda p=source_pump: (
                    p.delivered_ml * SIMULATED_DENSITY_G_PER_ML
                )
    except BaseException:
        for simulator in started.values():
            simulator.close()
        raise
    urls = {device_id: simulator.url for device_id, simulator in started.items()}
    return CounterSimulators(registry.with_urls(urls), started)
