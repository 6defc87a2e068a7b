"""``run.py agent``: the counter device service on a counter PC, talking to the central server over
HTTP with its counter's token (``Authorization: Bearer …``). Standard library HTTP only.

The agent polls for work (it never holds a server thread waiting), reports PROGRAMMED before RUN,
and keeps retrying a result until the server has it. A 4xx answer is final (``JobRefused``); any
other failure (server down, 5xx, timeout) is retried.

Next to the pump, the agent runs the counter's balance service (``devices.weighing``) in a thread:
it polls ``weighings/next`` and reads the balance for the pharmacist's reconciliation worksheet.
A ``sim://mt-sics`` balance is then a simulator inside the agent's process: the server's
simulated-pan control is hidden for a counter that has an agent.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from devices.clock import SYSTEM_CLOCK, Clock
from devices.service import CounterDeviceService, JobRefused
from devices.weighing import BalanceService

log = structlog.get_logger(__name__)

API = "/api/v1/agent"


class ServerUnavailable(Exception):
    """The server did not answer, or answered 5xx: try again later."""


class HttpDoseJobs:
    """``devices.service.DoseJobs`` over the server's agent API."""

    def __init__(self, server: str, token: str, *, timeout_s: float = 15.0) -> None:
        self.server = server.rstrip("/")
        self._token = token.strip()
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"{self.server}{API}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
                return response.status, json.loads(raw, parse_float=Decimal) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = {}
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise JobRefused(
                    str(payload.get("code") or exc.code), payload.get("message")
                ) from None
            raise ServerUnavailable(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ServerUnavailable(str(exc)) from None

    def setup(self) -> dict:
        return self._call("GET", "/setup")[1]

    def recovered(self, pump_counter_ml: Decimal | None, note: str | None) -> list[int]:
        body = {
            "pump_counter_ml": None if pump_counter_ml is None else str(pump_counter_ml),
            "note": note,
        }
        return list(self._call("POST", "/recovery", body)[1]["unknown"])

    def next_job(self) -> dict | None:
        status, body = self._call("GET", "/jobs/next")
        return body if status == 200 else None

    def progress(self, dose_id: int, state: str) -> None:
        self._call("POST", f"/doses/{dose_id}/progress", {"state": state})

    def result(self, dose_id: int, result: dict) -> None:
        self._call("POST", f"/doses/{dose_id}/result", result)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


class HttpWeighingJobs(HttpDoseJobs):
    """``devices.weighing.WeighingJobs`` over the server's agent API."""

    def next_weighing(self) -> dict | None:
        status, body = self._call("GET", "/weighings/next")
        return body if status == 200 else None

    def weighing_result(self, request_id: int, result: dict) -> None:
        self._call("POST", f"/weighings/{request_id}/result", result)


def read_token(path: Path) -> str:
    """Return the token stored in ``path`` (first line). Raises OSError, ValueError."""
    token = (
        path.read_text(encoding="utf-8").strip().splitlines()[0].strip() if path.exists() else ""
    )
    if not token:
        raise ValueError(f"no token in {path}")
    return token


def run_agent(
    server: str, counter_code: str, token: str, *, poll_s: float = 0.5, clock: Clock = SYSTEM_CLOCK
) -> int:
    """Run the counter's device service until SIGINT/SIGTERM; return an exit code."""
    jobs = HttpDoseJobs(server, token)
    try:
        setup = jobs.setup()
    except JobRefused as exc:
        print(f"the server refused this agent ({exc.code}): check the token file", file=sys.stderr)
        return 2
    except ServerUnavailable as exc:
        print(f"cannot reach {server}: {exc}", file=sys.stderr)
        return 3
    if setup["counter_code"] != counter_code:
        print(
            f"this token belongs to counter {setup['counter_code']}, not {counter_code}",
            file=sys.stderr,
        )
        return 2
    service = CounterDeviceService(jobs, clock=clock, poll_s=poll_s, name=counter_code)
    balance_service = BalanceService(HttpWeighingJobs(server, token), clock=clock, poll_s=poll_s,
                                     name=counter_code)

    def _stop(_signum, _frame) -> None:
        service._stopping.set()
        balance_service._stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"agent for counter {counter_code}: pump {setup['device_code']} ({setup['driver']}), server {server}"
    )
    balance_service.start()
    service.run()
    service.stop()
    balance_service.stop()
    return 0
