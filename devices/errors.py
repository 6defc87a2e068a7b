"""Typed device failures.

Every exception carries a stable ``reason`` code that the dispense result, logs and
the web layer use; messages never contain patient data.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Base class for every device failure."""

    reason = "DEVICE_ERROR"


class PortUnavailable(DeviceError):
    """The port could not be opened (missing device, wrong path, busy)."""

    reason = "PORT_UNAVAILABLE"


class PortLost(DeviceError):
    """The port disappeared while in use (cable pulled, USB adapter reset)."""

    reason = "PORT_LOST"


class NoReply(DeviceError):
    """The device did not answer within the reply timeout."""

    reason = "NO_REPLY"


class FramingError(DeviceError):
    """Only part of a frame arrived, or the bytes could not be framed."""

    reason = "FRAMING_ERROR"


class CrcError(DeviceError):
    """A frame arrived whose CRC does not match (or the device reported one)."""

    reason = "CRC_ERROR"


class ProtocolError(DeviceError):
    """A reply arrived but does not have the shape the command calls for."""

    reason = "PROTOCOL_ERROR"


class CommandRejected(DeviceError):
    """The device answered and refused the command."""

    reason = "COMMAND_REJECTED"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class OutOfRange(CommandRejected):
    """A value is outside what the device (or the host-side limit) accepts."""

    reason = "OUT_OF_RANGE"


class VolumeCeilingExceeded(OutOfRange):
    """A volume above the hard ceiling was asked for; nothing was sent."""

    reason = "OVER_CEILING"


class PumpAlarm(DeviceError):
    """The pump reported an alarm; ``code`` is the device's alarm letter."""

    REASONS = {
        "S": "PUMP_STALL",
        "R": "POWER_RESET",
        "T": "WATCHDOG",
        "E": "PROGRAM_ERROR",
        "O": "PROGRAM_OUT_OF_RANGE",
    }

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or f"pump alarm {code}")
        self.code = code

    @property
    def reason(self) -> str:  # type: ignore[override]
        return self.REASONS.get(self.code, "PUMP_ALARM")


class VolumeCounterUnavailable(DeviceError):
    """The pump has no dispensed-volume counter to read back."""

    reason = "NO_VOLUME_COUNTER"


class BalanceUnstable(DeviceError):
    """The balance has no stable reading (yet)."""

    reason = "UNSTABLE_READING"


class WrongUnit(DeviceError):
    """The balance answered in a unit other than grams."""

    reason = "WRONG_UNIT"


class BalanceOverload(OutOfRange):
    """The load is above the balance's capacity."""

    reason = "BALANCE_OVERLOAD"


class BalanceUnderload(OutOfRange):
    """The load is below the balance's zero range (pan removed?)."""

    reason = "BALANCE_UNDERLOAD"


class CalibrationInvalid(DeviceError):
    """The pump has no usable calibration."""

    reason = "CALIBRATION_INVALID"


class CalibrationMissing(CalibrationInvalid):
    """No calibration has been recorded for this pump."""

    reason = "CALIBRATION_MISSING"


class CalibrationExpired(CalibrationInvalid):
    """The pump's calibration is past its ``valid_until``."""

    reason = "CALIBRATION_EXPIRED"


class CalibrationNotPassed(CalibrationInvalid):
    """The latest calibration failed its acceptance limits."""

    reason = "CALIBRATION_NOT_PASSED"


class CalibrationWrongPump(CalibrationInvalid):
    """The calibration belongs to a different pump."""

    reason = "CALIBRATION_WRONG_PUMP"


class CalibrationAborted(DeviceError):
    """A calibration run stopped before all replicates were taken.

    ``liquid_used_ml`` is what was dispensed before the stop, so the stock ledger can
    still book it.
    """

    reason = "CALIBRATION_ABORTED"

    def __init__(self, message: str, *, cause_reason: str, liquid_used_ml) -> None:
        super().__init__(message)
        self.cause_reason = cause_reason
        self.liquid_used_ml = liquid_used_ml


class DeviceConfigError(DeviceError):
    """``config/devices.toml`` (or the dict given instead) is invalid."""

    reason = "DEVICE_CONFIG_ERROR"
