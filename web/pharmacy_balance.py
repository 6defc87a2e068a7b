"""Reading a counter's balance for the reconciliation worksheet, through the devices layer.

The pharmacist puts the pump reservoir (or bottle) on the balance and presses "read balance": the
page asks the balance for one stable weight in grams (MT-SICS ``S``), and the reconciliation service
turns grams into millilitres with the lot's density. Nothing here computes a volume.

A ``sim://`` balance (the demo and the tests) is an MT-SICS simulator on a pty, started once per
device in this process and kept, so what lies on its pan stays there between readings
(``simulator_for``); the real driver talks to it byte for byte as to hardware. A real port is opened
for the reading and closed again. The wait is bounded (``MAX_WAIT_S``) so a balance that never
settles cannot hold a web worker for long.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.errors import DeviceError
from devices.interfaces import Weighing
from devices.registry import DeviceConfig, open_device
from devices.simulators import MtSicsSimulator
from dispensing.models import Device, DeviceKind, Location, LocationKind

MAX_WAIT_S = 8.0
SETTING_KEYS = {"baudrate", "reply_timeout_s", "stable_timeout_s", "retry_interval_s", "query_retries"}

_simulators: dict[int, MtSicsSimulator] = {}
_lock = threading.Lock()


class BalanceUnavailable(Exception):
    """The balance gave no stable reading (not connected, unstable, overloaded, wrong unit)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code


@dataclass(frozen=True)
class Reading:
    device_code: str
    grams: Decimal
    weighing: Weighing


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
    """The running simulator of a ``sim://mt-sics`` balance (started on first use)."""
    with _lock:
        simulator = _simulators.get(device.id)
        if simulator is None or not simulator.serving:
            # A stock-count balance: a full reservoir weighs a kilogram or more.
            simulator = MtSicsSimulator(model="XS6002S", capacity_g=Decimal("6100"), readability_g=Decimal("0.01"),
                                        serial_number=device.serial_number or "SIM").start()
            _simulators[device.id] = simulator
        return simulator


def is_simulated(device: Device) -> bool:
    """True for a ``sim://`` MT-SICS balance: only such a balance has a pan the page may load."""
    return device.kind is DeviceKind.BALANCE and device.driver == "mt-sics" and device.port_url.startswith("sim://")


def place_on_simulated_pan(device: Device, grams: Decimal) -> None:
    """The simulated stand-in for putting the reservoir on the pan: set the simulator's load
    (``load_g``, its own knob); reading it still goes through the real driver (``read_weight``).
    Raises BalanceUnavailable (BALANCE_NOT_SIMULATED, SIMULATED_LOAD_INVALID)."""
    if not is_simulated(device) or not device.active:
        raise BalanceUnavailable("BALANCE_NOT_SIMULATED")
    simulator = simulator_for(device)
    if not grams.is_finite() or grams < 0 or grams > simulator.capacity_g:
        raise BalanceUnavailable("SIMULATED_LOAD_INVALID")
    simulator.load_g = grams


def stop_simulators() -> None:
    with _lock:
        for simulator in _simulators.values():
            simulator.close()
        _simulators.clear()


def _config(device: Device) -> DeviceConfig:
    if device.driver != "mt-sics":
        raise BalanceUnavailable("BALANCE_DRIVER_UNSUPPORTED", device.driver)
    settings = {key: value for key, value in (device.settings or {}).items() if key in SETTING_KEYS}
    url = device.port_url
    if url.startswith("sim://"):
        url = simulator_for(device).url
    return DeviceConfig(counter_id=device.code, role="balance", driver="mt-sics", url=url, settings=settings)


def read_weight(device: Device) -> Reading:
    """Return one stable net weight from ``device``. Raises BalanceUnavailable."""
    if device.kind is not DeviceKind.BALANCE or not device.active:
        raise BalanceUnavailable("BALANCE_NOT_FOUND")
    config = _config(device)
    try:
        balance = open_device(config)
    except DeviceError as exc:
        raise BalanceUnavailable("BALANCE_UNAVAILABLE", type(exc).__name__) from exc
    try:
        timeout = min(float(config.driver_settings().stable_timeout_s), MAX_WAIT_S)
        weighing = balance.stable_weight(timeout)
    except DeviceError as exc:
        raise BalanceUnavailable("BALANCE_NO_STABLE_READING", type(exc).__name__) from exc
    finally:
        balance.close()
    if weighing.unit != "g" or not weighing.stable:
        raise BalanceUnavailable("BALANCE_NO_STABLE_READING", weighing.unit)
    return Reading(device.code, weighing.grams, weighing)
