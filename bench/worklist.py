"""Server time of the counter's worklist (``dispensing.counter.panel.worklist``) for a large clinic.

    python -m bench.worklist                          500 patients × 365 days, SQLite
    python -m bench.worklist --pg postgresql://postgres@127.0.0.1:5432/test
    python -m bench.worklist --keep /tmp/wl           keep (and reuse) the loaded databases
    python -m bench.worklist --keep /tmp/wl --baseline old/worklist.json   compare with an earlier run

The demo clinic is loaded once per database (``--keep DIR``: a SQLite file and a PostgreSQL schema
named after the size, reused by later runs, so two versions of the code can be compared on the
same data). Each run calls ``worklist`` ``--repeat`` times after two warm-up calls, each in a fresh
session, and records the median and p95 wall and CPU time, the SQL statements of one call, and
the machine's load average before and after (the bench machine is shared: read the numbers with
it). Results: ``bench/results/worklist.json`` and ``.md`` (``--output`` for another folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, func, select, text

RESULTS = Path(__file__).parent / "results"


def _database(url: str, patients: int, days: int):
    from dispensing import demo, schema
    from dispensing.db import Database
    from dispensing.models import Patient

    database = Database.from_url(url)
    schema.upgrade(database.engine)
    with database.unit_of_work() as session:
        if session.scalar(select(func.count()).select_from(Patient)):
            print("  reusing the loaded demo", flush=True)
            return database
        started = time.perf_counter()
        demo.seed(session, patients=patients, days=days, photos=False)
        session.commit()
        print(f"  demo loaded in {time.perf_counter() - started:.1f} s", flush=True)
    with database.engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    return database


def _pg_url(base: str, schema_name: str) -> str:
    from sqlalchemy import create_engine

    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema_name}"'))
    admin.dispose()
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema_name}"


def _drop_pg_schema(base: str, schema_name: str) -> None:
    from sqlalchemy import create_engine

    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE'))
    admin.dispose()


def measure(label: str, database, repeat: int) -> dict:
    from dispensing.clock import utcnow
    from dispensing.counter.panel import worklist
    from dispensing.models import Clinic, Patient, User
    from dispensing.rulebook import RuleBook
    from dispensing.settings import load_settings

    settings = load_settings(environ={}, overrides={"env": "testing", "secret_key": "bench-" + "x" * 30})
    book = RuleBook(settings.rules_dir)
    with database.unit_of_work() as session:
        nurse_id = session.scalar(select(User.id).where(User.username == "dieuduong1"))
        clinic = session.scalar(select(Clinic).order_by(Clinic.id).limit(1))
        rule_set = book.for_clinic(clinic)
        patients = session.scalar(select(func.count()).select_from(Patient))

    def call() -> tuple[float, float, int]:
        with database.unit_of_work() as session:
            nurse = session.get(User, nurse_id)
            started, cpu = time.perf_counter(), time.process_time()
            result = worklist(session, nurse, rule_set, now=utcnow())
            return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000, len(result.rows)

    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    call()
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    load_before = os.getloadavg()
    walls, cpus, rows = [], [], 0
    for _ in range(repeat):
        wall, cpu, rows = call()
        walls.append(wall)
        cpus.append(cpu)
    load_after = os.getloadavg()
    walls.sort()
    result = {
        "backend": label, "patients": patients, "rows": rows, "rule_set": rule_set.version,
        "dose_history_days": rule_set.dose_history_days if hasattr(rule_set, "dose_history_days") else None,
        "median_ms": round(statistics.median(walls), 1),
        "p95_ms": round(walls[max(0, int(len(walls) * 0.95) - 1)], 1),
        "median_cpu_ms": round(statistics.median(cpus), 1),
        "statements": len(statements),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
    }
    print(f"  worklist: {result['median_ms']} ms median (p95 {result['p95_ms']}, CPU {result['median_cpu_ms']}), "
          f"{result['statements']} statements, {rows} rows; load {result['load_before']} → {result['load_after']}",
          flush=True)
    return result


def markdown(report: dict) -> str:
    lines = [
        "# Counter worklist server time",
        "",
        f"Demo clinic: {report['demo']['patients']} patients × {report['demo']['days']} days; "
        f"median of {report['repeat']} calls after warm-up, in-process (no HTTP). {report['machine']}, "
        f"{report['cpus']} CPUs (shared: see the load averages, 1/5/15 min). Generated {report['generated_at']}.",
        "",
        "| database | label | median ms | p95 ms | CPU ms | statements | rows | dose window (days) | load before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [(report.get("baseline", {}).get("label"), r) for r in report.get("baseline", {}).get("results", [])]
    runs += [(report["label"], r) for r in report["results"]]
    for label, r in runs:
        lines.append(f"| {r['backend']} | {label} | {r['median_ms']} | {r['p95_ms']} | {r['median_cpu_ms']} | "
                     f"{r['statements']} | {r['rows']} | {r['dose_history_days']} | "
                     f"{' / '.join(map(str, r['load_before']))} → {' / '.join(map(str, r['load_after']))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worklist", description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--pg", default=os.environ.get("MMT_BENCH_PG_URL"), help="PostgreSQL URL")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--keep", type=Path, help="folder for the SQLite file; keeps the PostgreSQL schema too")
    parser.add_argument("--drop", action="store_true", help="drop the kept PostgreSQL schema at the end")
    parser.add_argument("--label", default="current code")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--baseline", type=Path, help="a worklist.json of an earlier run (e.g. the code before a "
                        "change, on the same --keep databases) to show in the same report")
    args = parser.parse_args(argv)
    report = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
              "cpus": os.cpu_count(), "label": args.label, "demo": {"patients": args.patients, "days": args.days},
              "repeat": args.repeat, "results": []}
    name = f"bench_worklist_{args.patients}x{args.days}"
    with tempfile.TemporaryDirectory(prefix="bench-worklist-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not args.no_sqlite:
            print(f"== SQLite: {args.patients} patients × {args.days} days", flush=True)
            database = _database(f"sqlite:///{folder / (name + '.sqlite3')}", args.patients, args.days)
            try:
                report["results"].append(measure("sqlite", database, args.repeat))
            finally:
                database.dispose()
        if args.pg:
            print(f"== PostgreSQL: {args.patients} patients × {args.days} days", flush=True)
            database = _database(_pg_url(args.pg, name), args.patients, args.days)
            try:
                report["results"].append(measure("postgresql", database, args.repeat))
            finally:
                database.dispose()
                if not args.keep or args.drop:
                    _drop_pg_schema(args.pg, name)
    if args.baseline:
        earlier = json.loads(args.baseline.read_text())
        report["baseline"] = {k: earlier[k] for k in ("generated_at", "label", "results")}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "worklist.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (args.output / "worklist.md").write_text(markdown(report))
    print(f"results: {args.output / 'worklist.json'}, {args.output / 'worklist.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
