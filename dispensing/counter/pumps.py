"""Whether a counter's pump can dispense now: the pump, the bottle open on it (lot and
concentration), its calibration and the application's ceiling."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing.counter.common import (
    calibration_problem,
    ceiling_ml,
    latest_calibration,
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
    device = session.scalar(
        select(Device)
        .where(Device.counter_id == counter.id, Device.kind == DeviceKind.PUMP, Device.active.is_(True))
        .order_by(Device.id)
        .limit(1)
    )
    if device is None:
        return PumpReadiness(counter, None, None, None, None, ("COUNTER_HAS_NO_PUMP",))
    problems: list[str] = []
    bottle = open_bottle(session, device.id)
    container, lot = bottle if bottle is not None else (None, None)
    if lot is None:
        problems.append("NO_OPEN_BOTTLE")
    elif lot.expiry_date < day:
        problems.append("LOT_EXPIRED")
    elif lot.concentration_mg_per_ml is None or lot.concentration_verified_at is None:
        problems.append("CONCENTRATION_NOT_VERIFIED")
    calibration = latest_calibration(session, device.id, now)
    problem = calibration_problem(calibration, now)
    if problem is not None:
        problems.append(problem)
    return PumpReadiness(counter, device, container, lot, calibration, tuple(problems))


def require_ready(readiness: PumpReadiness) -> PumpReadiness:
    """Raise Conflict with the first problem's code unless the pump can dispense."""
    if readiness.problems:
        raise Conflict("pump not ready", code=readiness.problems[0], problems=list(readiness.problems))
    return readiness
