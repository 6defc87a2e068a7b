"""Benchmark: the end-of-day close and the monthly report for a clinic of 500 patients with one
year of history, on SQLite and PostgreSQL.

    python -m bench.stock --database sqlite
    python -m bench.stock --database postgresql --url postgresql://postgres@127.0.0.1:5432/test

The generator writes the year with bulk inserts (no ORM objects, no services): every day three
pumps dose the patients from 1000 ml bottles, calibrate in the morning, change bottles as they run
low, and every location is closed with a small variance (adjustment lines, a closed reconciliation
and a snapshot per location and day), as the services would have left it. Deliveries come monthly.
The last day is left open: the close benchmark closes it (each run inside a transaction that is
rolled back, so every run closes the same day); the monthly report benchmark builds the last full
month's report and renders it to PDF and Excel. Results (machine, sizes, p50 and max over the runs)
go to bench/results/stock-<database>.json and the summary bench/results/stock.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session

from dispensing import accounts, reports, schema, stock
from dispensing.db import Database, make_engine
from dispensing.models import (
    Clinic,
    Container,
    ContainerAttachment,
    Counter,
    Device,
    DeviceKind,
    Dose,
    DoseKind,
    DoseState,
    Location,
    LocationKind,
    Lot,
    MeasureMethod,
    MovementKind,
    Order,
    OrderKind,
    OrderPart,
    OrderStatus,
    Patient,
    Phase,
    Product,
    ProductKind,
    Reconciliation,
    ReconciliationStatus,
    Role,
    StockMovement,
    StockSnapshot,
    User,
    UserRole,
)

RESULTS = Path(__file__).resolve().parent / "results"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
# The open day the close benchmark closes; the report covers the month before it.
END = date(2026, 11, 1)
BOTTLE = Decimal("1000")
CALIBRATION = Decimal("35.00")
CHANGE_BELOW = Decimal("60")
PASSWORD = "bench-password-1"
BATCH = 20_000
ZERO = Decimal("0.000")


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, dtime(hour, minute), tzinfo=TZ).astimezone(UTC)


class Generator:
    """Writes the clinic and its year with bulk inserts; keeps the balances it needs in memory."""

    def __init__(self, session: Session, *, patients: int, days: int, seed: int = 6):
        self.session = session
        self.patients = patients
        self.days = days
        self.rng = random.Random(seed)
        self.now = datetime.now(UTC)
        self.moves: list[dict] = []
        self.counts: dict[str, int] = defaultdict(int)

    def _insert(self, model, rows: list[dict], returning=None):
        if not rows:
            return []
        ids = []
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            if returning is not None:
                ids += self.session.scalars(insert(model).returning(returning, sort_by_parameter_order=True),
                                            chunk).all()
            else:
                self.session.execute(insert(model), chunk)
        self.counts[model.__tablename__] += len(rows)
        return ids

    def move(self, kind, day, at, lot, quantity, *, container=None, src=None, dst=None, dose_id=None, by=None,
             reason=None):
        self.moves.append(dict(
            clinic_id=self.clinic.id, business_date=day, occurred_at=at, kind=kind, product_id=self.product.id,
            lot_id=lot, container_id=container, from_location_id=src, to_location_id=dst, quantity=quantity,
            dose_id=dose_id, recorded_by_id=by or self.pharmacist, reason=reason, created_at=self.now))

    def setup(self) -> None:
        session = self.session
        self.clinic = Clinic(code="BENCH", name="Cơ sở điều trị Methadone (bench)")
        session.add(self.clinic)
        session.flush()
        users = {}
        for name, role in (("ds_bench", Role.PHARMACIST), ("ds_bench2", Role.PHARMACIST), ("dd_bench", Role.NURSE),
                           ("bs_bench", Role.PHYSICIAN)):
            user = User(clinic_id=self.clinic.id, username=name, full_name=name, password_hash=accounts.hash_password(
                PASSWORD), role_rows=[UserRole(role=role)])
            session.add(user)
            users[name] = user
        self.product = Product(code="MET-BENCH", name="Methadone 10 mg/ml", kind=ProductKind.LIQUID, unit="ml",
                               controlled=True, active_ingredient="methadone hydrochloride", strength="10 mg/ml")
        session.add(self.product)
        session.flush()
        self.users = users
        self.pharmacist, self.nurse, self.physician = (users["ds_bench"].id, users["dd_bench"].id,
                                                       users["bs_bench"].id)
        self.safe = Location(clinic_id=self.clinic.id, code="KET", name="Két", kind=LocationKind.SAFE)
        quarantine = Location(clinic_id=self.clinic.id, code="BT", name="Biệt trữ", kind=LocationKind.QUARANTINE)
        session.add_all([self.safe, quarantine])
        self.pumps = []
        for n in (1, 2, 3):
            counter = Counter(clinic_id=self.clinic.id, code=f"Q{n}", name=f"Quầy {n}")
            session.add(counter)
            session.flush()
            device = Device(clinic_id=self.clinic.id, counter_id=counter.id, code=f"P{n}", kind=DeviceKind.PUMP,
                            driver="ne1000", port_url="sim://ne1000")
            session.add(device)
            session.flush()
            pump = Location(clinic_id=self.clinic.id, code=f"BOM{n}", name=f"Bơm {n}", kind=LocationKind.PUMP,
                            device_id=device.id, capacity=BOTTLE)
            session.add(pump)
            session.flush()
            self.pumps.append((pump, device, counter))
        session.flush()

    def generate(self) -> None:
        self.setup()
        first = END - timedelta(days=self.days)
        rng = self.rng
        patient_ids = self._insert(Patient, [
            dict(clinic_id=self.clinic.id, code=f"B{n:05d}", card_barcode=f"PB{n:06d}", full_name=f"Người Bệnh {n}",
                 search_name=f"nguoi benh {n}", treatment_start_date=first - timedelta(days=rng.randint(30, 900)),
                 created_at=self.now)
            for n in range(self.patients)
        ], returning=Patient.id)
        mg = {pid: Decimal(rng.choice([30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 140])) for pid in patient_ids}
        order_ids = self._insert(Order, [
            dict(clinic_id=self.clinic.id, patient_id=pid, kind=OrderKind.DOSING, status=OrderStatus.SIGNED,
                 phase=Phase.MAINTENANCE, daily_total_mg=mg[pid], valid_from=first, valid_until=END + timedelta(days=30),
                 created_by_id=self.physician, signed_by_id=self.physician, signed_at=_local(first, 8),
                 created_at=self.now)
            for pid in patient_ids
        ], returning=Order.id)
        self._insert(OrderPart, [dict(order_id=oid, part_no=1, dose_mg=mg[pid])
                                 for oid, pid in zip(order_ids, patient_ids, strict=True)])
        order_of = dict(zip(patient_ids, order_ids, strict=True))
        pump_of = {pid: self.pumps[i % 3] for i, pid in enumerate(patient_ids)}

        # Per location: {(lot, container): balance}; per pump: the open bottle.
        self.held = held = defaultdict(lambda: defaultdict(lambda: ZERO))
        self.open_bottle = open_bottle = {pump.id: None for pump, _d, _c in self.pumps}
        self.sealed = sealed = []  # (expiry, lot, container) in the safe, first expiry first
        self.attachments = attachments = []
        self.open_index = {}
        closed_through = None
        month_seen = None
        for offset in range(self.days + 1):
            day = first + timedelta(days=offset)
            if day.month != month_seen:  # monthly delivery
                month_seen = day.month
                lot = Lot(product_id=self.product.id, lot_number=f"L{day:%y%m}", expiry_date=day + timedelta(days=540),
                          concentration_mg_per_ml=Decimal("10.000"), density_g_per_ml=Decimal("1.0400"),
                          concentration_verified_by_id=self.pharmacist, concentration_verified_at=_local(day, 7))
                self.session.add(lot)
                self.session.flush()
                needed = int(sum(mg.values()) / 10 * 32 / BOTTLE) + 10
                labels = [f"C{uuid.uuid4().int % 10**17:017d}" for _ in range(needed)]
                container_ids = self._insert(Container, [
                    dict(clinic_id=self.clinic.id, lot_id=lot.id, label_code=label, nominal_quantity=BOTTLE,
                         created_at=self.now) for label in labels], returning=Container.id)
                for cid in container_ids:
                    self.move(MovementKind.RECEIPT, day, _local(day, 7, 30), lot.id, BOTTLE, container=cid,
                              dst=self.safe.id, reason="Phiếu nhập tháng")
                    held[self.safe.id][(lot.id, cid)] += BOTTLE
                    sealed.append((lot.expiry_date, lot.id, cid))
                sealed.sort()

            for pump, _device, _counter in self.pumps:
                if open_bottle[pump.id] is None:
                    self._attach(day, pump.id, _local(day, 6))
                self._take(day, pump.id, CALIBRATION, MovementKind.CALIBRATION, _local(day, 6, 5))
            dose_rows, dose_pumps = [], []
            for pid in patient_ids:
                if rng.random() < 0.04:
                    continue
                pump, device, counter = pump_of[pid]
                at = _local(day, 6, 30) + timedelta(seconds=rng.randint(0, 5 * 3600))
                ml = (mg[pid] / 10).quantize(Decimal("0.01"))
                dose_rows.append(dict(
                    clinic_id=self.clinic.id, patient_id=pid, order_id=order_of[pid], part_no=1, business_date=day,
                    kind=DoseKind.OBSERVED, state=DoseState.COMPLETED, idempotency_key=uuid.uuid4().hex,
                    product_id=self.product.id, counter_id=counter.id, device_id=device.id, planned_mg=mg[pid],
                    planned_ml=ml, delivered_ml=ml, nurse_id=self.nurse, requested_at=at,
                    finished_at=at + timedelta(seconds=40), created_at=self.now))
                dose_pumps.append(pump.id)
            dose_ids = self._insert(Dose, dose_rows, returning=Dose.id)
            for row, dose_id, pump_id in sorted(zip(dose_rows, dose_ids, dose_pumps, strict=True),
                                                key=lambda item: item[0]["finished_at"]):
                self._take(day, pump_id, row["delivered_ml"], MovementKind.DOSE, row["finished_at"], dose_id)
            if rng.random() < 0.05:
                pump = rng.choice(self.pumps)[0]
                self._take(day, pump.id, Decimal("2.50"), MovementKind.WASTE, _local(day, 11))
            if day == END:
                break  # the open day: the benchmark closes it
            self._close_day(day, held, open_bottle)
            closed_through = day
            if len(self.moves) > BATCH:
                self._flush_moves()
        self._flush_moves()
        self._insert(ContainerAttachment, attachments)
        self.session.flush()
        self.closed_through = closed_through

    def _attach(self, day, pump_id, at):
        _expiry, lot_id, cid = self.sealed.pop(0)
        self.move(MovementKind.TRANSFER, day, at, lot_id, BOTTLE, container=cid, src=self.safe.id, dst=pump_id,
                  reason="attach")
        self.held[self.safe.id][(lot_id, cid)] -= BOTTLE
        self.held[pump_id][(lot_id, cid)] += BOTTLE
        self.open_bottle[pump_id] = (lot_id, cid)
        self.open_index[pump_id] = len(self.attachments)
        self.attachments.append(dict(clinic_id=self.clinic.id, container_id=cid, location_id=pump_id, attached_at=at,
                                     attached_by_id=self.pharmacist, created_at=self.now))

    def _take(self, day, pump_id, amount, kind, at, dose_id=None):
        """Book ``amount`` out of the pump's open bottle, changing bottles when it runs low (the
        old bottle's last millilitres flush the line as priming)."""
        held = self.held[pump_id]
        lot_id, cid = self.open_bottle[pump_id]
        if held[(lot_id, cid)] < amount + CHANGE_BELOW:
            rest = held[(lot_id, cid)]
            if rest > 0:
                self.move(MovementKind.PRIMING, day, at, lot_id, rest, container=cid, src=pump_id, reason="đổi chai")
                held[(lot_id, cid)] = ZERO
            self.attachments[self.open_index[pump_id]].update(detached_at=at, detached_by_id=self.pharmacist,
                                                              remaining=ZERO)
            self._attach(day, pump_id, at)
            lot_id, cid = self.open_bottle[pump_id]
        self.move(kind, day, at, lot_id, amount, container=cid, src=pump_id, dose_id=dose_id,
                  by=self.nurse if dose_id else self.pharmacist)
        held[(lot_id, cid)] -= amount

    def _flush_moves(self):
        self._insert(StockMovement, self.moves)
        self.moves = []

    def _close_day(self, day, held, open_bottle):
        """Close every location: a small variance at the pumps, none at the safe."""
        closed_at = _local(day, 19)
        day_moves = [m for m in self.moves if m["business_date"] == day]
        reconciliations, snapshots = [], []
        for location_id in [self.safe.id, *(pump.id for pump, _d, _c in self.pumps)]:
            terms = defaultdict(lambda: ZERO)
            for m in day_moves:
                if m["to_location_id"] == location_id:
                    terms["received" if m["kind"] is MovementKind.RECEIPT else "transferred_in"] += m["quantity"]
                elif m["from_location_id"] == location_id:
                    key = {MovementKind.TRANSFER: "transferred_out", MovementKind.DOSE: "issued"}.get(m["kind"],
                                                                                                    "waste")
                    terms[key] += m["quantity"]
            items = held[location_id]
            expected = sum(items.values(), ZERO)
            opening = (expected - terms["received"] - terms["transferred_in"] + terms["transferred_out"]
                       + terms["issued"] + terms["waste"])
            variance = ZERO
            if location_id != self.safe.id and open_bottle.get(location_id):
                variance = self.rng.choice([ZERO, ZERO, ZERO, Decimal("-0.50"), Decimal("0.25"), Decimal("-1.00")])
            if variance:
                lot_id, cid = open_bottle[location_id]
                self.move(MovementKind.ADJUSTMENT, day, closed_at, lot_id, abs(variance), container=cid,
                          src=location_id if variance < 0 else None, dst=location_id if variance > 0 else None,
                          reason="reconciliation")
                items[(lot_id, cid)] += variance
            base = opening + terms["received"] + terms["transferred_in"]
            reconciliations.append(dict(
                clinic_id=self.clinic.id, location_id=location_id, product_id=self.product.id, business_date=day,
                status=ReconciliationStatus.CLOSED, opening=opening, received=terms["received"],
                transferred_in=terms["transferred_in"], transferred_out=terms["transferred_out"],
                issued=terms["issued"], waste=terms["waste"], other_out=ZERO, adjusted=ZERO,
                expected_close=expected, measured_close=expected + variance,
                measure_method=MeasureMethod.PUMP if location_id != self.safe.id else MeasureMethod.CYLINDER,
                variance=variance, variance_pct=(variance * 100 / base).quantize(Decimal("0.000001")) if base else None,
                within_tolerance=True, loss=-variance if variance < 0 else ZERO,
                surplus=variance if variance > 0 else ZERO, closed_by_id=self.pharmacist, closed_at=closed_at,
                created_at=self.now))
            for (lot_id, cid), value in list(items.items()):
                if value == 0:
                    del items[(lot_id, cid)]
                    continue
                snapshots.append(dict(clinic_id=self.clinic.id, location_id=location_id, product_id=self.product.id,
                                      business_date=day, lot_id=lot_id, container_id=cid, balance=value))
        self._insert(Reconciliation, reconciliations)
        self._insert(StockSnapshot, snapshots)


def _timed(function, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return {"runs": runs, "p50_s": round(statistics.median(samples), 4), "max_s": round(max(samples), 4),
            "min_s": round(min(samples), 4), "samples_s": [round(s, 4) for s in samples]}


def _in_rollback(engine, function):
    """Run ``function(session)`` in a transaction that is rolled back: services' commits only
    release savepoints, so every run sees the same data."""
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            return function(session)
        finally:
            session.close()
            transaction.rollback()


def _machine(engine) -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            version = "PostgreSQL " + connection.exec_driver_sql("show server_version").scalar()
        else:
            version = "SQLite " + sqlite3.sqlite_version
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "database": version}


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other processes share the machine)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def run(database: str, url: str | None, *, patients: int, days: int, runs: int) -> dict:
    accounts.use_cheap_hashing_for_tests()  # the bench signs hundreds of times; argon2 cost is not under test
    cleanup = None
    if database == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="mmt-bench-"))
        url = f"sqlite:///{folder / 'bench.sqlite3'}"
    else:
        base = url or "postgresql://postgres@127.0.0.1:5432/test"
        name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"

        def cleanup():
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            admin.dispose()
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        started = time.perf_counter()
        db = Database(engine)
        with db.unit_of_work() as session:
            generator = Generator(session, patients=patients, days=days)
            generator.generate()
            session.commit()
            ids = dict(clinic=generator.clinic.id, product=generator.product.id, safe=generator.safe.id,
                       pumps=[pump.id for pump, _d, _c in generator.pumps], counts=dict(generator.counts))
        generate_s = time.perf_counter() - started
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        _check(engine, ids)
        machine = _machine(engine)
        machine["load_average_before"] = _load()
        results = _measure(engine, ids, runs)
        machine["load_average_after"] = _load()
        with engine.connect() as connection:
            sizes = {name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()  # noqa: S608
                     for name in ("patient", "dose", "stock_movement", "stock_snapshot", "reconciliation",
                                  "container")}
        report = {
            "benchmark": "stock", "database": database, "machine": machine,
            "dataset": {"patients": patients, "days": days, "pumps": 3, "open_day": END.isoformat(),
                        "rows": sizes, "generate_s": round(generate_s, 1)},
            "aims": {"close_s": 1.0, "monthly_report_s": 2.0},
            "results": results["timings"],
            "what_was_timed": results["what_was_timed"],
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return report
    finally:
        engine.dispose()
        if cleanup:
            cleanup()


def _check(engine, ids) -> None:
    """The generated ledger agrees with its snapshots (else the timings would mean nothing)."""
    day = END - timedelta(days=1)
    with Session(engine) as session:
        for location_id in (ids["safe"], *ids["pumps"]):
            fast = stock.balance(session, location_id=location_id, end_of=day)
            m = StockMovement
            plain = (session.scalar(select(func.coalesce(func.sum(m.quantity), 0)).where(
                m.to_location_id == location_id, m.business_date <= day))
                - session.scalar(select(func.coalesce(func.sum(m.quantity), 0)).where(
                    m.from_location_id == location_id, m.business_date <= day)))
            if fast != plain:
                raise RuntimeError(f"generator inconsistent at location {location_id}: {fast} != {plain}")


def _measure(engine, ids, runs: int) -> dict:
    pharmacist_name = "ds_bench"
    evidence: dict = {}

    def close(location_id):
        def body(session):
            user = session.scalar(select(User).where(User.username == pharmacist_name))
            sheet = stock.worksheet(session, location_id=location_id, product_id=ids["product"], day=END)
            method = MeasureMethod.PUMP if location_id in ids["pumps"] else MeasureMethod.CYLINDER
            rec = stock.close_day(session, user, location_id=location_id, product_id=ids["product"], day=END,
                                  measurement=stock.Measurement(method, value=sheet.expected_close - Decimal("0.50")),
                                  password=PASSWORD, now=_local(END, 19))
            lines = session.scalar(select(func.count()).select_from(StockMovement).where(
                (StockMovement.from_location_id == location_id) | (StockMovement.to_location_id == location_id),
                StockMovement.business_date == END))
            evidence[f"close_{location_id}"] = {
                "lines_that_day": lines, "opening": str(rec.opening), "issued": str(rec.issued),
                "expected_close": str(rec.expected_close), "loss": str(rec.loss), "status": rec.status.value}
        return lambda: _in_rollback(engine, body)

    month_last = END.replace(day=1) - timedelta(days=1)

    def monthly(render: bool):
        def body(session):
            user = session.scalar(select(User).where(User.username == pharmacist_name))
            document = reports.monthly_report(session, user, year=month_last.year, month=month_last.month)
            evidence["monthly_report"] = {key: str(value) for key, value in document.rows[0].items()
                                          if key in ("opening", "received", "issued", "loss", "surplus", "closing",
                                                     "patients")}
            if render:
                evidence["monthly_report"]["pdf_bytes"] = len(reports.render_pdf(document))
                evidence["monthly_report"]["xlsx_bytes"] = len(reports.render_xlsx(document))
        return lambda: _in_rollback(engine, body)

    reports.render_pdf(reports.ReportDocument("warm", "warm", [], [], []))  # import and font set-up once
    results = {
        "close_pump": _timed(close(ids["pumps"][0]), runs),
        "close_safe": _timed(close(ids["safe"]), runs),
        "monthly_report_data": _timed(monthly(False), runs),
        "monthly_report_pdf_and_excel": _timed(monthly(True), runs),
    }
    return {"timings": results, "what_was_timed": evidence}


def write(report: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"stock-{report['database']}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["# Stock benchmark: end-of-day close and monthly report", "",
             "500 patients, one year of daily doses at three pumps (generated by `python -m bench.stock`).",
             "Each figure is over several runs of the same operation; aims: close ≤ 1 s, monthly report ≤ 2 s.", ""]
    for result_path in sorted(RESULTS.glob("stock-*.json")):
        data = json.loads(result_path.read_text(encoding="utf-8"))
        machine, dataset = data["machine"], data["dataset"]
        lines += [f"## {machine['database']}", "",
                  f"{machine['cpu']} ({machine['cpus']} CPUs), {machine['platform']}, Python {machine['python']};"
                  f" load average {machine.get('load_average_before')} before and {machine.get('load_average_after')}"
                  f" after the timed runs (a shared machine); recorded {data['recorded_at']}.",
                  f"Rows: {', '.join(f'{k} {v:,}' for k, v in dataset['rows'].items())}.", "",
                  "| operation | p50 (s) | max (s) | runs |", "|---|---|---|---|"]
        for name, result in data["results"].items():
            lines.append(f"| {name.replace('_', ' ')} | {result['p50_s']:.3f} | {result['max_s']:.3f} | {result['runs']} |")
        lines.append("")
    (RESULTS / "stock.md").write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stock", description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--url", help="PostgreSQL server URL (a private schema is created and dropped)")
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only; keep bench/results as it is")
    args = parser.parse_args(argv)
    report = run(args.database, args.url, patients=args.patients, days=args.days, runs=args.runs)
    print(json.dumps({"results": report["results"], "what_was_timed": report["what_was_timed"]}, indent=2))
    if not args.no_write:
        print(f"written to {write(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
