"""One entry point for the dispensing module.

    python run.py                 migrate, seed the demo clinic if the database is empty, serve
    python run.py serve           serve the web app (waitress) at http://127.0.0.1:5000
    python run.py migrate         take the database to the newest migration
    python run.py seed-demo       load the demo clinic (refuses a database that has data)
    python run.py create-user     add a user (password from a prompt or --password-stdin)
    python run.py audit-verify    check the audit trail's hash chain, report the first broken link
    python run.py devices check   identify every configured device and print its state
    python run.py agent           a counter's device service on the counter PC (--server, --counter,
                                  --token-file); python run.py agent-token issues the token

The database is DATABASE_URL, or an SQLite file in the instance folder when it is not set.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from contextlib import contextmanager
from pathlib import Path

from dispensing.settings import PROJECT_ROOT, SettingsError, load_settings

INSTANCE_PATH = PROJECT_ROOT / "instance"


@contextmanager
def _database(settings):
    """Yield the configured Database and dispose of its connections however the command ends."""
    from dispensing.db import Database, sqlite_url_for

    url = settings.database_url or sqlite_url_for(INSTANCE_PATH)
    database = Database.from_url(url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        yield database
    finally:
        database.dispose()


def cmd_migrate(settings, _args) -> int:
    from dispensing import schema

    with _database(settings) as database:
        schema.upgrade(database.engine)
        with database.engine.connect() as connection:
            print(f"database at migration {schema.current_revision(connection)}")
    return 0


def cmd_seed_demo(settings, args) -> int:
    from sqlalchemy import text

    from dispensing import demo

    with _database(settings) as database, database.unit_of_work() as session:
        if demo.has_data(session):
            if args.if_empty:
                print("database already has data; demo not loaded")
                return 0
            print("refusing to load the demo into a database that already has data", file=sys.stderr)
            return 1
        summary = demo.seed(session, settings=settings, days=args.days, patients=args.patients)
        session.commit()
        # Fresh statistics, so the planner sees a clinic with history rather than empty tables.
        session.execute(text("ANALYZE"))
        session.commit()
    print(summary)
    return 0


def cmd_create_user(settings, args) -> int:
    from sqlalchemy import select

    from dispensing import accounts
    from dispensing.errors import DomainError
    from dispensing.models import Clinic, Role

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    with _database(settings) as database, database.unit_of_work() as session:
        clinic = session.scalar(select(Clinic).where(Clinic.code == args.clinic)) if args.clinic else None
        if clinic is None:
            clinic = session.scalar(select(Clinic).order_by(Clinic.id).limit(1))
        if clinic is None:
            print("no clinic in the database: run `python run.py seed-demo` or create one first", file=sys.stderr)
            return 1
        try:
            user = accounts.create_user(
                session,
                actor=None,
                clinic_id=clinic.id,
                username=args.username,
                full_name=args.full_name,
                password=password,
                roles={Role(role) for role in args.role},
                practice_start_date=args.practice_start_date,
                mmt_certificate_no=args.certificate,
            )
        except DomainError as exc:
            print(f"refused: {exc.params.get('code') or exc.code}", file=sys.stderr)
            return 1
        session.commit()
        print(f"user {user.username} created with roles {', '.join(sorted(r.value for r in user.roles))}")
    return 0


def cmd_audit_verify(settings, _args) -> int:
    from dispensing import audit

    with _database(settings) as database, database.unit_of_work() as session:
        report = audit.verify_chain(session)
    if report.ok:
        print(f"audit trail intact: {report.checked} events verified")
        return 0
    print(f"audit trail BROKEN at event {report.broken_at_seq}: {report.problem} "
          f"({report.checked} events verified before it)")
    return 2


def cmd_devices(settings, args) -> int:
    from devices.cli import check_devices

    return check_devices(args.registry or settings.devices_registry)


def cmd_serve(settings, args, database=None) -> int:
    from waitress import serve

    from web import create_app

    app = create_app(settings=settings, database=database)
    print(f"serving on http://{args.host}:{args.port}")
    serve(app, host=args.host, port=args.port, threads=args.threads)
    return 0


def cmd_scheduler(settings, _args) -> int:
    from dispensing.jobs.scheduler import build_scheduler

    with _database(settings) as database:
        scheduler = build_scheduler(database, background=False, rules_dir=settings.rules_dir)
        print("scheduler running: jobs run once per clinic and business date (Ctrl-C stops)")
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            pass
    return 0


def cmd_run(settings, args) -> int:
    args.if_empty = True
    args.days = 60
    args.patients = 200
    for step in (cmd_migrate, cmd_seed_demo):
        code = step(settings, args)
        if code:
            return code
    from dispensing.jobs.scheduler import start_background_scheduler
    from dispensing.rulebook import RuleBook
    from web.counter_service import start_in_process_balance_services, start_in_process_services

    with _database(settings) as database:
        # Single-PC mode: the scheduler and one device service per counter (its pump; counters with
        # an agent token are left to their agent) run in threads of this process, started exactly
        # once here (waitress has no reloader that would start them twice). Each device service
        # first turns whatever its counter left in flight into UNKNOWN doses for a human.
        start_background_scheduler(database, rules_dir=settings.rules_dir)
        services = start_in_process_services(database, RuleBook(settings.rules_dir))
        print(f"device services: {', '.join(s.name for s in services) or 'no counter with a pump'}")
        balances = start_in_process_balance_services(database)  # already started: the running ones
        print(f"balance services: {', '.join(s.name for s in balances) or 'no counter with a balance'}")
        return cmd_serve(settings, args, database=database)


def cmd_agent(settings, args) -> int:
    from devices.agent import read_token, run_agent

    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as exc:
        print(f"cannot read the token: {exc}", file=sys.stderr)
        return 2
    return run_agent(args.server, args.counter, token, poll_s=args.poll)


def cmd_agent_token(settings, args) -> int:
    import os

    from sqlalchemy import select

    from dispensing.counter import issue_agent_token
    from dispensing.models import Clinic, Counter

    with _database(settings) as database, database.unit_of_work() as session:
        clinic = session.scalar(select(Clinic).where(Clinic.code == args.clinic)) if args.clinic else None
        query = select(Counter).where(Counter.code == args.counter)
        if clinic is not None:
            query = query.where(Counter.clinic_id == clinic.id)
        counters = session.scalars(query).all()
        if len(counters) != 1:
            print(f"counter {args.counter!r}: {'not found' if not counters else 'ambiguous, give --clinic'}",
                  file=sys.stderr)
            return 1
        token = issue_agent_token(session, None, counters[0].id)
    if args.out:
        descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        print(f"token for counter {args.counter} written to {args.out}; copy it to the counter PC")
    else:
        print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from datetime import date

    parser = argparse.ArgumentParser(prog="run.py", description="Methadone dispensing module")
    sub = parser.add_subparsers(dest="command")

    def add_serve_options(p):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=5000)
        p.add_argument("--threads", type=int, default=8)

    add_serve_options(parser)
    add_serve_options(sub.add_parser("serve", help="serve the web app"))
    sub.add_parser("migrate", help="migrate the database to the newest revision")
    seed = sub.add_parser("seed-demo", help="load the demo clinic")
    seed.add_argument("--if-empty", action="store_true", help="do nothing when the database has data")
    seed.add_argument("--days", type=int, default=60, help="days of dose history")
    seed.add_argument("--patients", type=int, default=200)
    user = sub.add_parser("create-user", help="add a user")
    user.add_argument("--username", required=True)
    user.add_argument("--full-name", required=True)
    user.add_argument("--role", action="append", required=True, choices=["nurse", "pharmacist", "physician", "admin"])
    user.add_argument("--clinic", help="clinic code (default: the first clinic)")
    user.add_argument("--practice-start-date", type=date.fromisoformat)
    user.add_argument("--certificate", help="MMT training certificate number (physicians)")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sub.add_parser("audit-verify", help="verify the audit trail's hash chain")
    sub.add_parser("scheduler", help="run the scheduled jobs (one process per installation)")
    agent = sub.add_parser("agent", help="run a counter's device service on the counter PC (talks to the server)")
    agent.add_argument("--server", required=True, help="the server's base URL, e.g. https://mmt.example.vn")
    agent.add_argument("--counter", required=True, help="counter code, e.g. Q1")
    agent.add_argument("--token-file", type=Path, required=True, help="file holding the counter's agent token")
    agent.add_argument("--poll", type=float, default=0.5, help="seconds between asking for work")
    token = sub.add_parser("agent-token", help="issue a counter's agent token (the previous one stops working)")
    token.add_argument("--counter", required=True, help="counter code")
    token.add_argument("--clinic", help="clinic code (when counter codes repeat across clinics)")
    token.add_argument("--out", type=Path, help="write the token to this file (mode 600) instead of printing it")
    devices = sub.add_parser("devices", help="device commands")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)
    check = devices_sub.add_parser("check", help="identify each configured device")
    check.add_argument("--registry", type=Path)
    return parser


COMMANDS = {
    None: cmd_run,
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "seed-demo": cmd_seed_demo,
    "create-user": cmd_create_user,
    "audit-verify": cmd_audit_verify,
    "scheduler": cmd_scheduler,
    "agent": cmd_agent,
    "agent-token": cmd_agent_token,
    "devices": cmd_devices,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dispensing.rules import RuleTableError

    try:
        settings = load_settings()
        if args.command in (None, "serve"):
            from dispensing.rulebook import RuleBook

            RuleBook(settings.rules_dir).validate()
        return COMMANDS[args.command](settings, args)
    except (SettingsError, RuleTableError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
