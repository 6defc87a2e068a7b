"""Dispense benchmark: concurrent counters pushing patients through identify → assessment →
authorise → deliver (the device service's calls: next job, PROGRAMMED, RUNNING, result with the
ledger line), with the real dispense routine on a simulated pump that takes no time.

    python -m bench.dispense                     SQLite, and PostgreSQL when a URL is given
    python -m bench.dispense --pg postgresql://postgres@127.0.0.1:5432/test
    python -m bench.dispense --counters 4 --doses 200 --history-days 60

Each counter is a process of its own (as the web server's workers and the counters' agents are),
with its own database connections; every step runs in a fresh session as a request would,
including loading the signed-in user. Reported: doses per second over the whole run, p50/p99
server time per step (time inside the services, lock waits included), and SQL statements per dose.
The aim (issue 5): p99 ≤ 25 ms per step and ≥ 200 doses/s on 2 cores. Results go to
``bench/results/dispense.json`` and ``bench/results/dispense.md``; the exit status is 0 (numbers are
recorded, never asserted).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
STEPS = ("identify", "assessment", "authorize", "next_job", "programmed", "running", "result")
PASSWORD = "bench-password-1"
AIM_P99_MS = 25.0
AIM_DOSES_PER_S = 200.0


# ---- the simulated pump -------------------------------------------------------------------


class InstantPump:
    """A pump (``devices.interfaces.Pump``) that delivers exactly what it was programmed with, at
    once: the benchmark measures the server, not the liquid."""

    has_volume_counter = True
    poll_interval_s = 0.0
    max_volume_ml = Decimal("100.00")

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self._programmed = Decimal(0)
        self._counter = Decimal(0)

    def identify(self):
        from devices.interfaces import DeviceIdentity

        return DeviceIdentity(model="bench")

    def clear_counter(self) -> None:
        self._counter = Decimal(0)

    def prepare(self, volume_ml: Decimal) -> Decimal:
        self._programmed = volume_ml
        return volume_ml

    def start(self) -> None:
        self._counter = self._programmed

    def status(self):
        from devices.interfaces import PumpState, PumpStatus

        return PumpStatus(PumpState.STOPPED, self._counter)

    def dispensed_volume(self) -> Decimal:
        return self._counter

    def stop(self) -> None:
        return None

    def max_run_seconds(self, volume_ml: Decimal) -> float:
        return 0.0

    @contextmanager
    def recording(self, transcript):
        yield transcript

    def close(self) -> None:
        return None


# ---- the clinic ---------------------------------------------------------------------------


def _postgres_schema(url: str):
    from sqlalchemy import create_engine, text

    name = f"bench_dispense_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}"'))

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()

    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}", drop


def build_clinic(url: str, *, counters: int, patients: int, history_days: int) -> dict:
    """A clinic with ``counters`` calibrated pumps each holding an open bottle, and ``patients``
    on a maintenance order with ``history_days`` of doses. Returns the ids the workers need."""
    from sqlalchemy import insert

    from dispensing import accounts, schema, stock
    from dispensing.clock import business_date, utcnow
    from dispensing.db import Database
    from dispensing.models import (
        Calibration,
        CalibrationMethod,
        Clinic,
        Counter,
        Device,
        DeviceKind,
        Dose,
        DoseKind,
        DoseState,
        Location,
        LocationKind,
        Order,
        OrderKind,
        OrderPart,
        OrderStatus,
        Patient,
        Phase,
        Product,
        ProductKind,
        Role,
    )

    database = Database.from_url(url)
    schema.upgrade(database.engine)
    now = utcnow()
    session = database.session()
    clinic = Clinic(code="BENCH", name="Bench clinic")
    session.add(clinic)
    session.flush()
    today = business_date(now, clinic.timezone)

    def user(name: str, role: Role):
        return accounts.create_user(session, actor=None, clinic_id=clinic.id, username=name, full_name=name,
                                    password=PASSWORD, roles={role})

    pharmacist, physician = user("bench-pharmacist", Role.PHARMACIST), user("bench-physician", Role.PHYSICIAN)
    nurses = [user(f"bench-nurse-{n}", Role.NURSE) for n in range(1, counters + 1)]
    methadone = Product(code="MET10", name="Methadone 10 mg/ml", kind=ProductKind.LIQUID, unit="ml",
                        controlled=True, active_ingredient="methadone hydrochloride")
    safe = Location(clinic_id=clinic.id, code="KET", name="Két", kind=LocationKind.SAFE)
    session.add_all([methadone, safe])
    session.flush()
    pump_rows = []
    for n in range(1, counters + 1):
        counter = Counter(clinic_id=clinic.id, code=f"Q{n}", name=f"Quầy {n}")
        session.add(counter)
        session.flush()
        device = Device(clinic_id=clinic.id, counter_id=counter.id, code=f"PUMP-{n}", kind=DeviceKind.PUMP,
                        driver="ne1000", port_url="bench://instant", settings={"ceiling_ml": "25.00"})
        session.add(device)
        session.flush()
        location = Location(clinic_id=clinic.id, code=f"BOM-{n}", name=f"Bơm {n}", kind=LocationKind.PUMP,
                            device_id=device.id, capacity=Decimal("1000"))
        session.add(location)
        session.add(Calibration(device_id=device.id, method=CalibrationMethod.GRAVIMETRIC,
                                performed_at=now - timedelta(hours=1), performed_by_id=pharmacist.id,
                                factor=Decimal("1"), mean_error_pct=Decimal("0.1"), cv_pct=Decimal("0.2"),
                                passed=True, valid_until=now + timedelta(hours=12), liquid_used_ml=Decimal(0)))
        pump_rows.append((counter, device, location))
    session.commit()
    lot_in = stock.LotIn(product_id=methadone.id, lot_number="BENCH-01", expiry_date=today + timedelta(days=400),
                         bottles=tuple(stock.BottleIn(quantity=Decimal("1000")) for _ in range(counters)),
                         concentration_mg_per_ml=Decimal("10"), density_g_per_ml=Decimal("1.04"),
                         concentration_verified=True)
    received = stock.receive_delivery(session, pharmacist, stock.DeliveryIn(
        location_id=safe.id, supplier="Bench", delivery_note_no="PN-1", deliverer_name="Bench", lots=(lot_in,)),
        password=PASSWORD, now=now - timedelta(hours=2))
    for (_counter, _device, location), bottle in zip(pump_rows, received.containers, strict=True):
        stock.attach_container(session, pharmacist, location_id=location.id, container_id=bottle.id,
                               now=now - timedelta(hours=1))
    lot_id = received.containers[0].lot_id
    patient_ids = []
    for n in range(1, patients + 1):
        patient = Patient(clinic_id=clinic.id, code=f"B{n:05d}", card_barcode=f"P9{n:05d}", full_name=f"Bench {n}",
                          search_name=f"bench {n}", treatment_start_date=today - timedelta(days=history_days + 400))
        session.add(patient)
        session.flush()
        mg = Decimal(40 + (n % 12) * 5)
        session.add(Order(clinic_id=clinic.id, patient_id=patient.id, kind=OrderKind.DOSING, status=OrderStatus.SIGNED,
                          phase=Phase.MAINTENANCE, daily_total_mg=mg, valid_from=today - timedelta(days=20),
                          valid_until=today + timedelta(days=9), created_by_id=physician.id,
                          signed_by_id=physician.id, signed_at=now - timedelta(days=21),
                          parts=[OrderPart(part_no=1, dose_mg=mg)]))
        patient_ids.append(patient.id)
    session.flush()
    rows = [dict(clinic_id=clinic.id, patient_id=pid, order_id=None, medication_order_id=None, part_no=1,
                 business_date=today - timedelta(days=back), kind=DoseKind.OBSERVED, state=DoseState.COMPLETED,
                 idempotency_key=f"history-{pid}-{back}", product_id=methadone.id, lot_id=lot_id,
                 planned_mg=Decimal("60"), planned_ml=Decimal("6.00"), delivered_ml=Decimal("6.00"),
                 nurse_id=nurses[0].id, requested_at=now - timedelta(days=back),
                 finished_at=now - timedelta(days=back), created_at=now)
            for pid in patient_ids for back in range(1, history_days + 1)]
    orders = {o.patient_id: o.id for o in session.query(Order).filter(Order.clinic_id == clinic.id)}
    for row in rows:
        row["order_id"] = orders[row["patient_id"]]
    for start in range(0, len(rows), 5000):
        session.execute(insert(Dose), rows[start:start + 5000])
    session.commit()
    ids = {"clinic_id": clinic.id, "nurses": [n.id for n in nurses], "counters": [c.id for c, _d, _l in pump_rows],
           "patients": patient_ids, "history_doses": len(rows)}
    session.close()
    database.dispose()
    return ids


# ---- one counter ----------------------------------------------------------------------------


@dataclass
class CounterResult:
    timings: dict[str, list[float]]
    statements: int
    doses: int
    errors: list[str]
    started: float
    finished: float


def run_counter(url: str, counter_id: int, nurse_id: int, patient_ids: list[int], rules_dir: str,
                start_at: float) -> CounterResult:
    """One counter's loop (in its own process): every patient through the whole dose path."""
    from sqlalchemy import event

    from devices.clock import VirtualClock
    from devices.registry import CounterConfig, CounterDevices
    from devices.service import CounterDeviceService
    from dispensing import accounts, counter
    from dispensing.clock import utcnow
    from dispensing.db import Database
    from dispensing.models import Clinic, User
    from dispensing.rulebook import RuleBook
    from web.counter_service import InProcessDoseJobs

    database = Database.from_url(url)
    rulebook = RuleBook(Path(rules_dir))
    statements = 0

    def count(*_args):
        nonlocal statements
        statements += 1

    event.listen(database.engine, "before_cursor_execute", count)
    timings: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def timed(step: str):
        began = time.perf_counter()
        yield
        timings[step].append((time.perf_counter() - began) * 1000)

    @contextmanager
    def request():
        """A fresh session with the signed-in nurse loaded, as the web layer's request would."""
        session = database.session()
        try:
            nurse = accounts.load_user(session, nurse_id)  # as web.auth's user loader does
            _ = nurse.roles
            yield session, nurse
        finally:
            session.rollback()
            session.close()

    class TimedJobs(InProcessDoseJobs):
        def next_job(self):
            with timed("next_job"):
                return super().next_job()

        def progress(self, dose_id, state):
            with timed(state):
                return super().progress(dose_id, state)

        def result(self, dose_id, result):
            with timed("result"):
                return super().result(dose_id, result)

    with database.unit_of_work() as session:
        clinic = session.get(Clinic, session.get(User, nurse_id).clinic_id)
        rule_set = rulebook.for_clinic(clinic)
    jobs = TimedJobs(database, counter_id, rulebook.for_clinic)
    clock = VirtualClock(start=utcnow())

    def open_pump(setup, _clock):
        return CounterDevices(counter=CounterConfig(counter_id=setup["counter_code"], name="bench"),
                              pump=InstantPump(f"{setup['counter_code']}/pump"))

    service = CounterDeviceService(jobs, clock=clock, open_pump=open_pump, poll_s=0, name=str(counter_id))
    service.start_up()
    errors: list[str] = []

    def one_dose(patient_id: int) -> bool:
        with request() as (session, nurse), timed("identify"):
            counter.patient_panel(session, nurse, rule_set, patient_id, counter_id=counter_id, now=utcnow())
        with request() as (session, nurse), timed("assessment"):
            counter.record_assessment(session, nurse, rule_set, patient_id, counter.AssessmentAnswers())
        with request() as (session, nurse), timed("authorize"):
            counter.authorize(session, nurse, rule_set, patient_id=patient_id, counter_id=counter_id, part_no=1,
                              idempotency_key=uuid.uuid4().hex)
        return service.step()

    # One unmeasured dose first: compiled-statement caches and lazy imports are per process.
    one_dose(patient_ids[0])
    timings.clear()
    while time.time() < start_at:
        time.sleep(0.001)
    statements = 0
    started = time.perf_counter()
    doses = 0
    for patient_id in patient_ids[1:]:
        try:
            if not one_dose(patient_id):
                errors.append("no job")
                continue
            doses += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {getattr(exc, 'params', {}).get('code') or exc}")
    finished = time.perf_counter()
    service.stop()
    database.dispose()
    return CounterResult(dict(timings), statements, doses, errors[:20], started, finished)


def _worker(args):
    return run_counter(*args)


# ---- the run --------------------------------------------------------------------------------


def cpu_calibration_ms() -> float:
    """Time of a fixed pure-Python loop (≈ 150 ms on an idle modern core): how fast this machine
    was when the numbers were taken, so runs on a busy or shared machine can be compared."""
    started = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i
    return round((time.perf_counter() - started) * 1000, 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def bench(url: str, *, counters: int, doses: int, history_days: int) -> dict:
    from dispensing.settings import load_settings

    per_counter = doses // counters + 1  # one warm-up dose per counter, not measured
    built = time.perf_counter()
    ids = build_clinic(url, counters=counters, patients=per_counter * counters, history_days=history_days)
    print(f"  clinic built in {time.perf_counter() - built:.1f} s ({ids['history_doses']} doses of history)",
          flush=True)
    rules_dir = str(load_settings(environ={}, overrides={"env": "testing", "secret_key": "x" * 40}).rules_dir)
    start_at = time.time() + 3.0
    jobs = [(url, ids["counters"][i], ids["nurses"][i], ids["patients"][i * per_counter:(i + 1) * per_counter],
             rules_dir, start_at) for i in range(counters)]
    load_before = os.getloadavg()
    before = cpu_calibration_ms()
    context = multiprocessing.get_context("spawn")
    with context.Pool(counters) as pool:
        results: list[CounterResult] = pool.map(_worker, jobs)
    after = cpu_calibration_ms()
    given = sum(r.doses for r in results)
    wall = max(r.finished for r in results) - min(r.started for r in results)
    steps = {}
    for step in STEPS:
        values = [v for r in results for v in r.timings.get(step, [])]
        steps[step] = {"n": len(values), "p50_ms": round(statistics.median(values), 2) if values else None,
                       "p99_ms": round(percentile(values, 99), 2), "max_ms": round(max(values, default=0), 2)}
    return {
        "doses": given, "seconds": round(wall, 2), "doses_per_s": round(given / wall, 1) if wall else None,
        "statements_per_dose": round(sum(r.statements for r in results) / given, 1) if given else None,
        "steps": steps, "errors": [e for r in results for e in r.errors][:20],
        "history_doses": ids["history_doses"], "cpu_calibration_ms": {"before": before, "after": after},
        "load_average_before": load_before, "load_average": os.getloadavg(),
    }


def markdown(report: dict) -> str:
    lines = [
        "# Dispense benchmark",
        "",
        f"{report['counters']} counters, each a process of its own, {report['doses']} doses in all; every patient "
        f"with {report['history_days']} days of dose history; identify → assessment → authorise → deliver (the "
        "device service's calls on a simulated pump that takes no time). Server time is measured around each "
        "service call in a fresh session, lock waits included. Aim: p99 ≤ 25 ms per step, ≥ 200 doses/s on 2 "
        f"cores. Generated {report['generated_at']} on {report['machine']} ({report['cpus']} CPUs).",
        "",
        "| database | doses/s | SQL statements per dose | " + " | ".join(f"{s} p50/p99 ms" for s in STEPS) + " |",
        "|---|---|---|" + "---|" * len(STEPS),
    ]
    for name, result in report["databases"].items():
        cells = [f"{result['steps'][s]['p50_ms']} / {result['steps'][s]['p99_ms']}" for s in STEPS]
        lines.append(f"| {name} | {result['doses_per_s']} | {result['statements_per_dose']} | " + " | ".join(cells)
                     + " |")
    lines.append("")
    for name, result in report["databases"].items():
        calibration = result["cpu_calibration_ms"]
        lines.append(f"{name}: CPU check (3 M-iteration Python loop, ≈ 150 ms on an idle core) {calibration['before']} ms "
                     f"before and {calibration['after']} ms after the run; load average (1, 5, 15 min) before "
                     f"{', '.join(f'{x:.1f}' for x in result.get('load_average_before', ()))} and after "
                     f"{', '.join(f'{x:.1f}' for x in result['load_average'])}.")
        if result["errors"]:
            lines.append(f"{name} errors: " + "; ".join(result["errors"]))
    if report.get("note"):
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispense", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=os.environ.get("MMT_BENCH_PG_URL") or os.environ.get("MMT_TEST_DATABASE_URL"),
                        help="PostgreSQL URL (a private schema is created and dropped)")
    parser.add_argument("--counters", type=int, default=4)
    parser.add_argument("--doses", type=int, default=400, help="doses in all (one patient each)")
    parser.add_argument("--history-days", type=int, default=60)
    parser.add_argument("--note", default="", help="a line added to the Markdown report (e.g. machine load)")
    args = parser.parse_args(argv)
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "cpus": os.cpu_count(), "counters": args.counters, "doses": args.doses,
        "history_days": args.history_days, "databases": {}, "note": args.note,
    }
    with tempfile.TemporaryDirectory(prefix="bench-dispense-") as tmp:
        print("sqlite:", flush=True)
        report["databases"]["sqlite"] = bench(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", counters=args.counters,
                                              doses=args.doses, history_days=args.history_days)
    if args.pg:
        print("postgresql:", flush=True)
        url, drop = _postgres_schema(args.pg)
        try:
            report["databases"]["postgresql"] = bench(url, counters=args.counters, doses=args.doses,
                                                      history_days=args.history_days)
        finally:
            drop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dispense.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "dispense.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
