"""The dispense routine with the real NE-1000 driver against the pty simulator.

Every fault knob of the simulator has a test here showing the outcome, the reason,
the measured volume and that RUN was sent at most once.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from decimal import Decimal

import pytest

from devices.clock import SystemClock
from devices.dispense import DispenseOutcome, DispenseState, MeasurementSource, dispense
from devices.ne1000 import Ne1000Pump, Ne1000Settings
from devices.simulators import Ne1000Simulator, ReplyFault
from devices.transcript import Transcript

CEILING = Decimal("40.00")


def run_count(transcript: Transcript) -> int:
    return transcript.bytes_sent().count(b"00RUN")


def go(pump, clock, calibration, volume="2.00", **kwargs):
    return dispense(
        pump, Decimal(volume), calibration=calibration, ceiling_ml=CEILING, clock=clock, **kwargs
    )


# The complete exchange for 2.00 ml at 30 ml/min, polled every 0.5 s (virtual time).
# Frames: STX, length, payload, CRC-hi, CRC-lo, ETX; written out literally so a
# change in framing, command order or polling shows up here.
EXPECTED_TRANSCRIPT = [
    ("tx", b"\x02\x0c00CLDINF\x00r\x03"),
    ("rx", b"\x02\x0700S\xaa\xa6\x03"),
    ("tx", b"\x02\x0b00VOLML\x8e\xd0\x03"),
    ("rx", b"\x02\x0700S\xaa\xa6\x03"),
    ("tx", b"\x02\r00VOL2.00\xa3\xbc\x03"),
    ("rx", b"\x02\x0700S\xaa\xa6\x03"),
    ("tx", b"\x02\t00VOLX\xd3\x03"),
    ("rx", b"\x02\x0e00S2.000ML\xc17\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500SI0.000W0.000MLo\x1a\x03"),
    ("tx", b"\x02\t00RUNH\xe9\x03"),
    ("rx", b"\x02\x0700I\x19\xdd\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500II0.250W0.000ML)\xcf\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500II0.500W0.000ML\xc2\x02\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500II0.750W0.000ML\xa0\xc1\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500II1.000W0.000ML\x0eo\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500II1.250W0.000MLl\xac\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500II1.500W0.000ML\x87a\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500II1.750W0.000ML\xe5\xa2\x03"),
    ("tx", b"\x02\t00DIS<\xa8\x03"),
    ("rx", b"\x02\x1500SI2.000W0.000ML\xe5\xdc\x03"),
]


def test_full_dispense_transcript_is_exact(ne_pump, clock, calibration):
    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert result.reason is None and not result.uncertain
    assert result.measurement_source is MeasurementSource.PUMP_COUNTER
    assert result.transcript.merged() == EXPECTED_TRANSCRIPT
    entries = result.transcript.entries
    assert all(e.at.tzinfo is not None for e in entries)
    assert entries[0].at <= entries[-1].at


def test_transcript_serialises_to_json_with_hex(ne_pump, clock, calibration):
    result = go(ne_pump, clock, calibration)

    document = json.loads(json.dumps(result.to_dict()))
    assert document["outcome"] == "COMPLETED"
    assert document["measured_ml"] == "2.00"
    first = document["transcript"][0]
    assert first["dir"] == "tx" and first["hex"] == "020c3030434c44494e460072" + "03"
    assert Transcript.from_json(result.transcript.to_json()).merged() == result.transcript.merged()


def test_progress_is_reported_before_run_and_after_run(ne_pump, ne_sim, clock, calibration):
    seen = []

    def on_progress(state):
        seen.append((state, ne_sim.count("RUN")))

    result = go(ne_pump, clock, calibration, on_progress=on_progress)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert seen == [(DispenseState.PROGRAMMED, 0), (DispenseState.RUNNING, 1)]


def test_failing_progress_callback_before_run_means_no_run(ne_pump, ne_sim, clock, calibration):
    def on_progress(state):
        raise RuntimeError("database unavailable")

    result = go(ne_pump, clock, calibration, on_progress=on_progress)

    assert result.outcome is DispenseOutcome.FAILED
    assert result.reason == "PROGRESS_CALLBACK_FAILED"
    assert run_count(result.transcript) == 0 and ne_sim.count("RUN") == 0
    assert ne_sim.delivered_ml == 0


def test_calibration_factor_applied_when_programming_and_to_readback(
    ne_pump, ne_sim, clock, make_calibration
):
    # This pump delivers 2 % short; its calibration says program 2 % more.
    ne_sim.delivery_factor = Decimal(1) / Decimal("1.02")
    result = go(ne_pump, clock, make_calibration("1.0200"), volume="5.00")

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.programmed_ml == Decimal("5.10")
    assert result.pump_counter_ml == Decimal("5.10")
    assert result.measured_ml == Decimal("5.00")
    assert b"00VOL5.10" in result.transcript.bytes_sent()
    assert abs(ne_sim.delivered_ml - Decimal("5.00")) < Decimal("0.001")


# -- refusals before any byte is sent ---------------------------------------------------------


def test_over_application_ceiling_sends_nothing(ne_pump, clock, calibration):
    result = dispense(
        ne_pump, Decimal("6.00"), calibration=calibration, ceiling_ml=Decimal("5.00"), clock=clock
    )

    assert result.outcome is DispenseOutcome.FAILED
    assert result.reason == "OVER_CEILING"
    assert len(result.transcript) == 0


def test_over_driver_ceiling_sends_nothing(ne_pump, clock, calibration):
    # The application would allow 60 ml; the pump's own ceiling is 50 ml.
    result = dispense(
        ne_pump, Decimal("60.00"), calibration=calibration, ceiling_ml=Decimal("100"), clock=clock
    )

    assert result.outcome is DispenseOutcome.FAILED
    assert result.reason == "OVER_CEILING"
    assert len(result.transcript) == 0


def test_expired_calibration_refuses_to_dispense(ne_pump, ne_sim, clock, make_calibration):
    calibration = make_calibration(hours=1)
    clock.advance(3600)

    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.FAILED
    assert result.reason == "CALIBRATION_EXPIRED"
    assert len(result.transcript) == 0
    assert ne_sim.count("RUN") == 0


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"calibration": None}, "CALIBRATION_MISSING"),
        ({"pump_id": "counter-9/pump"}, "CALIBRATION_WRONG_PUMP"),
    ],
)
def test_missing_or_foreign_calibration_refuses(ne_pump, clock, make_calibration, kwargs, reason):
    calibration = None if "calibration" in kwargs else make_calibration(pump_id=kwargs["pump_id"])

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, reason)
    assert len(result.transcript) == 0


@pytest.mark.parametrize("volume", [2.0, "2.005", "0", "-1.00"])
def test_invalid_volume_refused(ne_pump, clock, calibration, volume):
    target = volume if isinstance(volume, float) else Decimal(volume)

    result = dispense(ne_pump, target, calibration=calibration, ceiling_ml=CEILING, clock=clock)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "INVALID_VOLUME")
    assert len(result.transcript) == 0


# -- fault knobs -----------------------------------------------------------------------------------


def test_readback_mismatch_fails_before_run(ne_pump, ne_sim, clock, calibration):
    ne_sim.readback_override = Decimal("2.50")

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "READBACK_MISMATCH")
    assert result.measured_ml == 0 and not result.uncertain
    assert run_count(result.transcript) == 0


def test_counter_that_does_not_clear_fails_before_run(ne_pump, ne_sim, clock, calibration):
    assert go(ne_pump, clock, calibration).outcome is DispenseOutcome.COMPLETED
    ne_sim.ignore_clear = True

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "COUNTER_NOT_CLEARED")
    assert run_count(result.transcript) == 0


def test_no_reply_to_run_is_not_retried_and_counter_decides(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.NO_REPLY, on="RUN")

    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert run_count(result.transcript) == 1 and ne_sim.count("RUN") == 1
    assert any("RUN reply" in note for note in result.notes)


def test_run_lost_on_the_way_fails_without_second_run(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.DROP_COMMAND, on="RUN")

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "NO_REPLY")
    assert result.measured_ml == 0 and not result.uncertain
    assert run_count(result.transcript) == 1
    assert ne_sim.delivered_ml == 0


def test_pump_going_silent_mid_run_is_uncertain_with_last_counter(
    ne_sim, ne_settings, clock, calibration
):
    ne_sim.mute_at(Decimal("1.00"))
    # No per-exchange retries, only to keep this test short: the outcome is the same.
    settings = dataclasses.replace(ne_settings, query_retries=0)
    with Ne1000Pump.connect(ne_sim.port, settings, device_id="counter-1/pump", clock=clock) as pump:
        result = go(pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "NO_REPLY")
    assert result.uncertain
    # Last poll that got an answer was at 1.5 s: 0.75 ml.
    assert result.measured_ml == Decimal("0.75")
    assert run_count(result.transcript) == 1
    assert b"00STP" in result.transcript.bytes_sent()


def test_slow_replies_within_timeout_complete(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.SLOW_REPLY, times=None, delay_s=0.02)

    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")


def test_reply_slower_than_timeout_is_retried_and_late_reply_discarded(
    ne_pump, ne_sim, clock, calibration
):
    ne_sim.inject(ReplyFault.SLOW_REPLY, on="DIS", times=2, delay_s=0.3)

    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert run_count(result.transcript) == 1


def test_partial_frame_in_reply_to_run_is_not_retried(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.PARTIAL_FRAME, on="RUN")

    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert run_count(result.transcript) == 1
    assert any("FRAMING_ERROR" in note for note in result.notes)


def test_partial_frames_on_polls_are_retried(ne_pump, ne_sim, clock, calibration):
    def on_progress(state):
        if state is DispenseState.RUNNING:
            # Three torn replies: the first poll fails after its retries, the
            # next poll gets through.
            ne_sim.inject(ReplyFault.PARTIAL_FRAME, on="DIS", times=3)

    result = go(ne_pump, clock, calibration, on_progress=on_progress)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert "status poll failed (FRAMING_ERROR)" in result.notes


def test_partial_frames_before_run_fail_without_run(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.PARTIAL_FRAME, on="DIS", times=3)

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "FRAMING_ERROR")
    assert run_count(result.transcript) == 0


def test_garbage_before_every_reply_is_skipped(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.GARBAGE, times=None)

    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")
    assert b"noise" in result.transcript.bytes_received()


def test_bad_crc_once_is_retried(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.BAD_CRC, on="DIS", times=1)

    result = go(ne_pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("2.00")


def test_bad_crc_before_run_fails_without_run(ne_pump, ne_sim, clock, calibration):
    ne_sim.inject(ReplyFault.BAD_CRC, on="VOL", times=None)

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "CRC_ERROR")
    assert not result.uncertain
    assert run_count(result.transcript) == 0


def test_bad_crc_on_everything_after_run_is_uncertain(ne_pump, ne_sim, clock, calibration):
    def on_progress(state):
        if state is DispenseState.PROGRAMMED:
            ne_sim.inject(ReplyFault.BAD_CRC, times=None)

    result = go(ne_pump, clock, calibration, on_progress=on_progress)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "CRC_ERROR")
    assert result.uncertain
    assert result.measured_ml == 0
    assert run_count(result.transcript) == 1


def test_stall_mid_dispense_is_partial_with_counter(ne_pump, ne_sim, clock, calibration):
    ne_sim.stall_at(Decimal("1.20"))

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.PARTIAL, "PUMP_STALL")
    assert result.measured_ml == Decimal("1.20")
    assert not result.uncertain
    assert run_count(result.transcript) == 1


def test_stall_before_anything_moved_is_failed(ne_pump, ne_sim, clock, calibration):
    ne_sim.stall_at(Decimal("0"))

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "PUMP_STALL")
    assert result.measured_ml == 0


def test_program_error_alarm_is_partial(ne_pump, ne_sim, clock, calibration):
    ne_sim.alarm_at(Decimal("0.50"), "E")

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.PARTIAL, "PROGRAM_ERROR")
    assert result.measured_ml == Decimal("0.50")


def test_power_reset_mid_dispense_is_uncertain_with_last_counter_seen(
    ne_pump, ne_sim, clock, calibration
):
    ne_sim.power_reset_at(Decimal("1.30"))

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "POWER_RESET")
    assert result.uncertain
    # The pump's counter restarted at the reset; the last value seen before it (poll
    # at 2.5 s) is reported as a lower bound of what was delivered (1.30 ml).
    assert result.measured_ml == Decimal("1.25")
    assert ne_sim.delivered_ml == Decimal("1.30")
    assert run_count(result.transcript) == 1


def test_watchdog_stops_pump_when_host_hangs(ne_pump, ne_sim, clock, calibration):
    # The dose path hangs for longer than the 4 s safe-mode timeout right after RUN:
    # the pump must stop itself, and the dispense reports what was delivered.
    def on_progress(state):
        if state is DispenseState.RUNNING:
            clock.sleep(6)

    result = go(ne_pump, clock, calibration, volume="5.00", on_progress=on_progress)

    assert (result.outcome, result.reason) == (DispenseOutcome.PARTIAL, "WATCHDOG")
    assert result.measured_ml == Decimal("2.00")  # 4 s at 30 ml/min
    assert ne_sim.delivered_ml == Decimal("2.00")
    assert "T" in ne_sim.alarm_history
    assert run_count(result.transcript) == 1


def test_short_delivery_is_partial(ne_pump, ne_sim, clock, calibration):
    ne_sim.short_delivery_at(Decimal("1.60"))

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.PARTIAL, "SHORT_DELIVERY")
    assert result.measured_ml == Decimal("1.60")
    assert not result.uncertain


def test_over_delivery_is_failed_with_measured_volume(ne_pump, ne_sim, clock, calibration):
    ne_sim.overrun_ml = Decimal("0.10")

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "OVER_DELIVERY")
    assert result.measured_ml == Decimal("2.10")
    assert not result.uncertain


def test_pump_stuck_running_is_stopped_at_deadline(ne_pump, ne_sim, clock, calibration):
    ne_sim.stuck_at(Decimal("1.00"))

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.PARTIAL, "RUN_TIMEOUT")
    assert result.measured_ml == Decimal("1.00")
    assert ne_sim.prompt == "S"
    # Expected 4 s; the host gives up after 4 x 1.5 + 5 = 11 s, never earlier.
    assert 11 <= (result.finished_at - result.started_at).total_seconds() <= 12
    assert run_count(result.transcript) == 1


def test_port_disappearing_mid_dispense_is_uncertain(ne_pump, ne_sim, clock, calibration):
    ne_sim.vanish_at(Decimal("1.10"))

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "PORT_LOST")
    assert result.uncertain
    assert result.measured_ml == Decimal("1.00")  # last poll before the port went


def test_port_gone_before_dispense_fails_without_uncertainty(ne_pump, ne_sim, clock, calibration):
    ne_sim.vanish()

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "PORT_LOST")
    assert not result.uncertain
    assert result.measured_ml == 0


def test_dispense_over_socket_url_uses_the_same_driver(clock, calibration):
    with Ne1000Simulator(clock=clock, transport="tcp") as sim:
        assert sim.url.startswith("socket://")
        settings = Ne1000Settings(reply_timeout_s=0.3, poll_interval_s=0.5, safe_mode_timeout_s=4)
        with Ne1000Pump.connect(sim.url, settings, device_id="counter-1/pump", clock=clock) as pump:
            result = go(pump, clock, calibration)

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.transcript.merged() == EXPECTED_TRANSCRIPT


def test_real_time_dispense_on_system_clock(calibration):
    # One dispense in real time (0.3 ml at 600 ml/min, 30 ms) to show nothing
    # depends on the virtual clock.
    clock = SystemClock()
    now = clock.now()
    calibration = dataclasses.replace(
        calibration, evaluated_at=now, valid_until=now + timedelta(hours=1)
    )
    with Ne1000Simulator(clock=clock) as sim:
        settings = Ne1000Settings(
            reply_timeout_s=0.3,
            poll_interval_s=0.05,
            safe_mode_timeout_s=2,
            rate_ml_min=Decimal("600"),
        )
        with Ne1000Pump.connect(
            sim.port, settings, device_id="counter-1/pump", clock=clock
        ) as pump:
            result = dispense(
                pump, Decimal("0.30"), calibration=calibration, ceiling_ml=CEILING, clock=clock
            )

    assert result.outcome is DispenseOutcome.COMPLETED
    assert result.measured_ml == Decimal("0.30")


def test_unexpected_driver_error_after_run_stops_pump_and_is_uncertain(
    ne_pump, ne_sim, clock, calibration, monkeypatch
):
    real_status = ne_pump.status
    calls = []

    def status_with_a_bug():
        calls.append(1)
        if len(calls) == 3:
            raise KeyError("driver bug")
        return real_status()

    monkeypatch.setattr(ne_pump, "status", status_with_a_bug)

    result = go(ne_pump, clock, calibration)

    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "INTERNAL_ERROR")
    assert result.uncertain
    # Calls: baseline before RUN, poll at 0.5 s (0.25 ml), poll at 1.0 s raises.
    assert result.measured_ml == Decimal("0.25")
    assert ne_sim.prompt == "S"
    assert run_count(result.transcript) == 1


def test_transcript_reads_like_a_list_of_records(ne_pump, clock, calibration):
    result = go(ne_pump, clock, calibration)
    first = result.transcript[0]
    assert (first.direction, first.device) == ("tx", "counter-1/pump")
    assert [e.direction for e in result.transcript][:2] == ["tx", "rx"]


def test_pump_that_will_not_stop_is_never_reported_as_partial(ne_pump, ne_sim, clock, calibration):
    ne_sim.stuck_at(Decimal("1.00"))
    ne_sim.inject(ReplyFault.DROP_COMMAND, on="STP", times=None)

    result = go(ne_pump, clock, calibration)

    # The counter says 1.00 ml, but the pump was never confirmed stopped: that
    # number is not final, so the dose goes to a human.
    assert (result.outcome, result.reason) == (DispenseOutcome.FAILED, "RUN_TIMEOUT")
    assert result.uncertain
    assert result.measured_ml == Decimal("1.00")
    assert "pump not known to be stopped" in result.notes
