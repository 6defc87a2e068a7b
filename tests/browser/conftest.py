"""Browser tests: the real app served on a free 127.0.0.1 port, driven by Debian's Chromium
through Playwright (sync API). Reuse these fixtures for any role's test:

``live_server``  the app (session-scoped) on a freshly migrated database with a small demo clinic
                 (users from the README, password ``DEMO_PASSWORD``); ``.url``, ``.database``,
                 ``.session()`` for checking stored state, ``.today`` (the clinic's business date).
``page``         a new Chromium page (own cookies) per test, Vietnamese browser locale; a failing
                 test leaves ``FAILED.png`` and ``FAILED.txt`` next to its screenshots.
``login``        ``login(page, "bacsi1")`` signs in through the login form.
``shot``         ``shot(page, "order-signed")`` saves a full-page screenshot under
                 ``tests/artifacts/browser/<test name>/NN-<name>.png``.

Chromium comes from Debian (``make test`` installs it when it can; the bundled-browser download is
not used). Without it the tests skip with a message, except in CI (``CI=true``) or under
``MMT_REQUIRE_BROWSER=1`` (``.ci/run``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from dispensing.clock import business_date, utcnow
from dispensing.db import Database

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
CHROMIUM = Path(os.environ.get("MMT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_PATIENTS = 12
DEMO_DAYS = 14


def browser_required() -> bool:
    """True in CI and under ``.ci/run``: a browser test that cannot run fails instead of skipping."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("MMT_REQUIRE_BROWSER") == "1"


def _unavailable(reason: str) -> None:
    message = f"{reason}; install it with `sudo apt-get install chromium fonts-dejavu-core` (or run `make test` as root)"
    if browser_required():
        pytest.fail(f"browser tests are required here (CI): {message}", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"mmt_report_{report.when}", report)
    return report


@dataclass
class LiveServer:
    url: str
    database: Database
    today: date

    def session(self):
        """A new Session on the served database (close it when done)."""
        return self.database.session()


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed")
    return CHROMIUM


@pytest.fixture(scope="session")
def live_server(test_databases, tmp_path_factory, chromium_executable) -> Iterator[LiveServer]:
    from werkzeug.serving import make_server

    from dispensing import demo
    from dispensing.models import Clinic
    from dispensing.settings import load_settings
    from web import create_app
    from web.i18n import compile_with_pending

    database = Database.from_url(test_databases.new_url())
    with database.unit_of_work() as session:
        demo.seed(session, days=DEMO_DAYS, patients=DEMO_PATIENTS)
        session.commit()
        timezone = session.query(Clinic.timezone).scalar()
    settings = load_settings(environ={}, overrides={"env": "testing",
                                                    "secret_key": "browser-tests-secret-key-not-for-production"})
    # Vietnamese strings still waiting in web/translations/pending are compiled in, so screenshots
    # show the Vietnamese the merged catalogue will have.
    translations = compile_with_pending(tmp_path_factory.mktemp("translations") / "catalogues")
    app = create_app({"BABEL_TRANSLATION_DIRECTORIES": str(translations)}, settings=settings, database=database)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", database, business_date(utcnow(), timezone))
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        database.dispose()


@pytest.fixture(scope="session")
def chromium_context(chromium_executable, live_server, tmp_path_factory):
    """One headless Chromium with a fresh user-data directory for the whole run; relative URLs
    go to the live server."""
    from playwright.sync_api import expect, sync_playwright

    # Old clinic PCs and busy CI machines are slow: wait up to 15 s for what a page should show.
    expect.set_options(timeout=15_000)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(chromium_executable), headless=True, args=CHROMIUM_ARGS,
            locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", viewport={"width": 1280, "height": 900},
            base_url=live_server.url,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


def _artifact_dir(request) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return ARTIFACTS / name


@pytest.fixture
def page(request, chromium_context, live_server):
    """A fresh page with no cookies, based at the live server (``page.goto("/patients")`` works)."""
    chromium_context.clear_cookies()
    page = chromium_context.new_page()
    page.set_default_navigation_timeout(15_000)
    folder = _artifact_dir(request)
    shutil.rmtree(folder, ignore_errors=True)
    yield page
    report = getattr(request.node, "mmt_report_call", None)
    if report is not None and report.failed:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "FAILED.txt").write_text(report.longreprtext, encoding="utf-8")
        page.screenshot(path=str(folder / "FAILED.png"), full_page=True)
    page.close()


@pytest.fixture
def shot(request):
    """``shot(page, "name")``: a numbered full-page screenshot in this test's artifact folder."""
    counter = {"n": 0}
    folder = _artifact_dir(request)

    def take(page, name: str) -> Path:
        counter["n"] += 1
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{counter['n']:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def login():
    """``login(page, username)``: sign in through the login form and wait for the start page."""
    from dispensing.demo import DEMO_PASSWORD

    def sign_in(page, username: str, password: str = DEMO_PASSWORD) -> None:
        page.goto("/login")
        page.get_by_label("Tên đăng nhập").fill(username)
        page.get_by_label("Mật khẩu").fill(password)
        page.get_by_role("button", name="Đăng nhập").click()
        page.wait_for_url(re.compile(r".*/$"))

    return sign_in
