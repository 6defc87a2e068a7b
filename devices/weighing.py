"""The counter's balance service: reads the balance when its server asks, one request at a time.

Part of the counter device service (it owns the counter's ports; the web server never opens one):
in single-PC mode it runs as a thread of ``run.py`` (``web.counter_service``, calling the
dispensing services directly); on a counter PC it runs inside ``run.py agent`` next to the pump
service and talks to the server over HTTP with the counter's token (``devices.agent``). It has its
own loop so a dispense in progress, or a pump that is unplugged, never delays a weighing.

For each request: open the balance through the registry (``open_device``, the MT-SICS driver), ask
for ONE stable weight in grams within the request's time, close the port, and report either the
weight (with the stable flag, the unit and what the balance says it is: I2 model, I4 serial) or the
device's failure reason (NO_REPLY, PORT_UNAVAILABLE, UNSTABLE_READING, BALANCE_OVERLOAD,
BALANCE_UNDERLOAD, WRONG_UNIT, ...). Nothing here converts units or computes volumes.

A ``sim://mt-sics`` balance is an MT-SICS simulator on a pty, started once per device in THIS
process (``simulated_balance``) and kept, so what lies on its pan stays there between readings:
in single-PC mode the worksheet's simulated-pan control and this service share it; an agent has
its own (the server's simulators are then not what is read).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import structlog

from devices.clock import SYSTEM_CLOCK, Clock
from devices.errors import DeviceConfigError, DeviceError
from devices.registry import DeviceConfig, open_device
from devices.service import JobRefused
from devices.simulators import MtSicsSimulator

log = structlog.get_logger(__name__)

# Never wait longer than this for one stable reading, whatever the request allows.
MAX_STABLE_WAIT_S = 8.0

_simulators: dict[tuple[int, str], MtSicsSimulator] = {}
_simulators_lock = threading.Lock()


def simulated_balance(device_id: int, serial_number: str | None = None) -> MtSicsSimulator:
    """The running simulator of the ``sim://mt-sics`` balance ``device_id`` with that serial number
    (started on first use; it answers I4 with the serial number the server has for the device)."""
    key = (device_id, serial_number or "SIM")
    with _simulators_lock:
        simulator = _simulators.get(key)
        if simulator is None or not simulator.serving:
            # A stock-count balance: a full reservoir weighs a kilogram or more.
            simulator = MtSicsSimulator(model="XS6002S", capacity_g=Decimal("6100"), readability_g=Decimal("0.01"),
                                        serial_number=key[1]).start()
            _simulators[key] = simulator
        return simulator


def stop_simulated_balances() -> None:
    with _simulators_lock:
        for simulator in _simulators.values():
            simulator.close()
        _simulators.clear()


class WeighingJobs(Protocol):
    """What the balance service needs from its server. JobRefused is final; any other exception
    means "could not reach the server"."""

    def next_weighing(self) -> dict | None:
        """The next request (``dispensing.weighing.WeighingJob.to_dict()``) or None."""
        ...

    def weighing_result(self, request_id: int, result: dict) -> None: ...

    def wait(self, seconds: float) -> None:
        """Return after ``seconds`` or as soon as new work may be there."""
        ...


@dataclass(frozen=True)
class BalanceJob:
    request_id: int
    device_id: int
    device_code: str
    counter_code: str
    driver: str
    url: str
    settings: dict
    serial_number: str | None
    timeout_s: float

    @classmethod
    def from_dict(cls, data: dict) -> BalanceJob:
        return cls(int(data["request_id"]), int(data["device_id"]), str(data["device_code"]),
                   str(data["counter_code"]), str(data["driver"]), str(data["url"]), dict(data.get("settings") or {}),
                   data.get("serial_number"), float(data["timeout_s"]))


def _failed(reason: str, detail: str = "", **identity: Any) -> dict:
    return {"outcome": "failed", "reason": reason, "detail": detail[:200] or None, **identity}


def read_balance(job: BalanceJob, *, clock: Clock = SYSTEM_CLOCK) -> dict:
    """Read one stable weight for ``job`` and return the report for the server. Never raises."""
    if job.driver != "mt-sics":
        return _failed("BALANCE_DRIVER_UNSUPPORTED", job.driver)
    url = job.url
    if url.startswith("sim://"):
        if url != "sim://mt-sics":
            return _failed("BALANCE_CONFIG_INVALID", f"{url} is not an MT-SICS simulator")
        url = simulated_balance(job.device_id, job.serial_number).url
    config = DeviceConfig(counter_id=job.counter_code, role="balance", driver="mt-sics", url=url,
                          settings=job.settings)
    try:
        timeout = min(float(config.driver_settings().stable_timeout_s), MAX_STABLE_WAIT_S, job.timeout_s)
        balance = open_device(config, clock=clock)
    except DeviceConfigError as exc:
        return _failed("BALANCE_CONFIG_INVALID", str(exc))
    except DeviceError as exc:
        return _failed(exc.reason, type(exc).__name__)
    identity = {"model": getattr(balance.identity, "model", None),
                "serial_number": getattr(balance.identity, "serial_number", None)}
    try:
        weighing = balance.stable_weight(timeout)
    except DeviceError as exc:
        return _failed(exc.reason, type(exc).__name__, **identity)
    except Exception as exc:  # a driver bug must not kill the service: report it
        log.exception("balance_service.read_failed", device=job.device_code)
        return _failed("DEVICE_ERROR", type(exc).__name__, **identity)
    finally:
        balance.close()
    return {"outcome": "completed", "grams": str(weighing.grams), "stable": weighing.stable, "unit": weighing.unit,
            **identity}


@dataclass
class BalanceStats:
    read: int = 0
    refused: int = 0
    last_error: str | None = None


class BalanceService:
    """One counter's balance service. ``run()`` blocks; ``start()`` runs it in a daemon thread;
    ``stop()`` ends it after the current reading."""

    def __init__(self, jobs: WeighingJobs, *, clock: Clock = SYSTEM_CLOCK, poll_s: float = 0.5,
                 retry_s: float = 1.0, name: str = "counter",
                 read: Callable[..., dict] = read_balance) -> None:
        self.jobs = jobs
        self.clock = clock
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.name = name
        self._read = read
        self.stats = BalanceStats()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BalanceService:
        self._thread = threading.Thread(target=self.run, name=f"balance-service-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        """Serve requests until stopped. Never raises."""
        while not self._stopping.is_set():
            try:
                if not self.step():
                    self.jobs.wait(self.poll_s)
            except JobRefused as exc:
                self.stats.refused += 1
                self.stats.last_error = exc.code
                log.error("balance_service.refused", counter=self.name, code=exc.code)
                self._stopping.wait(self.retry_s * 10)
            except Exception as exc:  # the server is unreachable: wait, try again
                self.stats.last_error = type(exc).__name__
                log.warning("balance_service.server_unreachable", counter=self.name, error=type(exc).__name__)
                self._stopping.wait(self.retry_s)

    def step(self) -> bool:
        """Serve the next request, if any; return whether there was one."""
        data = self.jobs.next_weighing()
        if data is None:
            return False
        job = BalanceJob.from_dict(data)
        started = self.clock.monotonic()
        result = self._read(job, clock=self.clock)
        self.stats.read += 1
        self._report(job, result, deadline=started + job.timeout_s + 5.0)
        return True

    def _report(self, job: BalanceJob, result: dict, *, deadline: float) -> None:
        """Report until the server has it, it refuses it, or the request has certainly expired
        (the server then records EXPIRED itself)."""
        while True:
            try:
                self.jobs.weighing_result(job.request_id, result)
                return
            except JobRefused as exc:
                self.stats.refused += 1
                log.error("balance_service.result_refused", counter=self.name, request_id=job.request_id,
                          code=exc.code)
                return
            except Exception as exc:
                if self._stopping.is_set() or self.clock.monotonic() >= deadline:
                    log.error("balance_service.result_unreported", counter=self.name, request_id=job.request_id)
                    return
                log.warning("balance_service.result_retry", counter=self.name, request_id=job.request_id,
                            error=type(exc).__name__)
                self._stopping.wait(self.retry_s)
