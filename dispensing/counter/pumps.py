"""Whether a counter's pump can dispense now: the pump, the bottle open on it (lot and
concentration), its calibration and the application's ceiling."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session, aliased

from dispensing.counter.common import (
    CALIBRATION_SKEW,
    calibration_problem,
    ceiling_ml,
    resolution_ml,
)
from dispensing.errors import Conflict
from dispensing.models import (
    Calibration,
    Container,
    ContainerAttachment,
    Counter,
    Device,
    DeviceKind,
    Location,
    Lot,
    Product,
)

_LatestCalibration = aliased(Calibration)
# The counter, its active pump, the bottle open on the pump (container, lot, product) and the
# pump's latest calibration performed by ``calibrated_by``: what ``get_counter``, ``counter_pump``,
# ``open_bottle_product`` and ``latest_calibration`` read, in one statement (built once; the
# values are bound parameters, so the compiled form is reused).
_PUMP_STATE = (
    select(Counter, Device, Container, Lot, Product, Calibration)
    .outerjoin(Device, and_(Device.counter_id == Counter.id, Device.kind == DeviceKind.PUMP, Device.active.is_(True)))
    .outerjoin(Location, Location.device_id == Device.id)
    .outerjoin(ContainerAttachment, and_(ContainerAttachment.location_id == Location.id,
                                         ContainerAttachment.detached_at.is_(None)))
    .outerjoin(Container, Container.id == ContainerAttachment.container_id)
    .outerjoin(Lot, Lot.id == Container.lot_id)
    .outerjoin(Product, Product.id == Lot.product_id)
    .outerjoin(Calibration, Calibration.id == (
        select(_LatestCalibration.id)
        .where(_LatestCalibration.device_id == Device.id,
               _LatestCalibration.performed_at <= bindparam("calibrated_by", type_=Calibration.performed_at.type))
        .order_by(_LatestCalibration.performed_at.desc(), _LatestCalibration.id.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()))
    .where(Counter.id == bindparam("counter_id"))
    # The first active pump (as counter_pump), and on it a location holding an open bottle first.
    .order_by(Device.id, ContainerAttachment.id.is_(None), ContainerAttachment.id)
    .limit(1)
)


@dataclass(frozen=True)
class PumpState:
    """One read of a counter's pump: None where there is none (no counter, no active pump…)."""

    counter: Counter | None
    device: Device | None
    container: Container | None
    lot: Lot | None
    product: Product | None
    calibration: Calibration | None


def pump_state(session: Session, counter_id: int, at: datetime) -> PumpState:
    """Return the counter, its active pump, the open bottle with its lot and product, and the
    pump's latest calibration performed by ``at`` (plus the clock skew), in one query."""
    row = session.execute(_PUMP_STATE, {"counter_id": counter_id, "calibrated_by": at + CALIBRATION_SKEW}).first()
    if row is None:
        return PumpState(None, None, None, None, None, None)
    return PumpState(*row)


@dataclass(frozen=True)
class PumpReadiness:
    """What the counter screen shows about the pump, and why it cannot dispense (``problems``)."""

    counter: Counter
    device: Device | None
    container: Container | None
    lot: Lot | None
    calibration: Calibration | None
    problems: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.problems

    @property
    def concentration_mg_per_ml(self) -> Decimal | None:
        return self.lot.concentration_mg_per_ml if self.lot is not None else None

    @property
    def ceiling_ml(self) -> Decimal | None:
        return ceiling_ml(self.device) if self.device is not None else None

    @property
    def resolution_ml(self) -> Decimal | None:
        return resolution_ml(self.device) if self.device is not None else None


def open_bottle(session: Session, device_id: int) -> tuple[Container, Lot] | None:
    """Return the bottle open on the pump of ``device_id`` and its lot, in one query."""
    found = open_bottle_product(session, device_id)
    return found[:2] if found is not None else None


def open_bottle_product(session: Session, device_id: int) -> tuple[Container, Lot, Product] | None:
    """Return the bottle open on the pump of ``device_id``, its lot and the lot's product, in one
    query (authorising reads the product next; holding it keeps it in the session)."""
    row = session.execute(
        select(Container, Lot, Product)
        .join(ContainerAttachment, ContainerAttachment.container_id == Container.id)
        .join(Location, Location.id == ContainerAttachment.location_id)
        .join(Lot, Lot.id == Container.lot_id)
        .join(Product, Product.id == Lot.product_id)
        .where(Location.device_id == device_id, ContainerAttachment.detached_at.is_(None))
        .limit(1)
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


def pump_readiness(session: Session, counter: Counter, now: datetime, day: date) -> PumpReadiness:
    """Return the counter's pump state; never raises for a pump that is not ready."""
    return readiness_of(counter, pump_state(session, counter.id, now), now, day)


def readiness_of(counter: Counter, state: PumpState, now: datetime, day: date) -> PumpReadiness:
    """The readiness of ``counter``'s pump from a ``pump_state`` read."""
    device = state.device
    if device is None:
        return PumpReadiness(counter, None, None, None, None, ("COUNTER_HAS_NO_PUMP",))
    problems: list[str] = []
    container, lot = state.container, state.lot
    if lot is None:
        problems.append("NO_OPEN_BOTTLE")
    elif lot.expiry_date < day:
        problems.append("LOT_EXPIRED")
    elif lot.concentration_mg_per_ml is None or lot.concentration_verified_at is None:
        problems.append("CONCENTRATION_NOT_VERIFIED")
    calibration = state.calibration
    problem = calibration_problem(calibration, now)
    if problem is not None:
        problems.append(problem)
    return PumpReadiness(counter, device, container, lot, calibration, tuple(problems))


def require_ready(readiness: PumpReadiness) -> PumpReadiness:
    """Raise Conflict with the first problem's code unless the pump can dispense."""
    if readiness.problems:
        raise Conflict("pump not ready", code=readiness.problems[0], problems=list(readiness.problems))
    return readiness
