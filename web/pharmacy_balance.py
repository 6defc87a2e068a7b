"""The balance on the reconciliation worksheet: which balances there are, and the simulated pan.

The pharmacist puts the pump reservoir (or bottle) on the balance and presses "read balance": the
page writes a weighing request (``dispensing.weighing.request_weighing``) and polls it; the device
service of the balance's counter reads ONE stable weight in grams through the MT-SICS driver and
reports it (``devices.weighing``). This module never opens a port: the web worker does not block on
a serial line. The reconciliation service turns grams into millilitres with the lot's density.

A ``sim://`` balance (the demo and the tests) is an MT-SICS simulator on a pty kept per device in
the process that reads it (``devices.weighing.simulated_balance``). In single-PC mode that is this
process, so the page's simulated-pan control (``place_on_simulated_pan``) puts the load where the
in-process balance service reads it. With an agent on the counter PC the simulator lives in the
agent: the control is not offered for such a counter (``is_simulated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.simulators import MtSicsSimulator
from devices.weighing import simulated_balance, stop_simulated_balances
from dispensing.models import (
    Device,
    DeviceKind,
    Location,
    LocationKind,
    WeighingRequest,
    WeighingState,
)


class BalanceUnavailable(Exception):
    """The simulated pan cannot take that load (or the balance is not simulated)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code


@dataclass(frozen=True)
class Reading:
    """A completed weighing request, as the page shows it."""

    device_code: str
    grams: Decimal
    serial_number: str | None = None

    @classmethod
    def of(cls, request: WeighingRequest) -> Reading:
        assert request.state is WeighingState.COMPLETED and request.grams is not None
        return cls(request.device.code, shown_grams(request.grams), request.device_serial)


def shown_grams(grams: Decimal) -> Decimal:
    """The stored weight (to the microgram) without the storage's trailing zeros, but with at least
    two decimals as a balance shows it: 987.600000 → 987.60. The value is unchanged."""
    normalized = grams.normalize()
    return normalized if normalized.as_tuple().exponent <= -2 else grams.quantize(Decimal("0.01"))


def balances_of(session: Session, clinic_id: int) -> list[Device]:
    """The clinic's active balances, by code."""
    return list(session.scalars(select(Device).where(
        Device.clinic_id == clinic_id, Device.kind == DeviceKind.BALANCE, Device.active.is_(True)
    ).order_by(Device.code)))


def default_balance(location: Location, balances: list[Device]) -> Device | None:
    """The balance to use for ``location``: the one at the pump's counter, else the first."""
    if location.kind is LocationKind.PUMP and location.device is not None:
        for device in balances:
            if device.counter_id is not None and device.counter_id == location.device.counter_id:
                return device
    return balances[0] if balances else None


def simulator_for(device: Device) -> MtSicsSimulator:
    """This process's simulator of a ``sim://mt-sics`` balance (started on first use)."""
    return simulated_balance(device.id, device.serial_number)


def is_simulated(device: Device) -> bool:
    """True for a ``sim://`` MT-SICS balance read in this process (its counter has no agent): only
    such a balance has a pan the page may load."""
    return (device.kind is DeviceKind.BALANCE and device.driver == "mt-sics" and device.port_url.startswith("sim://")
            and (device.counter is None or device.counter.agent_token_hash is None))


def place_on_simulated_pan(device: Device, grams: Decimal) -> None:
    """The simulated stand-in for putting the reservoir on the pan: set the simulator's load
    (``load_g``, its own knob); reading it still goes through the real driver, in the counter's
    device service. Raises BalanceUnavailable (BALANCE_NOT_SIMULATED, SIMULATED_LOAD_INVALID)."""
    if not is_simulated(device) or not device.active:
        raise BalanceUnavailable("BALANCE_NOT_SIMULATED")
    simulator = simulator_for(device)
    if not grams.is_finite() or grams < 0 or grams > simulator.capacity_g:
        raise BalanceUnavailable("SIMULATED_LOAD_INVALID")
    simulator.load_g = grams


def stop_simulators() -> None:
    stop_simulated_balances()
