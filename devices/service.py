"""The counter device service: owns one counter's pump and delivers the doses its server hands it.

No Flask and no database: the service talks to its server through a small ``DoseJobs`` interface,
implemented in-process for single-PC mode (``web.counter_service``, calling the dispensing
services directly) and over HTTP for a counter PC (``devices.agent``, ``run.py agent``). So the
web server never holds a serial port, and a slow pump never blocks a web worker.

What it does, in this order:

1. At start, before anything else: open the pump, stop it if it is still moving, read its
   dispensed counter, and report recovery — the server turns whatever this counter left in flight
   into UNKNOWN for a nurse and a witness to resolve. Nothing is ever retried automatically. (A
   simulator started inside this process has just been "powered on": its counter says nothing.)
2. Then, one dose at a time: fetch the next job, run ``devices.dispense.dispense`` with the job's
   volume, the application's ceiling and the pump's calibration; report PROGRAMMED from
   ``on_progress`` before RUN is sent (if the server refuses, RUN is never sent), then RUNNING,
   then the result — retried until the server has it, and no other job is taken meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import structlog

from devices.calibration import CalibrationMethod, CalibrationResult
from devices.clock import SYSTEM_CLOCK, Clock
from devices.dispense import DispenseReason, DispenseResult, DispenseState, dispense
from devices.errors import DeviceError
from devices.interfaces import Pump, PumpState
from devices.registry import CounterDevices, open_counter

log = structlog.get_logger(__name__)

MOVING = (PumpState.RUNNING, PumpState.PURGING, PumpState.WITHDRAWING)


class JobRefused(Exception):
    """The server refused a report for good (e.g. the dose was cancelled, or is another
    counter's): the service does not retry it. For PROGRAMMED this means RUN is not sent."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code


class DoseJobs(Protocol):
    """What the service needs from its server. Any exception other than JobRefused means "could
    not reach the server": the service waits and tries again."""

    def setup(self) -> dict:
        """The pump's configuration: counter_code, device_code, driver, url, settings, ceiling_ml."""
        ...

    def recovered(self, pump_counter_ml: Decimal | None, note: str | None) -> list[int]:
        """Report the start-up reading; returns the doses that became UNKNOWN."""
        ...

    def next_job(self) -> dict | None:
        """The next dose: dose_id, volume_ml, ceiling_ml, calibration (or None)."""
        ...

    def progress(self, dose_id: int, state: str) -> None: ...

    def result(self, dose_id: int, result: dict) -> None: ...

    def wait(self, seconds: float) -> None:
        """Return after ``seconds`` or as soon as new work may be there."""
        ...


@dataclass(frozen=True)
class Job:
    dose_id: int
    volume_ml: Decimal
    ceiling_ml: Decimal
    calibration: dict | None

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        return cls(int(data["dose_id"]), Decimal(str(data["volume_ml"])), Decimal(str(data["ceiling_ml"])),
                   data.get("calibration"))


def calibration_result(data: dict | None, pump_id: str) -> CalibrationResult | None:
    """The server's record of the pump's calibration as the dispense routine wants it."""
    if data is None:
        return None
    return CalibrationResult(
        pump_id=pump_id, method=CalibrationMethod(str(data["method"]).upper()), factor=Decimal(str(data["factor"])),
        mean_error_pct=Decimal(0), corrected_error_pct=Decimal(0), cv_pct=Decimal(0), passed=bool(data["passed"]),
        reason=None, evaluated_at=datetime.fromisoformat(data["evaluated_at"]),
        valid_until=datetime.fromisoformat(data["valid_until"]), liquid="", lot=None, liquid_used_ml=Decimal(0),
    )


def registry_for(setup: dict) -> dict:
    """A one-counter device registry (``devices.registry`` form) for the server's pump setup."""
    pump = {"driver": setup["driver"], "url": setup["url"], **(setup.get("settings") or {})}
    return {"counters": {setup["counter_code"]: {"name": setup["counter_code"], "pump": pump}}}


def open_pump_from_setup(setup: dict, clock: Clock) -> CounterDevices:
    """Open the counter's pump, starting a simulator in this process for a ``sim://`` URL."""
    return open_counter(registry_for(setup), setup["counter_code"], clock=clock)


@dataclass
class ServiceStats:
    """Counters for monitoring and tests."""

    dispensed: int = 0
    refused: int = 0
    report_retries: int = 0
    recovered: list[int] = field(default_factory=list)
    last_error: str | None = None


class CounterDeviceService:
    """One counter's device service. ``run()`` blocks (the agent); ``start()`` runs it in a
    daemon thread (single-PC mode); ``stop()`` ends it after the current dose."""

    def __init__(
        self,
        jobs: DoseJobs,
        *,
        clock: Clock = SYSTEM_CLOCK,
        poll_s: float = 0.5,
        retry_s: float = 1.0,
        open_pump: Callable[[dict, Clock], CounterDevices] = open_pump_from_setup,
        name: str = "counter",
        start_up_open_s: float = 120.0,
        open_retry_s: float = 1.0,
    ) -> None:
        self.jobs = jobs
        self.clock = clock
        self.poll_s = poll_s
        self.retry_s = retry_s
        self._open_pump = open_pump
        self.name = name
        self.start_up_open_s = start_up_open_s
        self.open_retry_s = open_retry_s
        self.stats = ServiceStats()
        self.devices: CounterDevices | None = None
        self.setup: dict | None = None
        self._stopping = threading.Event()
        self._recovered = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> CounterDeviceService:
        self._thread = threading.Thread(target=self.run, name=f"device-service-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._close()

    def wait_recovered(self, timeout: float) -> bool:
        return self._recovered.wait(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Recover once, then deliver jobs until stopped. Never raises."""
        self.start_up()
        while not self._stopping.is_set():
            if self.devices is None and not self._open():
                self._stopping.wait(self.retry_s)
                continue
            try:
                if not self.step():
                    self.jobs.wait(self.poll_s)
            except Exception as exc:  # the server is unreachable: wait, try again
                self.stats.last_error = type(exc).__name__
                log.warning("device_service.server_unreachable", counter=self.name, error=type(exc).__name__)
                self._stopping.wait(self.retry_s)

    # -- start-up -------------------------------------------------------------------------

    def _open(self) -> bool:
        try:
            if self.setup is None:
                self.setup = self.jobs.setup()
            self.devices = self._open_pump(self.setup, self.clock)
            if self.devices.pump is None:
                raise DeviceError("the counter has no pump")
            return True
        except Exception as exc:
            self.stats.last_error = getattr(exc, "reason", type(exc).__name__)
            log.warning("device_service.pump_unavailable", counter=self.name, error=self.stats.last_error)
            self._close()
            return False

    def _close(self) -> None:
        if self.devices is not None:
            self.devices.close()
            self.devices = None

    def start_up(self) -> None:
        """Fetch the setup, open the pump and report recovery (retried until the server has it)."""
        opened = False
        while not self._stopping.is_set() and not opened:
            try:
                self.setup = self.jobs.setup()
                opened = True
            except JobRefused as exc:
                log.error("device_service.setup_refused", counter=self.name, code=exc.code)
                self._stopping.wait(self.retry_s * 10)
            except Exception as exc:
                log.warning("device_service.server_unreachable", counter=self.name, error=type(exc).__name__)
                self._stopping.wait(self.retry_s)
        if self._stopping.is_set():
            return
        # A pump still running the interrupted dose refuses to be configured: wait (in the pump's
        # time) until it has finished or its watchdog stopped it, so its counter can be read.
        deadline = self.clock.monotonic() + self.start_up_open_s
        while not self._open() and not self._stopping.is_set() and self.clock.monotonic() < deadline:
            self.clock.sleep(self.open_retry_s)
        reading, note = self.read_counter()
        while not self._stopping.is_set():
            try:
                self.stats.recovered = list(self.jobs.recovered(reading, note))
                break
            except Exception as exc:
                log.warning("device_service.recovery_not_reported", counter=self.name, error=type(exc).__name__)
                self._stopping.wait(self.retry_s)
        if self.stats.recovered:
            log.warning("device_service.doses_unknown", counter=self.name, doses=self.stats.recovered)
        self._recovered.set()

    def read_counter(self) -> tuple[Decimal | None, str | None]:
        """Return the pump's dispensed counter (raw) for recovery, or None and why not."""
        if self.devices is None or self.devices.pump is None:
            return None, "pump not reachable at start-up"
        if self.devices.simulators:
            return None, "simulated pump started with this process: its counter says nothing about earlier doses"
        pump: Pump = self.devices.pump
        note = None
        try:
            status = pump.status()
            if status.state in MOVING:
                pump.stop()
                note = "pump was still moving at start-up and was stopped"
                status = pump.status()
        except DeviceError as exc:
            return None, f"pump counter not readable ({exc.reason})"
        if getattr(pump, "last_unsolicited_alarm", None) == "R":
            return None, "pump reported a power reset: its counter was lost"
        return status.dispensed_ml, note

    # -- dispensing -----------------------------------------------------------------------

    def step(self) -> bool:
        """Deliver the next job, if any; return whether there was one."""
        data = self.jobs.next_job()
        if data is None:
            return False
        job = Job.from_dict(data)
        result = self.deliver(job)
        self._report(job.dose_id, result.to_dict())
        if result.reason == DispenseReason.PORT_LOST:
            self._close()  # reopened before the next job; no recovery (nothing is in flight)
        return True

    def deliver(self, job: Job) -> DispenseResult:
        """Run one dispense for ``job``; never raises."""
        pump = self.devices.pump if self.devices is not None else None
        assert pump is not None

        def on_progress(state: DispenseState) -> None:
            # Raising here before RUN means RUN is never sent.
            self.jobs.progress(job.dose_id, state.value.lower())

        result = dispense(
            pump, job.volume_ml, calibration=calibration_result(job.calibration, pump.device_id),
            ceiling_ml=job.ceiling_ml, on_progress=on_progress, clock=self.clock,
        )
        self.stats.dispensed += 1
        return result

    def _report(self, dose_id: int, result: dict[str, Any]) -> None:
        delay = self.retry_s
        while True:
            try:
                self.jobs.result(dose_id, result)
                return
            except JobRefused as exc:
                self.stats.refused += 1
                log.error("device_service.result_refused", counter=self.name, dose_id=dose_id, code=exc.code)
                return
            except Exception as exc:
                if self._stopping.is_set():
                    # Still in flight on the server: the next start's recovery makes it UNKNOWN
                    # with the pump's counter, which still holds this dispense.
                    log.error("device_service.result_unreported", counter=self.name, dose_id=dose_id)
                    return
                self.stats.report_retries += 1
                log.warning("device_service.result_retry", counter=self.name, dose_id=dose_id,
                            error=type(exc).__name__)
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
