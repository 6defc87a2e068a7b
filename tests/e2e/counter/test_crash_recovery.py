"""Crash safety with real processes: ``run.py`` (single-PC mode: web server and the counter's device
service in one process) against a database of the test's own and a pump simulator in a process of
its own (TCP). The server is SIGKILLed while the pump runs a dose; the pump's watchdog stops it;
the restarted server turns the dose UNKNOWN with the pump's counter before it serves anything; a
nurse and a witness resolve it over HTTP; the ledger holds exactly what left the pump."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from sqlalchemy import select

from dispensing import stock
from dispensing.clock import utcnow
from dispensing.db import Database
from dispensing.models import Dose, DoseState, StockMovement
from dispensing.settings import PROJECT_ROOT
from tests import counter_world

pytestmark = pytest.mark.committing

PYTHON = sys.executable


class Http:
    """A signed-in API client over real HTTP (cookie session, CSRF header on writes)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.token = ""

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}/api/v1{path}", data=data, method=method, headers={
            "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": self.token})
        try:
            with self.opener.open(request, timeout=20) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def login(self, username: str) -> Http:
        status, body = self.call("POST", "/session", {"username": username, "password": counter_world.PASSWORD})
        assert status == 201, body
        self.token = body["csrf_token"]
        return self


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "MMT_APP_LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([PYTHON, "run.py", "--port", str(port), "--threads", "4"], cwd=PROJECT_ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"server did not start: {log.read_text(errors='replace')[-3000:]}")


def pump_status(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def pump(tmp_path):
    status = tmp_path / "pump.json"
    process = subprocess.Popen([PYTHON, "-m", "tests.e2e.counter.pump_process", str(status)], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)
    url = process.stdout.readline().strip()
    assert url.startswith("socket://"), url
    yield url, status
    process.kill()
    process.wait(10)
    process.stdout.close()


def test_sigkill_while_the_pump_runs_then_unknown_resolved_and_the_ledger_balances(
        fresh_database_url, settings, pump, tmp_path):
    pump_url, pump_file = pump
    database = Database.from_url(fresh_database_url)
    session = database.session()
    world = counter_world.build(session, settings=settings, now=utcnow())
    device = world.devices[0]
    # 0.1 ml/s, so the kill lands mid-run; the pump stops itself 3 s after the host falls silent.
    device.port_url = pump_url
    device.settings = {"rate_ml_min": "6", "safe_mode_timeout_s": 3, "reply_timeout_s": 1}
    world.devices[1].active = False  # one counter in this test
    session.commit()
    patient = world.patient("60")
    world.assess(patient)
    opening = world.pump_balance()
    session.close()

    port, log = free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    server = start_server(fresh_database_url, port, log)
    try:
        nurse = Http(base).login(world.nurse.username)
        status, body = nurse.call("POST", "/counter/doses", {
            "patient_id": patient.id, "counter_id": world.counters[0].id, "part_no": 1,
            "idempotency_key": "crash-test-dose-1"})
        assert status == 201, body
        dose_id = body["doses"][0]["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = nurse.call("GET", f"/counter/doses/{dose_id}")[1]["state"]
            if state == "running" and Decimal(pump_status(pump_file)["delivered_ml"]) > Decimal("0.1"):
                break
            time.sleep(0.1)
        assert state == "running", log.read_text(errors="replace")[-3000:]

        server.send_signal(signal.SIGKILL)
        server.wait(10)
        # The host is gone; the pump's safe-mode watchdog stops it (alarm T) within 3 s.
        deadline = time.monotonic() + 15
        while pump_status(pump_file)["prompt"] != "S" and time.monotonic() < deadline:
            time.sleep(0.1)
        stopped = pump_status(pump_file)
        assert stopped["prompt"] == "S" and "T" in stopped["alarms"], stopped
        delivered = Decimal(stopped["delivered_ml"]).quantize(Decimal("0.01"))
        assert Decimal("0") < delivered < Decimal("6.00")

        server = start_server(fresh_database_url, port, log)
        nurse = Http(base).login(world.nurse.username)
        dose = nurse.call("GET", f"/counter/doses/{dose_id}")[1]
        assert dose["state"] == "unknown", dose
        assert Decimal(dose["device_reading_ml"]) == delivered  # the pump's counter, read at start-up
        assert dose["events"][-1]["detail"]["previous_state"] == "running"
        assert pump_status(pump_file)["runs"] == 1  # nothing retried

        status, resolved = nurse.call("POST", f"/counter/doses/{dose_id}/resolve", {
            "outcome": "partial", "delivered_ml": str(delivered), "password": counter_world.PASSWORD,
            "note": "pump counter after the crash",
            "witness": {"username": world.witness.username, "password": counter_world.PASSWORD}})
        assert status == 200, resolved
        assert (resolved["state"], Decimal(resolved["delivered_ml"])) == ("partial", delivered)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)

    with database.unit_of_work() as check:
        dose = check.get(Dose, dose_id)
        assert (dose.state, dose.witness_id) == (DoseState.PARTIAL, world.witness.id)
        line_total = sum(line.quantity for line in check.scalars(
            select(StockMovement).where(StockMovement.dose_id == dose_id)))
        assert line_total == delivered
        # The ledger holds exactly what left the pump.
        balance = stock.balance(check, location_id=world.pumps[0].id)
        assert balance == opening - delivered == Decimal("1000") - Decimal(pump_status(pump_file)["delivered_ml"]
                                                                           ).quantize(Decimal("0.01"))
    database.dispose()
    assert pump_status(pump_file)["errors"] == 0
