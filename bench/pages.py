"""Page weight and server time of every registered page, with the demo clinic loaded.

    python -m bench.pages                      SQLite, and PostgreSQL when a URL is given
    python -m bench.pages --pg postgresql://postgres@127.0.0.1:5432/test
    python -m bench.pages --patients 200 --days 60 --repeat 20

The limits (issue 7): each page ≤ 150 KB transferred (the HTML plus the styles, scripts and images
it loads, on a cold cache, uncompressed) and ≤ 100 ms server time (median of ``--repeat`` requests
after two warm-up requests, measured around the WSGI call in-process, so no network). Results go to
``bench/results/pages.json`` and ``bench/results/pages.md``; the exit status is 1 when a page is
over a limit.

Register a page from any module named ``bench/pages_<area>.py`` (imported automatically)::

    from bench.pages import register
    register("counter: scan screen", "dieuduong1", "/counter")
    register("stock: ledger", "duocsi1", lambda session: f"/stock/lots/{first_lot_id(session)}")
    register("counter: check (htmx)", "dieuduong1", "/counter/check", method="POST",
             data=lambda session: {"scan": "P000001"}, csrf_from="/counter", htmx=True)

``path`` and ``data`` may be callables taking a SQLAlchemy Session on the demo database.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

RESULTS = Path(__file__).parent / "results"
MAX_BYTES = 150 * 1024
MAX_SERVER_MS = 100.0
ASSET_RE = re.compile(r'(?:href|src)="(/(?:static/[^"?#]+|patients/\d+/photo))"')
CSRF_RE = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')

PathSpec = str | Callable[[Session], str]
DataSpec = dict | Callable[[Session], dict] | None


@dataclass(frozen=True)
class Page:
    name: str
    username: str | None  # a demo user; None for a page seen before signing in
    path: PathSpec
    method: str = "GET"
    data: DataSpec = None
    csrf_from: str | None = None  # a page whose form gives the CSRF token for a POST
    htmx: bool = False  # sent as htmx sends it; the fragment's size is what is transferred


PAGES: list[Page] = []


def register(name: str, username: str | None, path: PathSpec, *, method: str = "GET", data: DataSpec = None,
             csrf_from: str | None = None, htmx: bool = False) -> None:
    """Add a page to measure (names are unique; registering a name again replaces it)."""
    PAGES[:] = [p for p in PAGES if p.name != name]
    PAGES.append(Page(name, username, path, method, data, csrf_from, htmx))


@dataclass
class Result:
    page: str
    user: str | None
    path: str
    status: int
    html_bytes: int
    assets_bytes: int
    total_bytes: int
    median_ms: float
    p95_ms: float
    max_ms: float
    median_cpu_ms: float  # this process's CPU (app + SQLite; not the PostgreSQL server's)
    ok: bool
    assets: list[str] = field(default_factory=list)


# ---- the pages of patients, physician and admin -----------------------------------------------


def _busiest_patient(session: Session) -> int:
    from dispensing.models import Dose

    return session.scalar(select(Dose.patient_id).group_by(Dose.patient_id)
                          .order_by(func.count().desc(), Dose.patient_id).limit(1))


def _induction_patient(session: Session) -> int:
    from dispensing.models import Order, Phase

    return session.scalar(select(Order.patient_id).where(Order.phase == Phase.INDUCTION)
                          .order_by(Order.valid_from.desc(), Order.patient_id).limit(1))


def _first_pump(session: Session) -> int:
    from dispensing.models import Device, DeviceKind

    return session.scalar(select(Device.id).where(Device.kind == DeviceKind.PUMP).order_by(Device.id).limit(1))


def _preview_data(session: Session) -> dict:
    from dispensing.clock import business_date, utcnow
    from dispensing.models import Clinic

    today = business_date(utcnow(), session.scalar(select(Clinic.timezone).limit(1))).strftime("%d/%m/%Y")
    return {"phase": "maintenance", "part1": "85", "part2": "", "part3": "", "valid_from": today,
            "valid_until": today, "reason": ""}


register("sign-in", None, "/login")
register("start page", "bacsi1", "/")
register("patients: search by name", "dieuduong1", "/patients?q=nguyen")
register("patients: register", "bacsi1", "/patients/new")
register("patient chart (long history)", "bacsi1", lambda s: f"/patients/{_busiest_patient(s)}")
register("patient chart (induction)", "bacsi1", lambda s: f"/patients/{_induction_patient(s)}")
register("patient: edit details", "dieuduong1", lambda s: f"/patients/{_busiest_patient(s)}/edit")
register("patient card", "dieuduong1", lambda s: f"/patients/{_busiest_patient(s)}/card")
register("order form", "bacsi1", lambda s: f"/patients/{_busiest_patient(s)}/orders/new")
register("order form: live decisions (htmx)", "bacsi1",
         lambda s: f"/patients/{_busiest_patient(s)}/orders/preview", method="POST", data=_preview_data,
         csrf_from="/tasks", htmx=True)
register("physician tasks", "bacsi1", "/tasks")
register("admin: users", "admin", "/admin/users")
register("admin: user", "admin", lambda s: "/admin/users/2")
register("admin: counters and devices", "admin", "/admin/counters")
register("admin: calibrate a pump", "duocsi1", lambda s: f"/admin/devices/{_first_pump(s)}/calibrate")
register("admin: clinic settings", "admin", "/admin/settings")


def _load_area_modules() -> None:
    # Run as ``python -m bench.pages`` this module is ``__main__``: area modules importing
    # ``bench.pages`` must register into this very list, not into a second copy of the module.
    sys.modules.setdefault("bench.pages", sys.modules[__name__])
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("pages_"):
            importlib.import_module(f"bench.{module.name}")


# ---- running ----------------------------------------------------------------------------------


def _prepare_database(url: str, patients: int, days: int):
    from dispensing import demo, schema
    from dispensing.db import Database

    database = Database.from_url(url)
    schema.upgrade(database.engine)
    with database.unit_of_work() as session:
        started = time.perf_counter()
        demo.seed(session, patients=patients, days=days)
        session.commit()
        print(f"  demo loaded in {time.perf_counter() - started:.1f} s", flush=True)
    # A database in use has planner statistics (PostgreSQL's autovacuum gathers them soon after a
    # bulk load); measure with them, not in the minute after the demo was inserted.
    with database.engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    return database


def _make_app(database, workdir: Path):
    import structlog

    from dispensing.settings import load_settings
    from web import create_app
    from web.i18n import compile_with_pending

    settings = load_settings(environ={}, overrides={"env": "testing", "secret_key": "bench-secret-key-" + "x" * 20})
    catalogues = compile_with_pending(workdir / "translations")
    app = create_app({"TESTING": True, "BABEL_TRANSLATION_DIRECTORIES": str(catalogues)}, settings=settings,
                     database=database)
    # Request logs are still rendered (that is server work) but written nowhere.
    devnull = open(os.devnull, "w")  # lives as long as the process
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=devnull))
    return app


def _client(app, username: str | None):
    from dispensing.demo import DEMO_PASSWORD

    client = app.test_client()
    if username is not None:
        token = CSRF_RE.search(client.get("/login").get_data(as_text=True)).group(1)
        response = client.post("/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": token})
        if response.status_code != 302:
            raise RuntimeError(f"cannot sign in as {username}: {response.status_code}")
    return client


def _measure(app, database, page: Page, repeat: int, clients: dict) -> Result:
    with database.unit_of_work() as session:
        path = page.path(session) if callable(page.path) else page.path
        data = page.data(session) if callable(page.data) else page.data
    key = page.username or ""
    if key not in clients:
        clients[key] = _client(app, page.username)
    client = clients[key]
    headers = {}
    if page.method != "GET":
        source = client.get(page.csrf_from or "/").get_data(as_text=True)
        match = CSRF_RE.search(source)
        headers["X-CSRFToken"] = match.group(1) if match else ""
    if page.htmx:
        headers["HX-Request"] = "true"

    def call():
        return client.open(path, method=page.method, data=data, headers=headers)

    for _ in range(2):
        call()
    timings, cpu, response = [], [], None
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = call()
        body = response.get_data()
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    html = body.decode("utf-8", "replace")
    assets, assets_bytes = [], 0
    for asset in dict.fromkeys(ASSET_RE.findall(html)):
        fetched = client.get(asset)
        assets.append(asset)
        assets_bytes += len(fetched.get_data())
    timings.sort()
    median = statistics.median(timings)
    total = len(body) + assets_bytes
    return Result(
        page=page.name, user=page.username, path=re.sub(r"/\d+", "/<id>", path), status=response.status_code,
        html_bytes=len(body), assets_bytes=assets_bytes, total_bytes=total, median_ms=round(median, 1),
        p95_ms=round(timings[max(0, int(len(timings) * 0.95) - 1)], 1), max_ms=round(timings[-1], 1),
        median_cpu_ms=round(statistics.median(cpu), 1),
        ok=response.status_code < 400 and total <= MAX_BYTES and median <= MAX_SERVER_MS, assets=assets,
    )


def run_backend(label: str, url: str, args, workdir: Path) -> list[Result]:
    print(f"== {label}: {args.patients} patients × {args.days} days", flush=True)
    database = _prepare_database(url, args.patients, args.days)
    try:
        app = _make_app(database, workdir)
        clients: dict = {}
        results = []
        for page in PAGES:
            result = _measure(app, database, page, args.repeat, clients)
            flag = "" if result.ok else "   <-- over the limit"
            print(f"  {result.page:<40} {result.status} {result.total_bytes / 1024:7.1f} KB "
                  f"{result.median_ms:7.1f} ms (p95 {result.p95_ms}, CPU {result.median_cpu_ms}){flag}", flush=True)
            results.append(result)
        return results
    finally:
        database.dispose()


def _postgres_schema(url: str) -> tuple[str, Callable[[], None]]:
    from sqlalchemy import create_engine

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}"'))

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()

    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{name}", drop


def markdown(report: dict) -> str:
    lines = [
        "# Page weight and server time",
        "",
        f"Demo clinic: {report['demo']['patients']} patients × {report['demo']['days']} days; "
        f"{report['repeat']} requests per page after 2 warm-up requests; limits "
        f"{MAX_BYTES // 1024} KB transferred (HTML + assets, cold cache, uncompressed) and "
        f"{MAX_SERVER_MS:.0f} ms median server time. Generated {report['generated_at']} on {report['machine']}.",
        "CPU ms is this process's CPU time per request (the app, and SQLite in-process; not the PostgreSQL "
        "server's): steadier than wall time on a shared machine.",
        "",
    ]
    backends = list(report["results"])
    header = "| page | user | " + " | ".join(f"{b} KB | {b} ms median (p95) | {b} CPU ms" for b in backends) + " |"
    lines += [header, "|" + "---|" * (2 + 3 * len(backends))]
    by_backend = {b: {r["page"]: r for r in report["results"][b]} for b in backends}
    for name in by_backend[backends[0]]:
        cells = []
        for backend in backends:
            r = by_backend[backend].get(name)
            if r is None:
                cells += ["–", "–", "–"]
                continue
            mark = "" if r["ok"] else " ⚠"
            cells += [f"{r['total_bytes'] / 1024:.1f}{mark}", f"{r['median_ms']:.1f} ({r['p95_ms']:.1f}){mark}",
                      f"{r['median_cpu_ms']:.1f}"]
        first = by_backend[backends[0]][name]
        lines.append(f"| {name} | {first['user'] or '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pg", default=os.environ.get("MMT_BENCH_PG_URL") or os.environ.get("MMT_TEST_DATABASE_URL"),
                        help="PostgreSQL URL (a private schema is created and dropped)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--only", help="measure only pages whose name contains this text")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    _load_area_modules()
    if args.only:
        PAGES[:] = [p for p in PAGES if args.only.lower() in p.name.lower()]
    report = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
              "demo": {"patients": args.patients, "days": args.days}, "repeat": args.repeat,
              "limits": {"max_bytes": MAX_BYTES, "max_server_ms": MAX_SERVER_MS}, "results": {}}
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        workdir = Path(tmp)
        if not args.no_sqlite:
            report["results"]["sqlite"] = [asdict(r) for r in run_backend(
                "SQLite", f"sqlite:///{workdir / 'bench.sqlite3'}", args, workdir)]
        if args.pg:
            url, drop = _postgres_schema(args.pg)
            try:
                report["results"]["postgresql"] = [asdict(r) for r in run_backend("PostgreSQL", url, args, workdir)]
            finally:
                drop()
    if not report["results"]:
        print("nothing measured (no SQLite, no PostgreSQL URL)", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "pages.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.output / "pages.md").write_text(markdown(report), encoding="utf-8")
    over = [r["page"] for rows in report["results"].values() for r in rows if not r["ok"]]
    print(f"results: {args.output / 'pages.json'}, {args.output / 'pages.md'}")
    if over:
        print("over the limits: " + ", ".join(sorted(set(over))), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
