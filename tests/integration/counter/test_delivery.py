"""Delivery through the counter device service: the real NE-1000 driver against the pty simulator,
the in-process jobs adapter and the dispensing services. Every fault knob ends in the right state,
with the measured ml in the dose and — for what was delivered — in the ledger."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from devices.simulators import ReplyFault
from dispensing import counter, stock
from dispensing.counter import Resolution
from dispensing.errors import Conflict, ReauthenticationFailed, ValidationFailed
from dispensing.models import (
    AuditEvent,
    ClinicalTask,
    Dose,
    DoseEvent,
    DoseState,
    MovementKind,
    Phase,
    StockMovement,
)
from tests import counter_world
from tests.integration.counter.conftest import make_harness

ML = Decimal("0.001")


def reload(world, dose_id) -> Dose:
    world.session.expire_all()
    return world.session.get(Dose, dose_id)


def ledger(world, dose_id) -> Decimal:
    total = world.session.scalar(select(func.sum(StockMovement.quantity)).where(StockMovement.dose_id == dose_id))
    return total if total is not None else Decimal("0.000")


def states(world, dose_id) -> list[str]:
    return [e.state.value for e in world.session.scalars(
        select(DoseEvent).where(DoseEvent.dose_id == dose_id).order_by(DoseEvent.id))]


def authorised(world, mg="60"):
    patient = world.patient(mg)
    world.assess(patient)
    return world.authorize(patient).dose


def test_a_dose_goes_requested_programmed_running_completed_and_is_booked(world, harness):
    dose = authorised(world)
    before = world.pump_balance()

    assert harness.deliver()

    dose = reload(world, dose.id)
    assert (dose.state, dose.delivered_ml, dose.device_reading_ml) == (DoseState.COMPLETED, Decimal("6.000"),
                                                                       Decimal("6.000"))
    assert states(world, dose.id) == ["requested", "programmed", "running", "completed"]
    line = world.session.scalar(select(StockMovement).where(StockMovement.dose_id == dose.id))
    assert (line.kind, line.quantity, line.from_location_id) == (MovementKind.DOSE, Decimal("6.000"),
                                                                 world.pumps[0].id)
    assert line.container_id == dose.container_id and line.business_date == dose.business_date
    assert world.pump_balance() == before - Decimal("6.000")
    assert harness.sim.count("RUN") == 1
    assert dose.transcript and {"dir", "hex"} <= set(dose.transcript[0])
    actions = set(world.session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == str(dose.id),
                                                                        AuditEvent.entity_type == "Dose")))
    assert {"dose.requested", "dose.programmed", "dose.running", "dose.completed"} <= actions
    assert not harness.deliver()  # nothing else to do


@pytest.mark.parametrize(
    ("fault", "state", "reading", "booked"),
    [
        # Motor stall at 1.20 ml: a partial delivery, measured by the pump's counter.
        (lambda sim: sim.stall_at(Decimal("1.20")), DoseState.PARTIAL, "1.20", "1.20"),
        # The pump stops short without an alarm.
        (lambda sim: sim.short_delivery_at(Decimal("1.60")), DoseState.PARTIAL, "1.60", "1.60"),
        # Power lost at 1.30 ml: the counter restarted; the last value seen (1.25) is a lower bound
        # of what was delivered, so a human decides; nothing is booked until then.
        (lambda sim: sim.power_reset_at(Decimal("1.30")), DoseState.UNKNOWN, "1.25", "0"),
        # The pump stops answering at 1.00 ml (it keeps pumping): unknown, last reading kept.
        (lambda sim: sim.mute_at(Decimal("1.00")), DoseState.UNKNOWN, "0.75", "0"),
        # The reply to RUN is lost: the counter, never a second RUN, decides.
        (lambda sim: sim.inject(ReplyFault.NO_REPLY, on="RUN"), DoseState.COMPLETED, "6.00", "6.00"),
        # One corrupt reply is retried.
        (lambda sim: sim.inject(ReplyFault.BAD_CRC, on="DIS", times=1), DoseState.COMPLETED, "6.00", "6.00"),
        # Corrupt replies before RUN: nothing is sent, nothing given.
        (lambda sim: sim.inject(ReplyFault.BAD_CRC, on="VOL", times=None), DoseState.FAILED, "0", "0"),
    ],
    ids=["stall", "short-delivery", "power-reset", "no-reply-mid-run", "no-reply-to-run", "bad-crc-once",
         "bad-crc-before-run"],
)
def test_each_pump_fault_ends_in_the_right_state_with_the_measured_ml(world, harness, fault, state, reading, booked):
    dose = authorised(world)
    fault(harness.sim)

    harness.deliver()

    dose = reload(world, dose.id)
    assert dose.state is state
    assert dose.device_reading_ml == Decimal(reading)
    assert ledger(world, dose.id) == Decimal(booked)
    if state is not DoseState.UNKNOWN:
        assert dose.delivered_ml == Decimal(booked)
    assert harness.sim.count("RUN") <= 1


def test_bad_crc_on_every_reply_after_run_is_unknown_and_resolved_by_nurse_and_witness(world, harness):
    dose = authorised(world)
    original = harness.jobs.progress

    def corrupt_after_programmed(dose_id, state):
        original(dose_id, state)
        if state == "programmed":
            harness.sim.inject(ReplyFault.BAD_CRC, times=None)

    harness.jobs.progress = corrupt_after_programmed
    harness.deliver()

    dose = reload(world, dose.id)
    assert (dose.state, dose.failure_reason) == (DoseState.UNKNOWN, "CRC_ERROR")
    assert ledger(world, dose.id) == 0
    # The pump did deliver it all; the nurse checks the cup and the reservoir with a witness.
    resolved = counter.resolve_unknown(world.session, world.nurse, world.rulebook.for_clinic, dose_id=dose.id,
                                       outcome=Resolution.GIVEN, password=counter_world.PASSWORD,
                                       witness=world.witness_signature(), now=world.now)
    assert (resolved.state, resolved.delivered_ml, resolved.witness_id) == (
        DoseState.COMPLETED, Decimal("6.000"), world.witness.id)
    assert ledger(world, dose.id) == Decimal("6.000")
    assert states(world, dose.id)[-2:] == ["unknown", "completed"]


def test_an_unknown_dose_resolved_as_partial_books_what_was_given(world, harness):
    dose = authorised(world)
    harness.sim.power_reset_at(Decimal("1.30"))
    harness.deliver()
    before = world.pump_balance()

    counter.resolve_unknown(world.session, world.nurse, world.rulebook.for_clinic, dose_id=dose.id,
                            outcome=Resolution.PARTIAL, delivered_ml=Decimal("1.30"),
                            password=counter_world.PASSWORD, witness=world.witness_signature(),
                            note="measured in the cup", now=world.now)

    dose = reload(world, dose.id)
    assert (dose.state, dose.delivered_ml) == (DoseState.PARTIAL, Decimal("1.300"))
    assert ledger(world, dose.id) == Decimal("1.300") and world.pump_balance() == before - Decimal("1.300")
    witnessed = world.session.scalar(select(AuditEvent).where(AuditEvent.action == "dose.resolution.witnessed"))
    assert witnessed.actor_id == world.witness.id


def test_resolution_needs_the_nurses_password_and_another_persons(world, harness):
    dose = authorised(world)
    harness.sim.power_reset_at(Decimal("1.30"))
    harness.deliver()

    def resolve(**values):
        arguments = {"dose_id": dose.id, "outcome": Resolution.NOT_GIVEN, "password": counter_world.PASSWORD,
                     "witness": world.witness_signature(), "now": world.now, **values}
        return counter.resolve_unknown(world.session, world.nurse, world.rulebook.for_clinic, **arguments)

    with pytest.raises(ReauthenticationFailed):
        resolve(password="wrong-password")
    with pytest.raises(ValidationFailed) as caught:
        resolve(witness=world.witness_signature(world.nurse))
    assert caught.value.params["code"] == "COSIGNER_IS_SIGNER"
    with pytest.raises(ValidationFailed):
        resolve(witness=None)
    with pytest.raises(ValidationFailed):
        resolve(outcome=Resolution.PARTIAL, delivered_ml=Decimal("6.00"))
    resolved = resolve()
    assert (resolved.state, resolved.delivered_ml) == (DoseState.FAILED, Decimal("0.000"))
    assert ledger(world, dose.id) == 0
    with pytest.raises(Conflict):
        resolve()


def test_a_partial_dose_is_completed_by_a_linked_line(world, harness):
    dose = authorised(world)
    harness.sim.stall_at(Decimal("1.20"))
    harness.deliver()
    assert reload(world, dose.id).state is DoseState.PARTIAL

    rest = counter.complete_partial(world.session, world.nurse, world.rule_set, dose_id=dose.id,
                                    counter_id=world.counters[0].id, idempotency_key="complete-0001",
                                    now=world.now).dose
    assert (rest.kind.value, rest.linked_dose_id, rest.planned_mg, rest.planned_ml) == (
        "completion", dose.id, Decimal("48.000"), Decimal("4.800"))
    harness.deliver()

    assert reload(world, rest.id).state is DoseState.COMPLETED
    assert ledger(world, dose.id) + ledger(world, rest.id) == Decimal("6.000")
    assert counter.remainder_mg(world.session, reload(world, dose.id)) == 0
    with pytest.raises(Conflict) as caught:
        counter.complete_partial(world.session, world.nurse, world.rule_set, dose_id=dose.id,
                                 counter_id=world.counters[0].id, idempotency_key="complete-0002", now=world.now)
    assert caught.value.params["code"] == "DOSE_NOT_PARTIAL" or caught.value.params["code"] == "NOTHING_LEFT_TO_GIVE"


def test_a_cancelled_dose_is_never_run(world, harness):
    dose = authorised(world)
    counter.cancel_request(world.session, world.nurse, dose.id, now=world.now)

    assert not harness.deliver()
    assert harness.sim.count("RUN") == 0


def test_a_refusal_of_programmed_means_run_is_never_sent(world, harness):
    dose = authorised(world)
    original = harness.jobs.progress

    def cancel_then_report(dose_id, state):
        if state == "programmed":
            # A nurse cancels at the very moment the pump is being programmed.
            counter.cancel_request(world.session, world.nurse, dose_id, now=world.now)
        original(dose_id, state)

    harness.jobs.progress = cancel_then_report
    harness.deliver()

    assert harness.sim.count("RUN") == 0 and harness.sim.delivered_ml == 0
    dose = reload(world, dose.id)
    assert (dose.state, dose.failure_reason) == (DoseState.FAILED, "CANCELLED")


def test_an_old_request_is_not_handed_to_the_pump(world, harness):
    dose = authorised(world)
    harness.clock.advance(4 * 60)  # four minutes later nobody may be at the counter

    assert not harness.deliver()

    dose = reload(world, dose.id)
    assert (dose.state, dose.failure_reason) == (DoseState.FAILED, "REQUEST_EXPIRED")
    assert harness.sim.count("RUN") == 0


def test_requests_waiting_behind_a_moving_queue_are_still_delivered(world, harness):
    first, second = authorised(world), authorised(world, "50")
    harness.clock.advance(2 * 60)
    assert harness.deliver()  # the first, two minutes after both were authorised
    harness.clock.advance(2 * 60)

    assert harness.deliver()  # four minutes old, but the counter was busy, not abandoned

    assert reload(world, first.id).state is DoseState.COMPLETED
    assert reload(world, second.id).state is DoseState.COMPLETED


def test_an_expired_calibration_at_the_pump_refuses_without_sending_a_byte(world, harness):
    from devices.service import Job

    authorised(world)
    job = Job.from_dict(harness.jobs.next_job())
    harness.clock.advance(13 * 3600)  # the calibration ran out at T0 + 12 h

    result = harness.service.deliver(job)

    assert (result.outcome.value, result.reason) == ("FAILED", "CALIBRATION_EXPIRED")
    assert harness.sim.count("RUN") == 0 and len(result.transcript) == 0


def test_the_first_induction_dose_opens_an_observation(world, harness):
    patient = world.patient("20", phase=Phase.INDUCTION, valid_from=world.today, valid_until=world.today)
    world.assess(patient, cows=10)
    dose = world.authorize(patient).dose

    harness.deliver()

    codes = set(world.session.scalars(select(ClinicalTask.code).where(ClinicalTask.patient_id == patient.id)))
    assert "INDUCTION_OBSERVATION" in codes and reload(world, dose.id).state is DoseState.COMPLETED


def test_an_over_delivery_is_recorded_as_given_and_opens_a_dosing_error(world, harness):
    dose = authorised(world)
    harness.sim.overrun_ml = Decimal("0.50")

    harness.deliver()

    dose = reload(world, dose.id)
    assert (dose.state, dose.delivered_ml, dose.failure_reason) == (DoseState.COMPLETED, Decimal("6.500"),
                                                                    "OVER_DELIVERY")
    assert ledger(world, dose.id) == Decimal("6.500")
    codes = set(world.session.scalars(select(ClinicalTask.code).where(ClinicalTask.patient_id == dose.patient_id)))
    assert {"DOSING_ERROR_PHYSICIAN_ALERT", "DOSING_ERROR_OBSERVATION"} <= codes


def test_start_up_turns_doses_left_in_flight_into_unknown_with_the_pump_counter(world, database):
    first = make_harness(database, world)
    dose = authorised(world)
    waiting_patient = world.patient()
    world.assess(waiting_patient)
    # The pump is running this dose when the process dies: programmed, RUN sent, 3 s at 30 ml/min.
    counter.record_progress(world.session, world.counters[0].id, dose.id, "programmed", now=world.now)
    pump = first.service.devices.pump
    pump.clear_counter()
    pump.prepare(Decimal("6.00"))
    pump.start()
    counter.record_progress(world.session, world.counters[0].id, dose.id, "running", now=world.now)
    first.clock.advance(3)
    waiting = world.authorize(waiting_patient).dose  # authorised, never picked up
    first.service.stop()  # nothing reports the result
    first.jobs.close()

    # The new process connects to the same physical pump. It refuses to be configured while it
    # runs, so the service waits until the pump has finished the volume it was given, then reads
    # its counter.
    second = make_harness(database, world, start=False, sim=first.sim, clock=first.clock)
    second.service.start_up()

    assert sorted(second.service.stats.recovered) == sorted([dose.id, waiting.id])
    dose, waiting = reload(world, dose.id), reload(world, waiting.id)
    assert dose.state is DoseState.UNKNOWN and waiting.state is DoseState.UNKNOWN
    assert first.sim.delivered_ml == Decimal("6.00")
    assert dose.device_reading_ml == Decimal("6.000") and waiting.device_reading_ml is None
    unknown = world.session.scalar(select(DoseEvent).where(DoseEvent.dose_id == dose.id,
                                                           DoseEvent.state == DoseState.UNKNOWN))
    assert unknown.detail["previous_state"] == "running" and unknown.detail["pump_counter_ml"] == "6.000"
    waited = world.session.scalar(select(DoseEvent).where(DoseEvent.dose_id == waiting.id,
                                                          DoseEvent.state == DoseState.UNKNOWN))
    assert waited.detail["previous_state"] == "requested"
    assert first.sim.count("RUN") == 1  # nothing was retried
    assert not second.deliver()
    second.service.stop()
    second.jobs.close()
    first.sim.close()
    assert first.sim.errors == []


def test_a_repeated_result_changes_nothing(world, harness):
    dose = authorised(world)
    harness.deliver()
    again = counter.DeviceOutcome.from_dict({"outcome": "PARTIAL", "target_ml": "6.00", "measured_ml": "1.00",
                                             "reason": "PUMP_STALL", "uncertain": False})
    counter.record_result(world.session, world.counters[0].id, dose.id, again, world.rulebook.for_clinic,
                          now=world.now + timedelta(seconds=5))
    dose = reload(world, dose.id)
    assert (dose.state, dose.delivered_ml) == (DoseState.COMPLETED, Decimal("6.000"))
    assert ledger(world, dose.id) == Decimal("6.000")


def test_another_counters_agent_cannot_touch_the_dose(world, harness):
    from dispensing.errors import PermissionDenied

    dose = authorised(world)
    with pytest.raises(PermissionDenied):
        counter.record_progress(world.session, world.counters[1].id, dose.id, "programmed", now=world.now)


def test_the_ledger_balances_after_a_morning_of_doses(world, harness):
    opening = world.pump_balance()
    given = Decimal(0)
    for mg in ("60", "45", "80", "100"):
        dose = authorised(world, mg)
        harness.deliver()
        given += reload(world, dose.id).delivered_ml
    assert world.pump_balance() == opening - given == opening - Decimal("28.5")
    assert stock.balance(world.session, location_id=world.pumps[0].id) == opening - given
