"""Weighing requests: the pharmacist's "read balance" becomes a request that the device service of
the balance's counter takes and answers (in-process here, through ``web.counter_service``, the
adapter single-PC mode uses), reading the MT-SICS simulator on a pty through the real driver.
A stable weight is recorded with the balance's identity; an unstable or overloaded balance is a
reason; an unanswered request expires and is never handed out again; another counter can neither
take nor answer it; final rows are frozen by the database."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from devices.weighing import BalanceService, simulated_balance
from dispensing import weighing
from dispensing.clock import utcnow
from dispensing.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from dispensing.models import Device, DeviceKind, WeighingRequest, WeighingState
from tests import stock_world
from web.counter_service import InProcessWeighingJobs

FAST = {"stable_timeout_s": "0.4", "retry_interval_s": "0.05", "reply_timeout_s": "0.5"}


@pytest.fixture
def world(session):
    world = stock_world.build(session)
    world.balance = Device(clinic_id=world.clinic.id, counter_id=world.counters[0].id, code="BAL-1",
                           kind=DeviceKind.BALANCE, driver="mt-sics", port_url="sim://mt-sics",
                           serial_number="B-0001", settings=dict(FAST))
    world.loose = Device(clinic_id=world.clinic.id, counter_id=None, code="BAL-LOOSE", kind=DeviceKind.BALANCE,
                         driver="mt-sics", port_url="sim://mt-sics")
    session.add_all([world.balance, world.loose])
    session.commit()
    return world


@pytest.fixture
def pan(world):
    simulator = simulated_balance(world.balance.id, world.balance.serial_number)
    simulator.load_g, simulator.unstable = Decimal(0), False
    yield simulator
    simulator.load_g, simulator.unstable = Decimal(0), False


def _service(database, counter) -> BalanceService:
    return BalanceService(InProcessWeighingJobs(database, counter.id), poll_s=0, retry_s=0.01, name=counter.code)


def _row(session, request_id) -> WeighingRequest:
    session.expire_all()
    return session.get(WeighingRequest, request_id)


def test_the_counters_device_service_reads_one_stable_weight(session, database, world, pan):
    pan.load_g = Decimal("1039.48")
    request = weighing.request_weighing(session, world.pharmacist, world.balance.id, location_id=world.safe.id,
                                        product_id=world.methadone.id)
    assert request.state is WeighingState.REQUESTED and request.counter_id == world.counters[0].id
    service = _service(database, world.counters[0])
    try:
        assert service.step()
        assert not service.step()  # answered once; never handed out again
    finally:
        service.jobs.close()
    row = _row(session, request.id)
    assert (row.state, row.grams, row.stable, row.unit) == (WeighingState.COMPLETED, Decimal("1039.48"), True, "g")
    assert row.device_serial == "B-0001" and row.device_model.startswith("XS6002S")
    assert row.taken_at is not None and row.finished_at is not None and row.failure_reason is None
    assert pan.commands.count("S") >= 1  # read through the driver, byte for byte
    assert weighing.get_weighing(session, world.pharmacist, request.id).state is WeighingState.COMPLETED


@pytest.mark.parametrize(("knob", "reason"), [("unstable", "UNSTABLE_READING"), ("overload", "BALANCE_OVERLOAD")])
def test_no_stable_reading_is_a_failure_with_the_reason(session, database, world, pan, knob, reason):
    if knob == "unstable":
        pan.load_g, pan.unstable = Decimal("500"), True
    else:
        pan.load_g = Decimal("9000")  # over the 6100 g capacity
    request = weighing.request_weighing(session, world.pharmacist, world.balance.id)
    service = _service(database, world.counters[0])
    try:
        assert service.step()
    finally:
        service.jobs.close()
    row = _row(session, request.id)
    assert (row.state, row.failure_reason, row.grams) == (WeighingState.FAILED, reason, None)
    assert row.device_serial == "B-0001"  # the balance answered: it is known which one


def test_an_unanswered_request_expires_and_is_never_handed_out(session, database, world, pan):
    start = utcnow() - timedelta(seconds=30)
    stale = weighing.request_weighing(session, world.pharmacist, world.balance.id, now=start)
    assert weighing.next_weighing(session, world.counters[0].id) is None
    row = _row(session, stale.id)
    assert (row.state, row.failure_reason) == (WeighingState.EXPIRED, "WEIGHING_EXPIRED")
    # A taken request whose result comes too late stays EXPIRED; nothing is recorded as a weight.
    late = weighing.request_weighing(session, world.pharmacist, world.balance.id)
    job = weighing.next_weighing(session, world.counters[0].id)
    assert job.request_id == late.id and 0 < job.timeout_s <= 17
    report = weighing.WeighingOutcome.from_dict({"outcome": "completed", "grams": "12.5", "stable": True,
                                                 "unit": "g"})
    after = late.requested_at + weighing.WEIGHING_TTL + timedelta(seconds=1)
    weighing.record_weighing_result(session, world.counters[0].id, late.id, report, now=after)
    row = _row(session, late.id)
    assert (row.state, row.grams) == (WeighingState.EXPIRED, None)
    with pytest.raises(Conflict) as caught:
        weighing.record_weighing_result(session, world.counters[0].id, late.id, report)
    assert caught.value.params["code"] == "WEIGHING_ALREADY_FINAL"
    # The page's poll expires an open request too.
    polled = weighing.request_weighing(session, world.pharmacist, world.balance.id, now=start)
    assert weighing.get_weighing(session, world.pharmacist, polled.id).state is WeighingState.EXPIRED


def test_another_counter_can_neither_take_nor_answer_the_request(session, database, world, pan):
    pan.load_g = Decimal("100")
    request = weighing.request_weighing(session, world.pharmacist, world.balance.id)
    other = _service(database, world.counters[1])
    try:
        assert not other.step()
    finally:
        other.jobs.close()
    assert _row(session, request.id).state is WeighingState.REQUESTED
    job = weighing.next_weighing(session, world.counters[0].id)
    report = weighing.WeighingOutcome.from_dict({"outcome": "completed", "grams": "1.00", "stable": True,
                                                 "unit": "g"})
    with pytest.raises(PermissionDenied) as caught:
        weighing.record_weighing_result(session, world.counters[1].id, job.request_id, report)
    assert caught.value.params["code"] == "WEIGHING_OTHER_COUNTER"
    assert _row(session, request.id).state is WeighingState.READING
    # The same report twice (its answer lost) is accepted once and changes nothing the second time.
    first = weighing.record_weighing_result(session, world.counters[0].id, job.request_id, report)
    again = weighing.record_weighing_result(session, world.counters[0].id, job.request_id, report)
    assert first.state is again.state is WeighingState.COMPLETED


def test_a_weight_that_is_not_stable_grams_is_recorded_as_a_failure(session, world):
    for data, reason in (({"stable": False, "unit": "g"}, "UNSTABLE_READING"),
                         ({"stable": True, "unit": "kg"}, "WRONG_UNIT")):
        request = weighing.request_weighing(session, world.pharmacist, world.balance.id)
        weighing.next_weighing(session, world.counters[0].id)
        outcome = weighing.WeighingOutcome.from_dict({"outcome": "completed", "grams": "10", **data})
        weighing.record_weighing_result(session, world.counters[0].id, request.id, outcome)
        row = _row(session, request.id)
        assert (row.state, row.failure_reason, row.grams) == (WeighingState.FAILED, reason, None)


@pytest.mark.parametrize("data", [
    {}, {"outcome": "done"}, {"outcome": "completed", "grams": "abc", "stable": True},
    {"outcome": "completed", "grams": "NaN", "stable": True}, {"outcome": "completed", "grams": "1.0000001",
                                                               "stable": True},
    {"outcome": "completed", "grams": "5", "stable": "yes"}, {"outcome": "failed", "reason": "lower case"},
    {"outcome": "failed"}, {"outcome": "failed", "reason": "X" * 41},
])
def test_a_malformed_report_is_refused(data):
    with pytest.raises(ValidationFailed) as caught:
        weighing.WeighingOutcome.from_dict(data)
    assert caught.value.params["code"] == "WEIGHING_RESULT_INVALID"


def test_who_may_ask_and_which_balances(session, world):
    with pytest.raises(PermissionDenied):
        weighing.request_weighing(session, world.nurse, world.balance.id)
    with pytest.raises(ValidationFailed) as caught:
        weighing.request_weighing(session, world.pharmacist, world.loose.id)
    assert caught.value.params["code"] == "BALANCE_NOT_AT_COUNTER"
    for device_id in (world.devices[0].id, 999_999):  # a pump is no balance
        with pytest.raises(NotFound) as caught:
            weighing.request_weighing(session, world.pharmacist, device_id)
        assert caught.value.params["code"] == "BALANCE_NOT_FOUND"
    world.counters[0].active = False
    session.commit()
    with pytest.raises(ValidationFailed) as caught:
        weighing.request_weighing(session, world.pharmacist, world.balance.id)
    assert caught.value.params["code"] == "BALANCE_NOT_AT_COUNTER"
    with pytest.raises(NotFound):
        weighing.get_weighing(session, world.pharmacist, 999_999)


def _refused(session, sql, **params) -> bool:
    try:
        with session.begin_nested():
            session.execute(text(sql), params)
    except (DBAPIError, IntegrityError) as exc:
        return "append-only" in str(exc.orig) or "refused" in str(exc.orig)
    return False


def test_requests_are_never_deleted_and_frozen_once_final(session, world):
    request = weighing.request_weighing(session, world.pharmacist, world.balance.id)
    assert _refused(session, "DELETE FROM weighing_request WHERE id = :id", id=request.id)
    weighing.next_weighing(session, world.counters[0].id)
    outcome = weighing.WeighingOutcome.from_dict({"outcome": "completed", "grams": "10.5", "stable": True,
                                                  "unit": "g"})
    weighing.record_weighing_result(session, world.counters[0].id, request.id, outcome)
    assert _refused(session, "UPDATE weighing_request SET grams_ug = 1 WHERE id = :id", id=request.id)
    assert _refused(session, "UPDATE weighing_request SET state = 'requested' WHERE id = :id", id=request.id)
    assert _row(session, request.id).grams == Decimal("10.5")
