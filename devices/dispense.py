"""The dispense routine used by the dose path.

Sequence (one place, one state machine)::

    checks (volume, ceiling, calibration)          no byte sent on failure
    clear counter, program, read back, compare     FAILED before RUN on any doubt
    counter baseline must be 0
    on_progress(PROGRAMMED)                        caller persists before RUN
    RUN, exactly once                              never retried
    on_progress(RUNNING)
    poll status until stopped / alarm / deadline   bounded by max_run_seconds
    stop if needed, read the counter               -> COMPLETED | PARTIAL | FAILED

The calibration factor is applied in both directions: the pump is programmed with
``target x factor`` and its counter is reported as ``counter / factor`` (see
``devices.calibration``). ``measured_ml`` is therefore an estimate of liquid
delivered, in the same units as the target.

Outcomes: COMPLETED when measured is within ``tolerance_ml`` of the target; PARTIAL
with a reason when less (but more than nothing) was delivered; FAILED with a reason
when nothing was delivered, more than the target was delivered (OVER_DELIVERY), or
the outcome is unknown.

Never assumes: a lost RUN reply is followed by polling, not by a second RUN. When
the pump is not known to be stopped, its counter cannot be read, or it lost power,
the result is FAILED with ``uncertain=True`` and the last counter value seen (a
lower bound), so the dose goes to a human as UNKNOWN.

Pumps without a counter (Reglo ICC): a run that stops by itself no earlier than the
volume could have been pumped counts as the setpoint (``MeasurementSource.SETPOINT``);
anything else is uncertain. With a ``GravimetricCheck`` the balance is tared before
RUN and the weight decides (and must agree with the counter when there is one).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from devices.calibration import CalibrationMethod, CalibrationResult, require_valid_calibration
from devices.clock import SYSTEM_CLOCK, Clock
from devices.errors import (
    CalibrationInvalid,
    CommandRejected,
    CrcError,
    DeviceError,
    FramingError,
    NoReply,
    OutOfRange,
    PortLost,
    ProtocolError,
    PumpAlarm,
    VolumeCeilingExceeded,
)
from devices.interfaces import Balance, Pump, PumpState
from devices.quantities import ZERO_ML, ml, round_ml
from devices.transcript import Transcript

log = structlog.get_logger(__name__)

DEFAULT_TOLERANCE_ML = Decimal("0.01")


class DispenseOutcome(enum.StrEnum):
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


class DispenseState(enum.StrEnum):
    """Progress states reported through ``on_progress``."""

    PROGRAMMED = "PROGRAMMED"
    RUNNING = "RUNNING"


class DispenseReason(enum.StrEnum):
    INVALID_VOLUME = "INVALID_VOLUME"
    OVER_CEILING = "OVER_CEILING"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    CALIBRATION_EXPIRED = "CALIBRATION_EXPIRED"
    CALIBRATION_MISSING = "CALIBRATION_MISSING"
    CALIBRATION_NOT_PASSED = "CALIBRATION_NOT_PASSED"
    CALIBRATION_WRONG_PUMP = "CALIBRATION_WRONG_PUMP"
    CALIBRATION_INVALID = "CALIBRATION_INVALID"
    READBACK_MISMATCH = "READBACK_MISMATCH"
    COUNTER_NOT_CLEARED = "COUNTER_NOT_CLEARED"
    PROGRESS_CALLBACK_FAILED = "PROGRESS_CALLBACK_FAILED"
    COMMAND_REJECTED = "COMMAND_REJECTED"
    NO_REPLY = "NO_REPLY"
    CRC_ERROR = "CRC_ERROR"
    FRAMING_ERROR = "FRAMING_ERROR"
    PROTOCOL_ERROR = "PROTOCOL_ERROR"
    PORT_LOST = "PORT_LOST"
    PUMP_STALL = "PUMP_STALL"
    POWER_RESET = "POWER_RESET"
    WATCHDOG = "WATCHDOG"
    PROGRAM_ERROR = "PROGRAM_ERROR"
    PROGRAM_OUT_OF_RANGE = "PROGRAM_OUT_OF_RANGE"
    PUMP_ALARM = "PUMP_ALARM"
    SHORT_DELIVERY = "SHORT_DELIVERY"
    OVER_DELIVERY = "OVER_DELIVERY"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    UNEXPECTED_STATE = "UNEXPECTED_STATE"
    GRAVIMETRIC_MISMATCH = "GRAVIMETRIC_MISMATCH"
    BALANCE_ERROR = "BALANCE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class MeasurementSource(enum.StrEnum):
    PUMP_COUNTER = "PUMP_COUNTER"
    BALANCE = "BALANCE"
    # Pump without a counter that stopped by itself no earlier than its volume run
    # could have finished: the delivered volume is the setpoint (see Reglo driver).
    SETPOINT = "SETPOINT"
    NONE = "NONE"


@dataclass(frozen=True)
class GravimetricCheck:
    """Confirm a dispense on the balance: tare before RUN, weigh after stop."""

    balance: Balance
    density_g_per_ml: Decimal
    tolerance_ml: Decimal = Decimal("0.10")
    stable_timeout_s: float = 10.0


@dataclass(frozen=True)
class DispenseResult:
    outcome: DispenseOutcome
    target_ml: Decimal
    measured_ml: Decimal
    reason: str | None
    uncertain: bool
    transcript: Transcript
    programmed_ml: Decimal | None = None
    pump_counter_ml: Decimal | None = None
    calibration_factor: Decimal | None = None
    measurement_source: MeasurementSource = MeasurementSource.NONE
    started_at: datetime | None = None
    finished_at: datetime | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (decimals as strings, transcript with hex bytes)."""

        def text(value: object) -> str | None:
            return None if value is None else str(value)

        return {
            "outcome": str(self.outcome),
            "target_ml": str(self.target_ml),
            "measured_ml": str(self.measured_ml),
            "reason": self.reason,
            "uncertain": self.uncertain,
            "programmed_ml": text(self.programmed_ml),
            "pump_counter_ml": text(self.pump_counter_ml),
            "calibration_factor": text(self.calibration_factor),
            "measurement_source": str(self.measurement_source),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "notes": list(self.notes),
            "transcript": self.transcript.to_list(),
        }


_ALARM_REASONS = {
    "S": DispenseReason.PUMP_STALL,
    "R": DispenseReason.POWER_RESET,
    "T": DispenseReason.WATCHDOG,
    "E": DispenseReason.PROGRAM_ERROR,
    "O": DispenseReason.PROGRAM_OUT_OF_RANGE,
}

_COMM_ERRORS = (NoReply, FramingError, CrcError, ProtocolError)

# A run longer than expected by this much (plus the slack) is stopped by the host.
RUN_TIMEOUT_FACTOR = 1.5
RUN_TIMEOUT_SLACK_S = 5.0
# Consecutive failed polls after which the pump is considered unreachable.
MAX_POLL_FAILURES = 3
# Near the expected end, poll this often so completion is seen promptly.
FINE_POLL_S = 0.05


def _reason_of(exc: DeviceError) -> str:
    if isinstance(exc, PumpAlarm):
        return str(_ALARM_REASONS.get(exc.code, DispenseReason.PUMP_ALARM))
    if isinstance(exc, VolumeCeilingExceeded):
        return DispenseReason.OVER_CEILING
    if isinstance(exc, OutOfRange):
        return DispenseReason.OUT_OF_RANGE
    if isinstance(exc, CommandRejected):
        return DispenseReason.COMMAND_REJECTED
    if isinstance(exc, CalibrationInvalid):
        return exc.reason
    return exc.reason


class _Dispense:
    """State for one call of ``dispense``; see the module docstring for the steps."""

    def __init__(
        self,
        pump: Pump,
        *,
        calibration: CalibrationResult | None,
        ceiling_ml: Decimal,
        on_progress: Callable[[DispenseState], None] | None,
        clock: Clock,
        tolerance_ml: Decimal,
        gravimetric: GravimetricCheck | None,
    ) -> None:
        self.pump = pump
        self.calibration = calibration
        self.ceiling_ml = ceiling_ml
        self.on_progress = on_progress
        self.clock = clock
        self.tolerance_ml = tolerance_ml
        self.gravimetric = gravimetric
        self.transcript = Transcript(clock)
        self.started_at = clock.now()
        self.target = ZERO_ML
        self.programmed: Decimal | None = None
        self.factor: Decimal | None = None
        self.notes: list[str] = []
        self.last_counter: Decimal | None = None
        self.run_sent = False

    # -- result helpers ------------------------------------------------------------

    def result(
        self,
        outcome: DispenseOutcome,
        *,
        reason: str | None = None,
        measured: Decimal = ZERO_ML,
        uncertain: bool = False,
        counter: Decimal | None = None,
        source: MeasurementSource = MeasurementSource.NONE,
    ) -> DispenseResult:
        result = DispenseResult(
            outcome=outcome,
            target_ml=self.target,
            measured_ml=measured,
            reason=None if reason is None else str(reason),
            uncertain=uncertain,
            transcript=self.transcript,
            programmed_ml=self.programmed,
            pump_counter_ml=counter,
            calibration_factor=self.factor,
            measurement_source=source,
            started_at=self.started_at,
            finished_at=self.clock.now(),
            notes=tuple(self.notes),
        )
        # Volumes and reasons only: no patient data reaches the devices layer.
        log.info(
            "dispense.finished",
            pump=self.pump.device_id,
            outcome=str(outcome),
            reason=result.reason,
            target_ml=str(self.target),
            measured_ml=str(measured),
            uncertain=uncertain,
        )
        return result

    def failed(self, reason: str, **kwargs: Any) -> DispenseResult:
        return self.result(DispenseOutcome.FAILED, reason=reason, **kwargs)

    def delivered(self, counter: Decimal) -> Decimal:
        assert self.factor is not None
        return round_ml(counter / self.factor)

    # -- steps ------------------------------------------------------------------------

    def run(self, volume_ml: Decimal) -> DispenseResult:
        try:
            self.target = ml(volume_ml)
        except (TypeError, ValueError):
            return self.failed(DispenseReason.INVALID_VOLUME)
        if self.target <= 0:
            return self.failed(DispenseReason.INVALID_VOLUME)
        if self.target > self.ceiling_ml:
            return self.failed(DispenseReason.OVER_CEILING)
        try:
            calibration = require_valid_calibration(
                self.calibration, self.clock.now(), pump_id=self.pump.device_id
            )
        except CalibrationInvalid as exc:
            return self.failed(exc.reason)
        self.factor = calibration.factor
        self.programmed = round_ml(self.target * self.factor)
        if self.programmed > self.pump.max_volume_ml:
            # The driver would refuse too; say so without touching the pump.
            return self.failed(DispenseReason.OVER_CEILING)
        with self.pump.recording(self.transcript):
            try:
                return self._run_on_pump()
            except Exception as exc:
                # A driver bug must not leave a pump running behind an exception
                # the dose path may not expect: stop it and report.
                log.error(
                    "dispense.internal_error", pump=self.pump.device_id, error=type(exc).__name__
                )
                self.notes.append(f"internal error: {type(exc).__name__}")
                try:
                    self.pump.stop()
                except Exception:  # the original error is what matters
                    self.notes.append("STP after internal error failed")
                if self.run_sent:
                    return self._uncertain(DispenseReason.INTERNAL_ERROR)
                return self.failed(DispenseReason.INTERNAL_ERROR)

    def _run_on_pump(self) -> DispenseResult:
        pump = self.pump
        try:
            pump.clear_counter()
            readback = pump.prepare(self.programmed)  # type: ignore[arg-type]
        except DeviceError as exc:
            return self.failed(_reason_of(exc))
        if readback != self.programmed:
            self.notes.append(f"programmed {self.programmed} ml, pump read back {readback} ml")
            return self.failed(DispenseReason.READBACK_MISMATCH)
        if pump.has_volume_counter:
            try:
                baseline = pump.dispensed_volume()
            except DeviceError as exc:
                return self.failed(_reason_of(exc))
            if baseline != 0:
                self.notes.append(f"counter reads {baseline} ml after clearing")
                return self.failed(DispenseReason.COUNTER_NOT_CLEARED)
        if self.gravimetric is not None:
            try:
                self.gravimetric.balance.tare()
            except DeviceError as exc:
                self.notes.append(f"balance: {exc.reason}")
                return self.failed(DispenseReason.BALANCE_ERROR)
        try:
            self._progress(DispenseState.PROGRAMMED)
        except Exception as exc:  # whatever the caller raised, RUN is not sent
            # Type only: the caller's exception text may carry patient data.
            log.error("dispense.progress_failed", state="PROGRAMMED", error=type(exc).__name__)
            return self.failed(DispenseReason.PROGRESS_CALLBACK_FAILED)

        run_sent_at = self.clock.monotonic()
        run_confirmed = True
        self.run_sent = True
        try:
            pump.start()
        except (PumpAlarm, CommandRejected) as exc:
            # The pump answered and refused: it is not running.
            return self.failed(_reason_of(exc))
        except PortLost:
            return self.failed(DispenseReason.PORT_LOST, uncertain=True)
        except _COMM_ERRORS as exc:
            # RUN may or may not have been executed. Never send it again: find
            # out by polling.
            run_confirmed = False
            self.notes.append(f"RUN reply not received ({exc.reason}); supervising without retry")
        try:
            self._progress(DispenseState.RUNNING)
        except Exception as exc:  # the pump is running; keep supervising it
            log.error("dispense.progress_failed", state="RUNNING", error=type(exc).__name__)
            self.notes.append("on_progress(RUNNING) raised; dispense supervised to the end")
        return self._supervise(run_sent_at, run_confirmed)

    def _progress(self, state: DispenseState) -> None:
        if self.on_progress is not None:
            self.on_progress(state)

    def _supervise(self, run_sent_at: float, run_confirmed: bool) -> DispenseResult:
        pump = self.pump
        assert self.programmed is not None
        expected_s = pump.max_run_seconds(self.programmed)
        deadline = run_sent_at + expected_s * RUN_TIMEOUT_FACTOR + RUN_TIMEOUT_SLACK_S
        failures = 0
        alarm: PumpAlarm | None = None
        comm_error: DeviceError | None = None
        stopped_by_host = False
        timed_out = False
        unexpected_state: PumpState | None = None
        seen_running = run_confirmed
        stopped_at: float | None = None

        while True:
            remaining_expected = run_sent_at + expected_s - self.clock.monotonic()
            delay = pump.poll_interval_s
            if 0 < remaining_expected < delay:
                delay = max(remaining_expected, FINE_POLL_S)
            elif remaining_expected <= 0:
                delay = min(delay, FINE_POLL_S * 4)
            self.clock.sleep(delay)
            try:
                status = pump.status()
            except PumpAlarm as exc:
                alarm = exc
                break
            except PortLost as exc:
                comm_error = exc
                break
            except _COMM_ERRORS as exc:
                failures += 1
                self.notes.append(f"status poll failed ({exc.reason})")
                if failures >= MAX_POLL_FAILURES:
                    comm_error = exc
                    break
                continue
            failures = 0
            if status.dispensed_ml is not None:
                self.last_counter = status.dispensed_ml
            if status.state is PumpState.STOPPED:
                stopped_at = self.clock.monotonic()
                break
            if status.state is PumpState.RUNNING:
                seen_running = True
            elif status.state is not PumpState.PAUSED:
                unexpected_state = status.state
                break
            if self.clock.monotonic() > deadline:
                timed_out = True
                break

        if alarm is not None or timed_out or unexpected_state is not None or comm_error is not None:
            # Stopping is always safe; it also ends a run we lost track of.
            try:
                pump.stop()
                stopped_by_host = True
            except DeviceError as exc:
                self.notes.append(f"STP failed ({exc.reason})")
        if isinstance(comm_error, PortLost):
            return self._uncertain(DispenseReason.PORT_LOST)
        if alarm is not None and alarm.code == "R":
            # The pump lost power: its counter restarted and says nothing about
            # this dispense. Report the last value seen before the reset.
            return self._uncertain(DispenseReason.POWER_RESET)

        def why_uncertain(exc: DeviceError | None = None) -> str:
            if alarm is not None:
                return _reason_of(alarm)
            if timed_out:
                return DispenseReason.RUN_TIMEOUT
            if comm_error is not None:
                return comm_error.reason
            return exc.reason if exc is not None else DispenseReason.UNEXPECTED_STATE

        # An alarm stops the pump by itself; otherwise it stopped on its own or we
        # stopped it. If none of these is known, nothing read now is final.
        if stopped_at is None and not stopped_by_host and alarm is None:
            self.notes.append("pump not known to be stopped")
            return self._uncertain(why_uncertain())

        counter: Decimal | None = None
        if pump.has_volume_counter and stopped_at is not None:
            # The status that said "stopped" carried the final counter already.
            counter = self.last_counter
        elif pump.has_volume_counter:
            try:
                final = pump.status()
            except DeviceError as exc:
                self.notes.append(f"final counter read failed ({exc.reason})")
                return self._uncertain(why_uncertain(exc))
            if final.state not in (PumpState.STOPPED, PumpState.PAUSED):
                self.notes.append(f"pump reports {final.state} after stopping")
                return self._uncertain(why_uncertain())
            counter = final.dispensed_ml
        elif comm_error is not None:
            return self._uncertain(comm_error.reason)

        if alarm is not None:
            reason: str | None = _reason_of(alarm)
        elif timed_out:
            reason = DispenseReason.RUN_TIMEOUT
        elif unexpected_state is not None:
            reason = DispenseReason.UNEXPECTED_STATE
            self.notes.append(f"pump reported {unexpected_state}")
        elif comm_error is not None:
            reason = comm_error.reason
        else:
            reason = None
        if stopped_by_host:
            self.notes.append("stopped by host")

        if counter is not None:
            measured = self.delivered(counter)
            source = MeasurementSource.PUMP_COUNTER
        elif (
            reason is None
            and stopped_at is not None
            and seen_running
            # It stopped by itself no earlier than the volume could have been
            # pumped at the set flow: the pump's volume-at-rate run completed.
            and stopped_at - run_sent_at >= expected_s
        ):
            measured = self.target
            source = MeasurementSource.SETPOINT
        else:
            measured = ZERO_ML
            source = MeasurementSource.NONE

        if self.gravimetric is not None:
            return self._weigh(counter, measured, source, reason)
        if source is MeasurementSource.NONE:
            # No counter and the run did not finish as a volume run would: how
            # much left the pump is unknown.
            if reason is None:
                reason = DispenseReason.SHORT_DELIVERY if seen_running else DispenseReason.NO_REPLY
            return self._uncertain(reason)
        if not seen_running and counter == 0:
            # RUN was lost on the way: the pump never moved.
            return self.failed(reason or DispenseReason.NO_REPLY, counter=counter, source=source)
        return self._judge(measured, reason, counter=counter, source=source)

    def _judge(
        self,
        measured: Decimal,
        reason: str | None,
        *,
        counter: Decimal | None,
        source: MeasurementSource,
    ) -> DispenseResult:
        difference = measured - self.target
        if difference > self.tolerance_ml:
            return self.failed(
                DispenseReason.OVER_DELIVERY, measured=measured, counter=counter, source=source
            )
        if abs(difference) <= self.tolerance_ml:
            if reason is not None:
                self.notes.append(f"{reason} after the full volume")
            return self.result(
                DispenseOutcome.COMPLETED, measured=measured, counter=counter, source=source
            )
        why = reason or DispenseReason.SHORT_DELIVERY
        if measured <= 0:
            return self.failed(why, measured=ZERO_ML, counter=counter, source=source)
        return self.result(
            DispenseOutcome.PARTIAL, reason=why, measured=measured, counter=counter, source=source
        )

    def _uncertain(self, reason: str) -> DispenseResult:
        measured = self.delivered(self.last_counter) if self.last_counter is not None else ZERO_ML
        return self.failed(
            reason,
            measured=measured,
            uncertain=True,
            counter=self.last_counter,
            source=MeasurementSource.PUMP_COUNTER
            if self.last_counter is not None
            else MeasurementSource.NONE,
        )

    def _weigh(
        self,
        counter: Decimal | None,
        measured: Decimal,
        source: MeasurementSource,
        reason: str | None,
    ) -> DispenseResult:
        check = self.gravimetric
        assert check is not None
        try:
            weighing = check.balance.stable_weight(check.stable_timeout_s)
        except DeviceError as exc:
            self.notes.append(f"balance: {exc.reason}")
            if source is MeasurementSource.NONE:
                return self._uncertain(DispenseReason.BALANCE_ERROR)
            return self.failed(
                DispenseReason.BALANCE_ERROR,
                measured=measured,
                uncertain=True,
                counter=counter,
                source=source,
            )
        weighed = round_ml(weighing.grams / check.density_g_per_ml)
        self.notes.append(f"balance: {weighing.grams} g = {weighed} ml")
        if source is not MeasurementSource.NONE and abs(weighed - measured) > check.tolerance_ml:
            self.notes.append(f"{source} says {measured} ml")
            return self.failed(
                DispenseReason.GRAVIMETRIC_MISMATCH,
                measured=weighed,
                uncertain=True,
                counter=counter,
                source=MeasurementSource.BALANCE,
            )
        return self._judge(weighed, reason, counter=counter, source=MeasurementSource.BALANCE)


def dispense(
    pump: Pump,
    volume_ml: Decimal,
    *,
    calibration: CalibrationResult | None,
    ceiling_ml: Decimal,
    on_progress: Callable[[DispenseState], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    tolerance_ml: Decimal = DEFAULT_TOLERANCE_ML,
    gravimetric: GravimetricCheck | None = None,
) -> DispenseResult:
    """Dispense ``volume_ml`` and return what happened; never raises a DeviceError.

    ``calibration`` must be valid for this pump now (else FAILED with the
    calibration reason, nothing sent). ``ceiling_ml`` is the application's hard limit;
    the driver has its own. ``on_progress`` is called with PROGRAMMED before RUN is
    sent (if it raises, RUN is not sent) and with RUNNING once RUN has been sent.
    ``tolerance_ml`` is how far measured may differ from target and still be
    COMPLETED. With ``gravimetric`` the balance is tared before RUN and the result
    is confirmed by weight.
    """
    job = _Dispense(
        pump,
        calibration=calibration,
        ceiling_ml=ceiling_ml,
        on_progress=on_progress,
        clock=clock,
        tolerance_ml=tolerance_ml,
        gravimetric=gravimetric,
    )
    return job.run(volume_ml)


def dispense_for_calibration(
    pump: Pump,
    nominal_ml: Decimal,
    *,
    ceiling_ml: Decimal,
    clock: Clock = SYSTEM_CLOCK,
    tolerance_ml: Decimal = DEFAULT_TOLERANCE_ML,
) -> DispenseResult:
    """Dispense ``nominal_ml`` uncorrected (factor 1) for a calibration replicate.

    The only path that runs a pump without a valid calibration; used by
    ``devices.calibration_procedure``. Same checks and supervision as ``dispense``.
    """
    now = clock.now()
    uncorrected = CalibrationResult(
        pump_id=pump.device_id,
        method=CalibrationMethod.GRAVIMETRIC,
        factor=Decimal(1),
        mean_error_pct=Decimal(0),
        corrected_error_pct=Decimal(0),
        cv_pct=Decimal(0),
        passed=True,
        reason=None,
        evaluated_at=now,
        valid_until=now + timedelta(hours=1),
        liquid="",
        lot=None,
        liquid_used_ml=Decimal(0),
    )
    return dispense(
        pump,
        nominal_ml,
        calibration=uncorrected,
        ceiling_ml=ceiling_ml,
        clock=clock,
        tolerance_ml=tolerance_ml,
    )
