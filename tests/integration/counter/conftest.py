"""Fixtures: the counter world on the rolled-back test database, and the counter device service
driving a real NE-1000 driver against the pty simulator on a virtual clock (a 6 ml dose takes
milliseconds). The service runs in the test's thread (``start_up()`` then ``step()``), through the
same in-process jobs adapter single-PC mode uses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from devices.clock import VirtualClock
from devices.ne1000 import Ne1000Pump, Ne1000Settings
from devices.registry import CounterConfig, CounterDevices
from devices.service import CounterDeviceService
from devices.simulators import Ne1000Simulator
from tests import counter_world
from web.counter_service import InProcessDoseJobs

PUMP_SETTINGS = Ne1000Settings(reply_timeout_s=0.15, poll_interval_s=0.5, safe_mode_timeout_s=4,
                               rate_ml_min=Decimal("30"), max_volume_ml=Decimal("50.00"))


@pytest.fixture
def world(session, settings):
    return counter_world.build(session, settings=settings)


@dataclass
class Harness:
    sim: Ne1000Simulator
    clock: VirtualClock
    service: CounterDeviceService
    jobs: InProcessDoseJobs

    def deliver(self) -> bool:
        return self.service.step()


def make_harness(database, world, *, counter_index: int = 0, settings: Ne1000Settings = PUMP_SETTINGS,
                 start: bool = True, sim: Ne1000Simulator | None = None, clock: VirtualClock | None = None) -> Harness:
    """A device service for one counter; pass ``sim`` and ``clock`` to reconnect to a pump that is
    already there (a restart)."""
    clock = clock or VirtualClock(start=counter_world.T0)
    sim = sim or Ne1000Simulator(clock=clock).start()

    def open_pump(setup, service_clock):
        pump = Ne1000Pump.connect(sim.port, settings, device_id=f"{setup['counter_code']}/pump", clock=service_clock)
        return CounterDevices(counter=CounterConfig(counter_id=setup["counter_code"], name=setup["counter_code"]),
                              pump=pump)

    jobs = InProcessDoseJobs(database, world.counters[counter_index].id, world.rulebook.for_clinic, now=clock.now)
    service = CounterDeviceService(jobs, clock=clock, open_pump=open_pump, poll_s=0, retry_s=0.01,
                                   name=world.counters[counter_index].code)
    harness = Harness(sim, clock, service, jobs)
    if start:
        service.start_up()
    return harness


@pytest.fixture
def harness(database, world) -> Iterator[Harness]:
    made = make_harness(database, world)
    yield made
    made.service.stop()
    made.jobs.close()
    made.sim.close()
    assert made.sim.errors == []
