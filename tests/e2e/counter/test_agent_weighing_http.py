"""The counter agent's balance service over real HTTP: with its counter's token it takes the
pharmacist's weighing request (``GET /api/v1/agent/weighings/next``), reads the agent's own MT-SICS
simulator through the real driver and posts the weight; another counter's token neither sees nor
answers it; malformed reports and missing tokens are 4xx with a code, never 500."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from werkzeug.serving import make_server

from devices.agent import HttpWeighingJobs
from devices.service import JobRefused
from devices.weighing import BalanceService, simulated_balance
from dispensing import counter, weighing
from dispensing.models import Device, DeviceKind, WeighingRequest, WeighingState
from tests import stock_world


@pytest.fixture
def world(session):
    world = stock_world.build(session)
    world.balance = Device(clinic_id=world.clinic.id, counter_id=world.counters[0].id, code="BAL-A",
                           kind=DeviceKind.BALANCE, driver="mt-sics", port_url="sim://mt-sics",
                           serial_number="B-AGENT")
    session.add(world.balance)
    session.commit()
    return world


@pytest.fixture
def server(app):
    """The test app on a real socket, one request at a time (the test's database is one connection)."""
    httpd = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def _post(server: str, path: str, body: object, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{server}/api/v1/agent{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_the_agent_reads_its_counters_balance_over_http(session, world, server):
    token = counter.issue_agent_token(session, None, world.counters[0].id)
    other = HttpWeighingJobs(server, counter.issue_agent_token(session, None, world.counters[1].id))
    simulator = simulated_balance(world.balance.id, world.balance.serial_number)  # the agent's own pan
    simulator.load_g = Decimal("812.34")
    try:
        request = weighing.request_weighing(session, world.pharmacist, world.balance.id)
        assert other.next_weighing() is None  # not its counter's balance
        service = BalanceService(HttpWeighingJobs(server, token), poll_s=0, retry_s=0.01, name="agent")
        assert service.step()
        assert not service.step()
    finally:
        simulator.load_g = Decimal(0)
    session.expire_all()
    row = session.get(WeighingRequest, request.id)
    assert (row.state, row.grams, row.stable, row.device_serial) == (
        WeighingState.COMPLETED, Decimal("812.34"), True, "B-AGENT")
    # Another counter's token cannot answer a request either (here: a new one, taken by its owner).
    second = weighing.request_weighing(session, world.pharmacist, world.balance.id)
    weighing.next_weighing(session, world.counters[0].id)
    with pytest.raises(JobRefused) as caught:
        other.weighing_result(second.id, {"outcome": "completed", "grams": "1.00", "stable": True, "unit": "g"})
    assert caught.value.code == "WEIGHING_OTHER_COUNTER"
    session.expire_all()
    assert session.get(WeighingRequest, second.id).state is WeighingState.READING


def test_bad_reports_and_tokens_are_refused_with_a_code(session, world, server):
    token = counter.issue_agent_token(session, None, world.counters[0].id)
    request = weighing.request_weighing(session, world.pharmacist, world.balance.id)
    weighing.next_weighing(session, world.counters[0].id)
    path = f"/weighings/{request.id}/result"
    assert _post(server, path, {"outcome": "completed", "grams": "1.0", "stable": True, "unit": "g"},
                 None)[0] == 401
    assert _post(server, path, {"outcome": "completed", "grams": "1.0", "stable": True, "unit": "g"},
                 token + "x")[0] == 401
    for body in ({"outcome": "completed", "grams": "abc", "stable": True, "unit": "g"},
                 {"outcome": "completed", "grams": "1e400", "stable": True, "unit": "g"},
                 {"outcome": "failed", "reason": "no reply"}, {"outcome": "maybe"}, ["not", "an", "object"],
                 {"outcome": "completed", "grams": 5, "stable": True}):
        status, payload = _post(server, path, body, token)
        assert 400 <= status < 500, (body, status, payload)
    assert _post(server, "/weighings/999999/result", {"outcome": "failed", "reason": "NO_REPLY"}, token)[0] == 404
    status, payload = _post(server, path, {"outcome": "failed", "reason": "NO_REPLY", "detail": "NoReply"}, token)
    assert (status, payload["state"]) == (200, "failed")
    session.expire_all()
    row = session.get(WeighingRequest, request.id)
    assert (row.state, row.failure_reason) == (WeighingState.FAILED, "NO_REPLY")
