"""The counter agent over real HTTP: ``run.py agent-token`` issues the token, the agent's client
(``devices.agent.HttpDoseJobs``, standard-library HTTP) drives the pty pump simulator through the
server's agent API, and ``run_agent`` refuses a wrong token, a wrong counter or no server."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from werkzeug.serving import make_server

import run
from devices.agent import HttpDoseJobs, run_agent
from devices.clock import VirtualClock
from devices.ne1000 import Ne1000Pump
from devices.registry import CounterConfig, CounterDevices
from devices.service import CounterDeviceService, JobRefused
from devices.simulators import Ne1000Simulator
from dispensing import counter
from dispensing.clock import utcnow
from dispensing.db import Database
from dispensing.models import Counter, DoseState
from tests import counter_world
from tests.integration.counter.conftest import PUMP_SETTINGS


@pytest.fixture
def world(session, settings):
    return counter_world.build(session, settings=settings, now=utcnow())


@pytest.fixture
def server(app):
    """The test app on a real socket, one request at a time (the test's database is one
    connection)."""
    httpd = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_an_agent_delivers_over_http_with_its_token(world, server):
    token = counter.issue_agent_token(world.session, None, world.counters[0].id)
    assert token.startswith(f"mmt-agent.{world.counters[0].id}.")
    clock = VirtualClock(start=utcnow())
    with Ne1000Simulator(clock=clock) as sim:
        def open_pump(setup, service_clock):
            pump = Ne1000Pump.connect(sim.port, PUMP_SETTINGS, device_id=f"{setup['counter_code']}/pump",
                                      clock=service_clock)
            return CounterDevices(counter=CounterConfig(counter_id=setup["counter_code"], name="agent"), pump=pump)

        service = CounterDeviceService(HttpDoseJobs(server, token), clock=clock, open_pump=open_pump, poll_s=0,
                                       retry_s=0.01)
        service.start_up()
        patient = world.patient("45")
        world.assess(patient)
        dose = world.authorize(patient).dose

        assert service.step()
        service.stop()

    world.session.expire_all()
    dose = world.session.get(type(dose), dose.id)
    assert (dose.state, dose.delivered_ml) == (DoseState.COMPLETED, Decimal("4.500"))
    assert world.pump_balance() == Decimal("995.500")
    # The token of another counter cannot report on this counter's dose.
    other = HttpDoseJobs(server, counter.issue_agent_token(world.session, None, world.counters[1].id))
    with pytest.raises(JobRefused) as caught:
        other.progress(dose.id, "programmed")
    assert caught.value.code == "DOSE_OTHER_COUNTER"


def test_run_agent_refuses_a_wrong_token_a_wrong_counter_and_no_server(world, server, capsys):
    token = counter.issue_agent_token(world.session, None, world.counters[0].id)
    assert run_agent(server, world.counters[0].code, token + "x") == 2
    assert "refused" in capsys.readouterr().err
    assert run_agent(server, world.counters[1].code, token) == 2
    assert "belongs to counter" in capsys.readouterr().err
    assert run_agent("http://127.0.0.1:9", world.counters[0].code, token) == 3


@pytest.mark.committing
def test_agent_token_command_writes_a_private_token_file(fresh_database_url, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    database = Database.from_url(fresh_database_url)
    session = database.session()
    world = counter_world.build(session, settings=settings)
    code = world.counters[0].code
    session.close()
    out = tmp_path / "q1.token"

    assert run.main(["agent-token", "--counter", code, "--out", str(out)]) == 0

    assert oct(out.stat().st_mode & 0o777) == "0o600"
    token = out.read_text().strip()
    with database.unit_of_work() as check:
        counter_row = check.get(Counter, world.counters[0].id)
        assert counter.agent_counter(check, f"Bearer {token}").id == counter_row.id
    assert run.main(["agent-token", "--counter", "NOPE"]) == 1
    database.dispose()
