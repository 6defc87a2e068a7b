"""Single-PC mode: the counter device services run in this process, one thread per counter for its
pump and one for its balance, and reach the dispensing services directly (no HTTP). Started once,
by ``run.py`` with no command — never by the app factory, so never under a reloader or once per
gunicorn worker. Counters that have an agent token are left to their agent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import structlog

from devices.clock import SYSTEM_CLOCK, Clock
from devices.service import CounterDeviceService, JobRefused
from devices.weighing import BalanceService
from dispensing import counter as counter_use_cases
from dispensing import rules, weighing
from dispensing.clock import utcnow
from dispensing.counter import signals
from dispensing.db import Database
from dispensing.errors import DomainError
from dispensing.models import Clinic, Counter
from dispensing.rulebook import RuleBook

log = structlog.get_logger(__name__)

RuleSets = Callable[[Clinic], rules.RuleSet]


class InProcessDoseJobs:
    """``devices.service.DoseJobs`` calling the dispensing services, one session per call."""

    def __init__(self, database: Database, counter_id: int, rule_sets: RuleSets,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.counter_id = counter_id
        self.rule_sets = rule_sets
        self.now = now
        self._wake = threading.Event()
        signals.subscribe(counter_id, self._wake.set)

    def close(self) -> None:
        signals.unsubscribe(self.counter_id, self._wake.set)

    def _call(self, function, *args, **kwargs):
        with self.database.unit_of_work() as session:
            try:
                return function(session, *args, **kwargs)
            except DomainError as exc:
                raise JobRefused(str(exc.params.get("code") or exc.code)) from exc

    def setup(self) -> dict:
        def read(session):
            return counter_use_cases.pump_setup(session, session.get(Counter, self.counter_id)).to_dict()

        return self._call(read)

    def recovered(self, pump_counter_ml: Decimal | None, note: str | None) -> list[int]:
        doses = self._call(counter_use_cases.recover_counter, self.counter_id, pump_counter_ml=pump_counter_ml,
                           note=note, now=self.now())
        return [dose.id for dose in doses]

    def next_job(self) -> dict | None:
        job = self._call(counter_use_cases.next_job, self.counter_id, now=self.now())
        return None if job is None else job.to_dict()

    def progress(self, dose_id: int, state: str) -> None:
        self._call(counter_use_cases.record_progress, self.counter_id, dose_id, state, now=self.now())

    def result(self, dose_id: int, result: dict) -> None:
        outcome = counter_use_cases.DeviceOutcome.from_dict(result)
        self._call(counter_use_cases.record_result, self.counter_id, dose_id, outcome, self.rule_sets,
                   now=self.now())

    def wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()


class InProcessWeighingJobs:
    """``devices.weighing.WeighingJobs`` calling the weighing services, one session per call."""

    def __init__(self, database: Database, counter_id: int, now: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.counter_id = counter_id
        self.now = now
        self._wake = threading.Event()
        signals.subscribe(counter_id, self._wake.set, signals.WEIGHING)

    def close(self) -> None:
        signals.unsubscribe(self.counter_id, self._wake.set, signals.WEIGHING)

    def _call(self, function, *args, **kwargs):
        with self.database.unit_of_work() as session:
            try:
                return function(session, *args, **kwargs)
            except DomainError as exc:
                raise JobRefused(str(exc.params.get("code") or exc.code)) from exc

    def next_weighing(self) -> dict | None:
        job = self._call(weighing.next_weighing, self.counter_id, now=self.now())
        return None if job is None else job.to_dict()

    def weighing_result(self, request_id: int, result: dict) -> None:
        def record(session):
            outcome = weighing.WeighingOutcome.from_dict(result)
            weighing.record_weighing_result(session, self.counter_id, request_id, outcome, now=self.now())

        self._call(record)

    def wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()


_started_lock = threading.RLock()
_started: list[CounterDeviceService] | None = None
_balances: list[BalanceService] | None = None


def start_in_process_services(database: Database, rulebook: RuleBook, *, clock: Clock = SYSTEM_CLOCK,
                              poll_s: float = 0.5, recovery_wait_s: float = 30.0) -> list[CounterDeviceService]:
    """Start a device service thread for every counter this process serves, once per process:
    a second call returns the running ones. Each recovers its counter before taking a dose; this
    waits (up to ``recovery_wait_s``) for the recoveries, so the web server starts serving only
    once every dose left in flight by the previous process is UNKNOWN — a dose authorised after
    that is never mistaken for a leftover."""
    global _started
    with _started_lock:
        if _started is not None:
            return _started
        with database.unit_of_work() as session:
            counters = [(c.id, c.code) for c in counter_use_cases.counters_for_this_process(session)]
        services = []
        for counter_id, code in counters:
            jobs = InProcessDoseJobs(database, counter_id, rulebook.for_clinic)
            services.append(CounterDeviceService(jobs, clock=clock, poll_s=poll_s, name=code).start())
        start_in_process_balance_services(database, clock=clock, poll_s=poll_s)
        for service in services:
            if not service.wait_recovered(recovery_wait_s):
                log.error("device_service_recovery_slow", counter=service.name)
        log.info("device_services_started", counters=[code for _id, code in counters])
        _started = services
        return services


def start_in_process_balance_services(database: Database, *, clock: Clock = SYSTEM_CLOCK,
                                      poll_s: float = 0.5) -> list[BalanceService]:
    """Start a balance service thread for every counter with a balance this process serves, once
    per process (``start_in_process_services`` calls it; a second call returns the running ones).
    It reads the balances for the pharmacist's worksheet, so no web worker opens a port."""
    global _balances
    with _started_lock:
        if _balances is not None:
            return _balances
        with database.unit_of_work() as session:
            counters = [(c.id, c.code) for c in weighing.balance_counters_for_this_process(session)]
        _balances = [BalanceService(InProcessWeighingJobs(database, counter_id), clock=clock, poll_s=poll_s,
                                    name=code).start() for counter_id, code in counters]
        log.info("balance_services_started", counters=[code for _id, code in counters])
        return _balances


def stop_in_process_services(timeout: float = 10.0) -> None:
    """Stop every device service this process started (pumps and balances)."""
    global _started, _balances
    with _started_lock:
        for service in _started or ():
            service.stop(timeout)
            if isinstance(service.jobs, InProcessDoseJobs):
                service.jobs.close()
        _started = None
        for balance_service in _balances or ():
            balance_service.stop(timeout)
            if isinstance(balance_service.jobs, InProcessWeighingJobs):
                balance_service.jobs.close()
        _balances = None
