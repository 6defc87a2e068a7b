"""Moving stock: bottles onto and off pumps, transfers, spills, priming and calibration liquid,
returns, destruction and signed corrections; and what the dose path books.

Rules enforced here, once:
- a pump holds one open bottle at a time (also a partial unique index), and receives stock only
  by attaching a bottle; a bottle leaves a pump only by detaching;
- nothing leaves quarantine except by the signed decision on its current stay
  (``dispensing.stock.quarantine``): a release books its own transfer to a safe; a return to the
  supplier only when the decision is to keep it for return, a destruction only when it is to keep
  it for destruction. A plain transfer or a waste line out of quarantine is refused; a signed
  correction of a line's quantity is not an exit and stays possible;
- expired lots, lots without a verified concentration (liquids) and quarantined stock never go
  to a pump or counter shelf, and are never dispensed;
- a line may not take more from a location than the ledger holds there, except lines booked from
  what a device delivered (doses, priming, calibration): the liquid is gone either way and the
  close finds the difference;
- a correction is a new signed line referencing the line it corrects, never an edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.accounts import reauthenticate
from dispensing.clock import business_date, utcnow
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.models import (
    Calibration,
    Clinic,
    Container,
    ContainerAttachment,
    DestructionLine,
    DestructionRecord,
    Dose,
    DoseKind,
    DoseState,
    Location,
    LocationKind,
    Lot,
    MovementKind,
    Product,
    ProductKind,
    QuarantineDecision,
    QuarantineOutcome,
    Reconciliation,
    ReconciliationStatus,
    Role,
    StockMovement,
    User,
)
from dispensing.permissions import require_role
from dispensing.stock.ledger import (
    DEVICE_KINDS,
    PATIENT_KINDS,
    ZERO,
    append_line,
    balances_by_location,
    item_balances,
    ledger_quantity,
    lock_locations,
    require_open_day,
)
from dispensing.stock.signatures import (
    Cosigner,
    can_record_waste,
    require_same_clinic,
    resolve_cosigner,
    sign,
)

DOSE_KIND_TO_MOVEMENT = {
    DoseKind.OBSERVED: MovementKind.DOSE,
    DoseKind.COMPLETION: MovementKind.DOSE,
    DoseKind.TAKE_HOME: MovementKind.TAKE_HOME,
    DoseKind.REPLACEMENT: MovementKind.REPLACEMENT,
}
ISSUE_LOCATIONS = frozenset({LocationKind.PUMP, LocationKind.COUNTER})


# ---------------------------------------------------------------------------------------------
# Lookups


def _context(session: Session, user: User, now: datetime | None) -> tuple[Clinic, datetime, date]:
    now = now or utcnow()
    clinic = session.get(Clinic, user.clinic_id)
    return clinic, now, business_date(now, clinic.timezone)


def _location(locations: dict[int, Location], location_id: int | None, user: User) -> Location:
    location = locations.get(location_id) if location_id is not None else None
    if location is None:
        raise NotFound("location", code="LOCATION_NOT_FOUND")
    require_same_clinic(user, location.clinic_id)
    return location


def _container(session: Session, *, container_id: int | None = None, label_code: str | None = None) -> Container:
    container = None
    if container_id is not None:
        container = session.get(Container, container_id)
    elif label_code:
        container = session.scalar(select(Container).where(Container.label_code == label_code.strip().upper()))
    if container is None:
        raise NotFound("container", code="CONTAINER_NOT_FOUND")
    return container


def _lot(session: Session, lot_id: int | None) -> Lot:
    lot = session.get(Lot, lot_id) if lot_id is not None else None
    if lot is None:
        raise NotFound("lot", code="LOT_NOT_FOUND")
    return lot


def open_attachment(session: Session, location_id: int) -> ContainerAttachment | None:
    """Return the bottle open on a pump (its attachment), or None."""
    return session.scalar(
        select(ContainerAttachment).where(
            ContainerAttachment.location_id == location_id, ContainerAttachment.detached_at.is_(None)
        )
    )


def require_issuable(lot: Lot, product: Product, day: date, source: Location | None = None) -> None:
    """Raise ValidationFailed unless ``lot`` may go to a pump or counter, or be dispensed, on ``day``:
    STOCK_QUARANTINED, LOT_EXPIRED, CONCENTRATION_NOT_VERIFIED."""
    if source is not None and source.kind is LocationKind.QUARANTINE:
        raise ValidationFailed("stock in quarantine", code="STOCK_QUARANTINED")
    if lot.expiry_date < day:
        raise ValidationFailed("lot expired", code="LOT_EXPIRED", expiry_date=lot.expiry_date)
    if product.kind is ProductKind.LIQUID and (
        lot.concentration_mg_per_ml is None or lot.concentration_verified_at is None
    ):
        raise ValidationFailed("concentration not verified", code="CONCENTRATION_NOT_VERIFIED")


def _available(session: Session, location_id: int, product_id: int, lot_id: int, container_id: int | None,
               day: date) -> Decimal:
    return item_balances(session, location_id, product_id, day).get((lot_id, container_id), ZERO)


def _require_available(session: Session, location: Location, product_id: int, lot_id: int,
                       container_id: int | None, quantity: Decimal, day: date) -> None:
    held = _available(session, location.id, product_id, lot_id, container_id, day)
    if quantity > held:
        raise ValidationFailed("not that much stock here", code="INSUFFICIENT_STOCK", available=held)


# Lines that bring stock itself into quarantine, starting a stay there (a correction changes a
# quantity, not a stay).
QUARANTINE_ENTRY_KINDS = (MovementKind.RECEIPT, MovementKind.TRANSFER)


def quarantine_entry_line(session: Session, location_id: int, lot_id: int,
                          container_id: int | None) -> StockMovement | None:
    """Return the last line that brought this bottle (or the lot's loose stock) into
    ``location_id``: the line that began its current stay there."""
    m = StockMovement
    return session.scalar(
        select(m).where(m.to_location_id == location_id, m.lot_id == lot_id, m.kind.in_(QUARANTINE_ENTRY_KINDS),
                        m.container_id == container_id if container_id is not None else m.container_id.is_(None))
        .order_by(m.id.desc()).limit(1)
    )


def quarantine_decision_on(session: Session, entry: StockMovement | None) -> QuarantineDecision | None:
    """Return the signed decision on the stay that ``entry`` began (None while undecided)."""
    if entry is None:
        return None
    return session.scalar(select(QuarantineDecision).where(QuarantineDecision.entry_movement_id == entry.id))


def require_quarantine_exit(session: Session, location: Location, lot: Lot, container: Container | None,
                            outcome: QuarantineOutcome) -> None:
    """Refuse taking stock out of a quarantine location unless the signed decision on its current
    stay is ``outcome`` (RETURN_TO_SUPPLIER for a return, DESTRUCTION for a destruction). Other
    locations pass. Raises ValidationFailed: QUARANTINE_DECISION_REQUIRED while nobody has decided
    on the stay, QUARANTINE_DECISION_MISMATCH when the decision says something else (``outcome``
    names it). Call under the location's lock."""
    if location.kind is not LocationKind.QUARANTINE:
        return
    container_id = container.id if container is not None else None
    entry = quarantine_entry_line(session, location.id, lot.id, container_id)
    decision = quarantine_decision_on(session, entry)
    item = {"lot_number": lot.lot_number, "label_code": container.label_code if container is not None else None}
    if decision is None:
        raise ValidationFailed("quarantined stock needs a signed decision first",
                               code="QUARANTINE_DECISION_REQUIRED", **item)
    if decision.outcome is not outcome:
        raise ValidationFailed("the signed decision on this quarantined stock says otherwise",
                               code="QUARANTINE_DECISION_MISMATCH", outcome=decision.outcome.value,
                               decision_id=decision.id, **item)


@dataclass(frozen=True)
class BottleSuggestion:
    container_id: int
    label_code: str
    lot_id: int
    lot_number: str
    expiry_date: date
    location_id: int
    balance: Decimal
    opened: bool


def suggest_bottles(session: Session, *, clinic_id: int, product_id: int, day: date) -> list[BottleSuggestion]:
    """Return the bottles that may go to a pump on ``day``, first-expiry first-out: earliest
    expiry first, an opened bottle before a sealed one of the same expiry, then by label."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound("product", code="PRODUCT_NOT_FOUND")
    safes = session.scalars(
        select(Location).where(Location.clinic_id == clinic_id, Location.kind == LocationKind.SAFE,
                               Location.active.is_(True))
    ).all()
    held: dict[int, tuple[int, Decimal]] = {}
    for safe in safes:
        for (_lot_id, container_id), amount in item_balances(session, safe.id, product_id, day).items():
            if container_id is not None and amount > 0:
                held[container_id] = (safe.id, amount)
    if not held:
        return []
    containers = session.scalars(select(Container).where(Container.id.in_(list(held)))).all()
    lots = {lot.id: lot for lot in session.scalars(select(Lot).where(Lot.id.in_({c.lot_id for c in containers})))}
    attached_before = set(session.scalars(
        select(ContainerAttachment.container_id).where(ContainerAttachment.container_id.in_(list(held)))
    ))
    suggestions = []
    for container in containers:
        lot = lots[container.lot_id]
        try:
            require_issuable(lot, product, day)
        except ValidationFailed:
            continue
        location_id, amount = held[container.id]
        suggestions.append(BottleSuggestion(
            container.id, container.label_code, lot.id, lot.lot_number, lot.expiry_date, location_id, amount,
            container.id in attached_before,
        ))
    suggestions.sort(key=lambda s: (s.expiry_date, not s.opened, s.label_code))
    return suggestions


# ---------------------------------------------------------------------------------------------
# Pump bottles


def attach_container(
    session: Session, user: User, *, location_id: int, container_id: int | None = None,
    label_code: str | None = None, now: datetime | None = None,
) -> ContainerAttachment:
    """Move a bottle from the safe onto a pump (its whole content) and open it there.

    Raises PermissionDenied, NotFound (LOCATION_NOT_FOUND, CONTAINER_NOT_FOUND), ValidationFailed
    (NOT_A_PUMP, PRODUCT_KIND_MISMATCH, CONTAINER_EMPTY, CONTAINER_NOT_IN_SAFE, STOCK_QUARANTINED,
    LOT_EXPIRED, CONCENTRATION_NOT_VERIFIED), Conflict (PUMP_HAS_OPEN_BOTTLE, DAY_CLOSED).
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    container = _container(session, container_id=container_id, label_code=label_code)
    require_same_clinic(user, container.clinic_id)
    # Lock the pump and wherever the bottle is, then read its place again under the locks. A bottle
    # detached earlier may leave a residue at its pump until that pump's close: only what it holds
    # in a safe moves.
    held = {loc for loc, amount in balances_by_location(session, container_id=container.id).items() if amount > 0}
    locations = lock_locations(session, location_id, *held)
    pump = _location(locations, location_id, user)
    if pump.kind is not LocationKind.PUMP:
        raise ValidationFailed("not a pump", code="NOT_A_PUMP")
    held = {loc: amount for loc, amount in balances_by_location(session, container_id=container.id).items()
            if amount > 0}
    kinds = {loc: session.get(Location, loc).kind for loc in held}
    lot = container.lot
    product = session.get(Product, lot.product_id)
    if product.kind is not ProductKind.LIQUID:
        raise ValidationFailed("only liquid bottles go on a pump", code="PRODUCT_KIND_MISMATCH")
    if LocationKind.QUARANTINE in kinds.values():
        raise ValidationFailed("stock in quarantine", code="STOCK_QUARANTINED")
    in_safe = [loc for loc, kind in kinds.items() if kind is LocationKind.SAFE]
    if session.scalar(select(ContainerAttachment.id).where(ContainerAttachment.container_id == container.id,
                                                           ContainerAttachment.detached_at.is_(None))):
        raise ValidationFailed("bottle is open on a pump", code="CONTAINER_NOT_IN_SAFE")
    if not in_safe:
        raise ValidationFailed("bottle is empty" if not held else "bottle is not in a safe",
                               code="CONTAINER_EMPTY" if not held else "CONTAINER_NOT_IN_SAFE")
    if len(in_safe) != 1:  # pragma: no cover - a bottle moves whole between safes
        raise ValidationFailed("bottle is in more than one safe", code="CONTAINER_NOT_IN_SAFE")
    source = session.get(Location, in_safe[0])
    quantity = held[source.id]
    require_issuable(lot, product, today, source)
    if open_attachment(session, pump.id) is not None:
        raise Conflict("pump has an open bottle", code="PUMP_HAS_OPEN_BOTTLE")
    fefo = suggest_bottles(session, clinic_id=clinic.id, product_id=product.id, day=today)
    line = append_line(
        session, clinic_id=clinic.id, kind=MovementKind.TRANSFER, product_id=product.id, lot_id=lot.id,
        quantity=quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
        from_location_id=source.id, to_location_id=pump.id, container_id=container.id, reason="attach",
    )
    attachment = ContainerAttachment(
        clinic_id=clinic.id, container_id=container.id, location_id=pump.id, attached_at=now,
        attached_by_id=user.id, attach_movement_id=line.id,
    )
    try:
        with session.begin_nested():
            session.add(attachment)
            session.flush()
    except IntegrityError as exc:  # the partial unique index: another writer attached first
        raise Conflict("pump has an open bottle", code="PUMP_HAS_OPEN_BOTTLE") from exc
    audit.record(session, "stock.container.attached", actor_id=user.id, clinic_id=clinic.id, entity=attachment,
                 at=now, data={"label_code": container.label_code, "location_id": pump.id, "quantity": quantity,
                               "fefo_first": bool(fefo) and fefo[0].container_id == container.id})
    session.commit()
    return attachment


def detach_container(
    session: Session, user: User, *, location_id: int, remaining: Decimal, return_to_location_id: int | None = None,
    now: datetime | None = None,
) -> ContainerAttachment:
    """Take the open bottle off a pump. What is left in it (as measured, 0 when empty) goes back to
    the safe; any difference from the ledger stays at the pump for the close to find.

    Raises PermissionDenied, NotFound, ValidationFailed (NO_OPEN_BOTTLE, REMAINING_INVALID,
    RETURN_LOCATION_INVALID), Conflict (DAY_CLOSED).
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    locations = lock_locations(session, location_id, return_to_location_id)
    pump = _location(locations, location_id, user)
    attachment = open_attachment(session, pump.id)
    if attachment is None:
        raise ValidationFailed("no open bottle on this pump", code="NO_OPEN_BOTTLE")
    container = attachment.container
    if not isinstance(remaining, Decimal) or remaining < 0 or remaining > container.nominal_quantity:
        raise ValidationFailed("remaining must be between 0 and the bottle's nominal volume", code="REMAINING_INVALID")
    line = None
    if remaining > 0:
        if return_to_location_id is None:
            raise ValidationFailed("say where the bottle goes", code="RETURN_LOCATION_INVALID")
        target = _location(locations, return_to_location_id, user)
        if target.kind not in (LocationKind.SAFE, LocationKind.QUARANTINE):
            raise ValidationFailed("an opened bottle goes back to a safe or quarantine", code="RETURN_LOCATION_INVALID")
        line = append_line(
            session, clinic_id=clinic.id, kind=MovementKind.TRANSFER, product_id=container.lot.product_id,
            lot_id=container.lot_id, quantity=remaining, business_date=today, occurred_at=now,
            recorded_by_id=user.id, from_location_id=pump.id, to_location_id=target.id,
            container_id=container.id, reason="detach",
        )
    else:
        require_open_day(session, pump.id, container.lot.product_id, today)
    attachment.detached_at = now
    attachment.detached_by_id = user.id
    attachment.remaining = remaining
    attachment.detach_movement_id = line.id if line else None
    audit.record(session, "stock.container.detached", actor_id=user.id, clinic_id=clinic.id, entity=attachment,
                 at=now, data={"label_code": container.label_code, "remaining": remaining})
    session.commit()
    return attachment


# ---------------------------------------------------------------------------------------------
# Transfers, waste, returns, destruction


def _resolve_item(
    session: Session, location: Location, *, lot_id: int | None, container_id: int | None,
    quantity: Decimal | None, day: date,
) -> tuple[Lot, Container | None, Decimal]:
    """Return (lot, bottle, quantity) of what leaves ``location``: a named bottle (all of it
    unless a quantity is given), a lot's loose stock, or the pump's open bottle."""
    container = None
    if container_id is not None:
        container = _container(session, container_id=container_id)
        lot = container.lot
    elif lot_id is not None:
        lot = _lot(session, lot_id)
    elif location.kind is LocationKind.PUMP and (attachment := open_attachment(session, location.id)):
        container = attachment.container
        lot = container.lot
    else:
        raise ValidationFailed("name the lot or bottle", code="ITEM_REQUIRED")
    if quantity is None:
        if container is None:
            raise ValidationFailed("quantity required", code="QUANTITY_NOT_POSITIVE")
        quantity = _available(session, location.id, lot.product_id, lot.id, container.id, day)
        if quantity <= 0:
            raise ValidationFailed("bottle is not here", code="CONTAINER_NOT_HERE")
    return lot, container, ledger_quantity(quantity)


def transfer_stock(
    session: Session, user: User, *, from_location_id: int, to_location_id: int, lot_id: int | None = None,
    container_id: int | None = None, quantity: Decimal | None = None, reason: str | None = None,
    now: datetime | None = None,
) -> StockMovement:
    """Move stock between a safe, a counter shelf and quarantine (pumps: attach and detach).

    Raises PermissionDenied, NotFound, ValidationFailed (SAME_LOCATION, TRANSFER_NOT_ALLOWED,
    QUARANTINE_RELEASE_NOT_ALLOWED, INSUFFICIENT_STOCK, LOT_EXPIRED, …), Conflict (DAY_CLOSED).
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    locations = lock_locations(session, from_location_id, to_location_id)
    source = _location(locations, from_location_id, user)
    target = _location(locations, to_location_id, user)
    if source.id == target.id:
        raise ValidationFailed("same location", code="SAME_LOCATION")
    if LocationKind.PUMP in (source.kind, target.kind):
        raise ValidationFailed("pumps take and give bottles by attach and detach", code="TRANSFER_NOT_ALLOWED")
    if source.kind is LocationKind.QUARANTINE:
        raise ValidationFailed("quarantined stock is returned or destroyed", code="QUARANTINE_RELEASE_NOT_ALLOWED")
    lot, container, quantity = _resolve_item(session, source, lot_id=lot_id, container_id=container_id,
                                             quantity=quantity, day=today)
    product = session.get(Product, lot.product_id)
    if target.kind in ISSUE_LOCATIONS:
        require_issuable(lot, product, today, source)
    _require_available(session, source, product.id, lot.id, container.id if container else None, quantity, today)
    line = append_line(
        session, clinic_id=clinic.id, kind=MovementKind.TRANSFER, product_id=product.id, lot_id=lot.id,
        quantity=quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
        from_location_id=source.id, to_location_id=target.id, container_id=container.id if container else None,
        reason=reason,
    )
    audit.record(session, "stock.transferred", actor_id=user.id, clinic_id=clinic.id, entity=line, at=now,
                 data={"from": source.id, "to": target.id, "quantity": quantity})
    session.commit()
    return line


def record_waste(
    session: Session, user: User, *, location_id: int, quantity: Decimal, reason: str, password: str,
    witness: Cosigner | None, lot_id: int | None = None, container_id: int | None = None,
    now: datetime | None = None,
) -> StockMovement:
    """Record a witnessed spill or waste, signed by the person recording it and a witness.

    Raises PermissionDenied, ValidationFailed (REASON_REQUIRED, WITNESS_REQUIRED,
    COSIGNER_IS_SIGNER, INSUFFICIENT_STOCK, QUARANTINE_RELEASE_NOT_ALLOWED: nothing is wasted out of
    quarantine, …), ReauthenticationFailed, Conflict (DAY_CLOSED).
    """
    if not can_record_waste(user):
        require_role(user, Role.PHARMACIST, Role.NURSE)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    if not reason or not reason.strip():
        raise ValidationFailed("reason required", code="REASON_REQUIRED")
    location = _location(lock_locations(session, location_id), location_id, user)
    if location.kind is LocationKind.QUARANTINE:
        raise ValidationFailed("quarantined stock is returned or destroyed", code="QUARANTINE_RELEASE_NOT_ALLOWED")
    lot, container, quantity = _resolve_item(session, location, lot_id=lot_id, container_id=container_id,
                                             quantity=quantity, day=today)
    _require_available(session, location, lot.product_id, lot.id, container.id if container else None,
                       quantity, today)
    reauthenticate(user, password)
    witness_user = resolve_cosigner(session, user, witness, required_code="WITNESS_REQUIRED")
    line = append_line(
        session, clinic_id=clinic.id, kind=MovementKind.WASTE, product_id=lot.product_id, lot_id=lot.id,
        quantity=quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
        from_location_id=location.id, container_id=container.id if container else None,
        reason=reason.strip(), witness_id=witness_user.id,
    )
    sign(session, user, action="stock.waste.signed", role="recorder", entity=line, clinic_id=clinic.id, at=now,
         data={"quantity": quantity})
    sign(session, witness_user, action="stock.waste.signed", role="witness", entity=line, clinic_id=clinic.id,
         at=now, data={"quantity": quantity})
    session.commit()
    return line


def _record_device_liquid(session: Session, user: User, kind: MovementKind, *, location_id: int,
                          quantity: Decimal, reason: str | None, now: datetime | None) -> StockMovement:
    if not can_record_waste(user):
        require_role(user, Role.PHARMACIST, Role.NURSE)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    pump = _location(lock_locations(session, location_id), location_id, user)
    line = _book_pump_liquid(session, kind, pump, quantity, recorded_by_id=user.id, at=now, day=today,
                             reason=reason)
    audit.record(session, f"stock.{kind.value}.recorded", actor_id=user.id, clinic_id=clinic.id, entity=line,
                 at=now, data={"quantity": line.quantity})
    session.commit()
    return line


def record_priming(session: Session, user: User, *, location_id: int, quantity: Decimal,
                   reason: str | None = None, now: datetime | None = None) -> StockMovement:
    """Record liquid used to prime a pump (from its open bottle). Raises ValidationFailed
    (NO_OPEN_BOTTLE, NOT_A_PUMP), Conflict (DAY_CLOSED)."""
    return _record_device_liquid(session, user, MovementKind.PRIMING, location_id=location_id,
                                 quantity=quantity, reason=reason, now=now)


def record_calibration_liquid(session: Session, user: User, *, location_id: int, quantity: Decimal,
                              reason: str | None = None, now: datetime | None = None) -> StockMovement:
    """Record liquid used to calibrate a pump (from its open bottle)."""
    return _record_device_liquid(session, user, MovementKind.CALIBRATION, location_id=location_id,
                                 quantity=quantity, reason=reason, now=now)


def return_to_supplier(
    session: Session, user: User, *, location_id: int, reason: str, password: str, lot_id: int | None = None,
    container_id: int | None = None, quantity: Decimal | None = None, now: datetime | None = None,
) -> StockMovement:
    """Return stock to the supplier from a safe, counter shelf or quarantine, signed. From
    quarantine only what the signed decision on its current stay keeps for return to the supplier.

    Raises PermissionDenied, ValidationFailed (REASON_REQUIRED, RETURN_LOCATION_INVALID,
    INSUFFICIENT_STOCK, QUARANTINE_DECISION_REQUIRED, QUARANTINE_DECISION_MISMATCH),
    ReauthenticationFailed, Conflict (DAY_CLOSED).
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    if not reason or not reason.strip():
        raise ValidationFailed("reason required", code="REASON_REQUIRED")
    location = _location(lock_locations(session, location_id), location_id, user)
    if location.kind is LocationKind.PUMP:
        raise ValidationFailed("detach the bottle first", code="RETURN_LOCATION_INVALID")
    lot, container, quantity = _resolve_item(session, location, lot_id=lot_id, container_id=container_id,
                                             quantity=quantity, day=today)
    _require_available(session, location, lot.product_id, lot.id, container.id if container else None,
                       quantity, today)
    require_quarantine_exit(session, location, lot, container, QuarantineOutcome.RETURN_TO_SUPPLIER)
    reauthenticate(user, password)
    line = append_line(
        session, clinic_id=clinic.id, kind=MovementKind.RETURN, product_id=lot.product_id, lot_id=lot.id,
        quantity=quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
        from_location_id=location.id, container_id=container.id if container else None, reason=reason.strip(),
    )
    sign(session, user, action="stock.return.signed", role="pharmacist", entity=line, clinic_id=clinic.id,
         at=now, data={"quantity": quantity})
    session.commit()
    return line


@dataclass(frozen=True)
class DestructionItem:
    location_id: int
    lot_id: int | None = None
    container_id: int | None = None
    quantity: Decimal | None = None


def destroy_stock(
    session: Session, user: User, *, record_no: str, method: str, reason: str, items: Sequence[DestructionItem],
    password: str, witness: Cosigner | None, now: datetime | None = None,
) -> DestructionRecord:
    """Destroy stock under a destruction record (biên bản hủy thuốc) signed by the pharmacist and
    a witness. From quarantine only what the signed decision on its current stay keeps for
    destruction. Raises PermissionDenied, ValidationFailed (DESTRUCTION_EMPTY, REASON_REQUIRED,
    WITNESS_REQUIRED, INSUFFICIENT_STOCK, QUARANTINE_DECISION_REQUIRED,
    QUARANTINE_DECISION_MISMATCH, …), Conflict (RECORD_NO_TAKEN, DAY_CLOSED),
    ReauthenticationFailed."""
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    if not items:
        raise ValidationFailed("nothing to destroy", code="DESTRUCTION_EMPTY")
    for text, code in ((record_no, "RECORD_NO_REQUIRED"), (method, "METHOD_REQUIRED"), (reason, "REASON_REQUIRED")):
        if not text or not text.strip():
            raise ValidationFailed("required", code=code)
    if session.scalar(select(func.count()).select_from(DestructionRecord).where(
            DestructionRecord.clinic_id == clinic.id, DestructionRecord.record_no == record_no.strip())):
        raise Conflict("record number taken", code="RECORD_NO_TAKEN")
    locations = lock_locations(session, *(item.location_id for item in items))
    reauthenticate(user, password)
    witness_user = resolve_cosigner(session, user, witness, required_code="WITNESS_REQUIRED")
    record = DestructionRecord(
        clinic_id=clinic.id, record_no=record_no.strip(), business_date=today, destroyed_at=now,
        method=method.strip(), reason=reason.strip(), pharmacist_id=user.id, witness_id=witness_user.id,
    )
    session.add(record)
    session.flush()
    for item in items:
        location = _location(locations, item.location_id, user)
        if location.kind is LocationKind.PUMP:
            raise ValidationFailed("detach the bottle first", code="DESTRUCTION_LOCATION_INVALID")
        lot, container, quantity = _resolve_item(session, location, lot_id=item.lot_id,
                                                 container_id=item.container_id, quantity=item.quantity, day=today)
        _require_available(session, location, lot.product_id, lot.id, container.id if container else None,
                           quantity, today)
        require_quarantine_exit(session, location, lot, container, QuarantineOutcome.DESTRUCTION)
        line = append_line(
            session, clinic_id=clinic.id, kind=MovementKind.DESTRUCTION, product_id=lot.product_id, lot_id=lot.id,
            quantity=quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
            from_location_id=location.id, container_id=container.id if container else None,
            reason=f"{record.record_no}", witness_id=witness_user.id,
        )
        session.add(DestructionLine(record_id=record.id, movement_id=line.id))
    session.flush()
    for signer, role in ((user, "pharmacist"), (witness_user, "witness")):
        sign(session, signer, action="stock.destruction.signed", role=role, entity=record, clinic_id=clinic.id,
             at=now, data={"record_no": record.record_no, "lines": len(items)})
    session.commit()
    return record


# ---------------------------------------------------------------------------------------------
# Corrections


def net_of(session: Session, line: StockMovement) -> Decimal:
    """Return a line's quantity with its corrections applied (same way adds, swapped takes back)."""
    net = line.quantity
    for correction in session.scalars(select(StockMovement).where(StockMovement.corrects_id == line.id)):
        same_way = (correction.from_location_id, correction.to_location_id) == (
            line.from_location_id, line.to_location_id)
        net += correction.quantity if same_way else -correction.quantity
    return net


def _require_bottle_here(session: Session, original: StockMovement, locations: dict[int, Location]) -> None:
    """A correction of a bottle's line changes the bottle where it is now: refuse it once the
    bottle has moved on from the line's location (a pump excepted: its residue is the close's)."""
    place = original.to_location_id if original.to_location_id is not None else original.from_location_id
    if locations[place].kind is LocationKind.PUMP:
        return
    held = balances_by_location(session, container_id=original.container_id)
    if held.get(place, ZERO) <= 0:
        raise ValidationFailed("the bottle has moved on", code="CORRECTION_NOT_ALLOWED")


def correct_movement(
    session: Session, user: User, *, movement_id: int, delta: Decimal, reason: str, password: str,
    witness: Cosigner | None = None, now: datetime | None = None,
) -> StockMovement:
    """Book a signed correction line dated today for ``movement_id``: ``delta`` > 0 adds to it,
    < 0 takes part of it back. When the corrected line lies on an earlier day (a closed one
    included) the correction is an amendment: ``amends_date`` names that day, which stays as closed.

    Raises PermissionDenied, NotFound (MOVEMENT_NOT_FOUND), ValidationFailed (CORRECTION_ZERO,
    CORRECTION_OF_CORRECTION, CORRECTION_EXCEEDS_ORIGINAL, REASON_REQUIRED, INSUFFICIENT_STOCK),
    Conflict (DAY_CLOSED), ReauthenticationFailed.
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    original = session.get(StockMovement, movement_id)
    if original is None or original.clinic_id != clinic.id:
        raise NotFound("movement", code="MOVEMENT_NOT_FOUND")
    if not reason or not reason.strip():
        raise ValidationFailed("reason required", code="REASON_REQUIRED")
    if not isinstance(delta, Decimal) or delta == 0:
        raise ValidationFailed("a correction changes the quantity", code="CORRECTION_ZERO")
    if original.kind is MovementKind.CORRECTION:
        raise ValidationFailed("correct the original line", code="CORRECTION_OF_CORRECTION")
    if original.kind is MovementKind.TRANSFER and original.container_id is not None:
        # A bottle moves whole: move it back instead; the close finds a wrong measured remainder.
        raise ValidationFailed("a bottle's move is not corrected", code="CORRECTION_NOT_ALLOWED")
    locations = lock_locations(session, original.from_location_id, original.to_location_id)
    if delta < 0 and net_of(session, original) + delta < 0:
        raise ValidationFailed("takes back more than the line moved", code="CORRECTION_EXCEEDS_ORIGINAL")
    source_id, target_id = (
        (original.from_location_id, original.to_location_id) if delta > 0
        else (original.to_location_id, original.from_location_id)
    )
    quantity = ledger_quantity(abs(delta), code="CORRECTION_ZERO")
    if original.container_id is not None:
        _require_bottle_here(session, original, locations)
    if source_id is not None and original.kind not in DEVICE_KINDS | {MovementKind.ADJUSTMENT}:
        _require_available(session, locations[source_id], original.product_id, original.lot_id,
                           original.container_id, quantity, today)
    reauthenticate(user, password)
    witness_user = resolve_cosigner(session, user, witness, required_code="WITNESS_REQUIRED") if witness else None
    line = append_line(
        session, clinic_id=clinic.id, kind=MovementKind.CORRECTION, product_id=original.product_id,
        lot_id=original.lot_id, quantity=quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
        from_location_id=source_id, to_location_id=target_id, container_id=original.container_id,
        dose_id=original.dose_id, corrects_id=original.id,
        amends_date=original.business_date if original.business_date != today else None,
        reason=reason.strip(), witness_id=witness_user.id if witness_user else None,
    )
    data = {"corrects": original.id, "delta": delta, "amends_date": line.amends_date}
    sign(session, user, action="stock.correction.signed", role="pharmacist", entity=line, clinic_id=clinic.id,
         at=now, data=data)
    if witness_user is not None:
        sign(session, witness_user, action="stock.correction.signed", role="witness", entity=line,
             clinic_id=clinic.id, at=now, data=data)
    session.commit()
    return line


# ---------------------------------------------------------------------------------------------
# What the dose path books (inside its own write transaction: these neither begin nor commit)


@dataclass(frozen=True)
class DispensingSource:
    """Where a dose comes from: the pump (or counter shelf), its open bottle and lot."""

    location: Location
    container: Container | None
    lot: Lot
    concentration_mg_per_ml: Decimal | None


def _pump_for_device(session: Session, device_id: int) -> Location:
    location = session.scalar(select(Location).where(Location.device_id == device_id).with_for_update())
    if location is None:
        raise ValidationFailed("device has no reservoir location", code="DOSE_NO_SOURCE")
    return location


def _counter_shelf(session: Session, clinic_id: int, location_id: int | None) -> Location:
    if location_id is not None:
        location = lock_locations(session, location_id).get(location_id)
        if location is None:
            raise NotFound("location", code="LOCATION_NOT_FOUND")
        return location
    shelves = session.scalars(
        select(Location).where(Location.clinic_id == clinic_id, Location.kind == LocationKind.COUNTER,
                               Location.active.is_(True)).with_for_update()
    ).all()
    if len(shelves) != 1:
        raise ValidationFailed("name the counter shelf", code="COUNTER_LOCATION_AMBIGUOUS")
    return shelves[0]


_UNREAD = object()
# A pump's reservoir location, row-locked (PostgreSQL: only the location row, FOR UPDATE OF), the
# bottle open on it and the last closed day of the product there (``last_closed_day``).
_PUMP_SOURCE = (
    select(Location, ContainerAttachment,
           select(func.max(Reconciliation.business_date))
           .where(Reconciliation.location_id == Location.id, Reconciliation.product_id == bindparam("product_id"),
                  Reconciliation.status == ReconciliationStatus.CLOSED)
           .correlate(Location).scalar_subquery())
    .outerjoin(ContainerAttachment, and_(ContainerAttachment.location_id == Location.id,
                                         ContainerAttachment.detached_at.is_(None)))
    .where(Location.device_id == bindparam("device_id"))
    .order_by(Location.id, ContainerAttachment.id)
    .limit(1)
    .with_for_update(of=Location)
)


def dispensing_source(
    session: Session, *, clinic_id: int, product_id: int, business_date: date, device_id: int | None = None,
    location_id: int | None = None,
) -> DispensingSource:
    """Return where a dose of ``product_id`` comes from on ``business_date`` and check it may be
    dispensed: for a liquid, the open bottle on the pump of ``device_id``; for unit-dose, the
    first-expiry lot held at the counter shelf. Row-locks the location (PostgreSQL) so a close
    and a dose serialise. Call at authorisation, inside the dose's write transaction.

    Raises ValidationFailed (DOSE_NO_SOURCE, NO_OPEN_BOTTLE, LOT_EXPIRED,
    CONCENTRATION_NOT_VERIFIED, STOCK_QUARANTINED, OUT_OF_STOCK), Conflict (DAY_CLOSED).
    """
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound("product", code="PRODUCT_NOT_FOUND")
    if product.kind is ProductKind.LIQUID:
        if device_id is None and location_id is None:
            raise ValidationFailed("which pump?", code="DOSE_NO_SOURCE")
        closed_through: date | None = None
        if device_id is not None:
            # The pump's location (row-locked), its open bottle and its last closed day: one query.
            row = session.execute(_PUMP_SOURCE, {"device_id": device_id, "product_id": product.id}).first()
            if row is None:
                raise ValidationFailed("device has no reservoir location", code="DOSE_NO_SOURCE")
            location, attachment, closed_through = row
        else:
            location = lock_locations(session, location_id).get(location_id)
            attachment = open_attachment(session, location.id) if location is not None else None
            closed_through = _UNREAD
        if location is None or location.clinic_id != clinic_id:
            raise ValidationFailed("no such pump", code="DOSE_NO_SOURCE")
        if attachment is None:
            raise ValidationFailed("no open bottle on this pump", code="NO_OPEN_BOTTLE")
        container = attachment.container
        lot = container.lot
        if lot.product_id != product.id:
            raise ValidationFailed("the open bottle is another product", code="PRODUCT_KIND_MISMATCH")
    else:
        location = _counter_shelf(session, clinic_id, location_id)
        held = [
            (session.get(Lot, lot_id), container_id, amount)
            for (lot_id, container_id), amount in item_balances(session, location.id, product.id, business_date).items()
            if amount > 0
        ]
        usable = [entry for entry in held if entry[0].expiry_date >= business_date]
        if not usable:
            raise ValidationFailed("none at the counter", code="OUT_OF_STOCK")
        lot, container_id, _amount = min(usable, key=lambda entry: (entry[0].expiry_date, entry[0].id))
        container = session.get(Container, container_id) if container_id else None
        closed_through = _UNREAD
    require_issuable(lot, product, business_date, location)
    if closed_through is _UNREAD:
        require_open_day(session, location.id, product.id, business_date)
    elif closed_through is not None and business_date <= closed_through:
        raise Conflict("day closed", code="DAY_CLOSED", location_id=location.id, business_date=business_date,
                       closed_through=closed_through)
    return DispensingSource(location, container, lot, lot.concentration_mg_per_ml)


def _booked_line():
    return (select(StockMovement.id)
            .where(StockMovement.dose_id == bindparam("dose_id"), StockMovement.corrects_id.is_(None),
                   StockMovement.kind.in_(list(PATIENT_KINDS)))
            .limit(1).scalar_subquery())


# book_dose for a pump's dose: the product, the pump's location (row-locked, FOR UPDATE OF), the
# dose's ledger line if already booked, and the product's last closed day at that location.
_PUMP_BOOKING = (
    select(Product, Location, _booked_line(),
           select(func.max(Reconciliation.business_date))
           .where(Reconciliation.location_id == Location.id, Reconciliation.product_id == Product.id,
                  Reconciliation.status == ReconciliationStatus.CLOSED)
           .correlate(Location, Product).scalar_subquery())
    .join(Location, Location.device_id == bindparam("device_id"))
    .where(Product.id == bindparam("product_id"))
    .order_by(Location.id)
    .limit(1)
    .with_for_update(of=Location)
)


def book_dose(session: Session, dose: Dose, *, location_id: int | None = None,
              at: datetime | None = None) -> StockMovement | None:
    """Book the ledger line of a finished dose (COMPLETED or PARTIAL) and return it; None when
    nothing was delivered. Idempotent: a dose already booked returns its line.

    The line leaves the pump of ``dose.device_id`` (liquids) or the counter shelf (unit-dose,
    ``location_id`` or the clinic's only one), from ``dose.container_id``/``dose.lot_id`` or the
    open bottle, recorded by the nurse, dated the business day the stock left: ``dose.business_date``
    for a dose taken at the counter, and for a take-home dose (whose business date is the day it
    covers) the day it was dispensed, ``dispensed_on``. Does not commit: call it in
    the transaction that writes the dose's final state. Raises ValidationFailed (DOSE_NOT_FINAL,
    DOSE_NO_SOURCE, NO_OPEN_BOTTLE), Conflict (DAY_CLOSED).
    """
    if dose.state not in (DoseState.COMPLETED, DoseState.PARTIAL):
        raise ValidationFailed("dose not finished", code="DOSE_NOT_FINAL")
    if dose.device_id is not None and location_id is None:
        # A pump's dose: the line already booked (if any), the product, the pump's location
        # (row-locked) and its last closed day, in one statement.
        row = session.execute(_PUMP_BOOKING, {"dose_id": dose.id, "product_id": dose.product_id,
                                              "device_id": dose.device_id}).first()
        if row is not None and row[0].kind is ProductKind.LIQUID:
            product, location, booked_id, closed_through = row
            if booked_id is not None:
                return session.get(StockMovement, booked_id)
            if dose.delivered_ml is None or dose.delivered_ml <= 0:
                return None
            if dose.lot_id is not None:
                day = dispensed_on(session, dose)
                if closed_through is not None and day <= closed_through:
                    raise Conflict("day closed", code="DAY_CLOSED", location_id=location.id, business_date=day,
                                   closed_through=closed_through)
                return append_line(
                    session, clinic_id=dose.clinic_id, kind=DOSE_KIND_TO_MOVEMENT[dose.kind], product_id=product.id,
                    lot_id=dose.lot_id, quantity=dose.delivered_ml, business_date=day,
                    occurred_at=dose.finished_at or at or utcnow(), recorded_by_id=dose.nurse_id,
                    from_location_id=location.id, container_id=dose.container_id, dose_id=dose.id,
                    witness_id=dose.witness_id, open_day_checked=True,
                )
    existing = session.scalar(
        select(StockMovement).where(StockMovement.dose_id == dose.id, StockMovement.corrects_id.is_(None),
                                    StockMovement.kind.in_(list(PATIENT_KINDS)))
    )
    if existing is not None:
        return existing
    product = session.get(Product, dose.product_id)
    quantity = dose.delivered_ml if product.kind is ProductKind.LIQUID else dose.delivered_units
    if quantity is None or quantity <= 0:
        return None
    if product.kind is ProductKind.LIQUID:
        if dose.device_id is None and location_id is None:
            raise ValidationFailed("dose has no pump", code="DOSE_NO_SOURCE")
        location = (_pump_for_device(session, dose.device_id) if dose.device_id is not None
                    else lock_locations(session, location_id)[location_id])
    else:
        location = _counter_shelf(session, dose.clinic_id, location_id)
    lot_id, container_id = dose.lot_id, dose.container_id
    if lot_id is None:
        source = dispensing_source(session, clinic_id=dose.clinic_id, product_id=product.id,
                                   business_date=dose.business_date, location_id=location.id)
        lot_id = source.lot.id
        container_id = source.container.id if source.container else None
    return append_line(
        session, clinic_id=dose.clinic_id, kind=DOSE_KIND_TO_MOVEMENT[dose.kind], product_id=product.id,
        lot_id=lot_id, quantity=quantity, business_date=dispensed_on(session, dose),
        occurred_at=dose.finished_at or at or utcnow(), recorded_by_id=dose.nurse_id,
        from_location_id=location.id, container_id=container_id, dose_id=dose.id, witness_id=dose.witness_id,
    )


def dispensed_on(session: Session, dose: Dose) -> date:
    """The business day the dose's stock left the pump or shelf. A take-home dose is filled on the
    day it was authorised (the device service takes it within minutes) for a later day it covers;
    every other dose is given on its own business date."""
    if dose.kind is DoseKind.TAKE_HOME and dose.requested_at is not None:
        return business_date(dose.requested_at, session.get(Clinic, dose.clinic_id).timezone)
    return dose.business_date


def _book_pump_liquid(session: Session, kind: MovementKind, pump: Location, quantity: Decimal, *,
                      recorded_by_id: int, at: datetime, day: date, reason: str | None) -> StockMovement:
    if pump.kind is not LocationKind.PUMP:
        raise ValidationFailed("not a pump", code="NOT_A_PUMP")
    attachment = open_attachment(session, pump.id)
    if attachment is None:
        raise ValidationFailed("no open bottle on this pump", code="NO_OPEN_BOTTLE")
    container = attachment.container
    return append_line(
        session, clinic_id=pump.clinic_id, kind=kind, product_id=container.lot.product_id,
        lot_id=container.lot_id, quantity=quantity, business_date=day, occurred_at=at,
        recorded_by_id=recorded_by_id, from_location_id=pump.id, container_id=container.id, reason=reason,
    )


def book_priming(session: Session, *, device_id: int, quantity: Decimal, recorded_by_id: int,
                 at: datetime | None = None, reason: str | None = None) -> StockMovement:
    """Book liquid used to prime the pump of ``device_id`` from its open bottle. Does not commit.
    Raises ValidationFailed (DOSE_NO_SOURCE, NO_OPEN_BOTTLE, QUANTITY_NOT_POSITIVE), Conflict
    (DAY_CLOSED)."""
    pump = _pump_for_device(session, device_id)
    at = at or utcnow()
    clinic = session.get(Clinic, pump.clinic_id)
    return _book_pump_liquid(session, MovementKind.PRIMING, pump, quantity, recorded_by_id=recorded_by_id,
                             at=at, day=business_date(at, clinic.timezone), reason=reason)


def book_calibration_liquid(session: Session, calibration: Calibration, *,
                            at: datetime | None = None) -> StockMovement | None:
    """Book the liquid a pump calibration used (``calibration.liquid_used_ml``) from the pump's
    open bottle; None when it used none. Does not commit; call once per calibration.
    Raises ValidationFailed (DOSE_NO_SOURCE, NO_OPEN_BOTTLE), Conflict (DAY_CLOSED)."""
    if not calibration.liquid_used_ml:
        return None
    pump = _pump_for_device(session, calibration.device_id)
    at = at or calibration.performed_at
    clinic = session.get(Clinic, pump.clinic_id)
    return _book_pump_liquid(session, MovementKind.CALIBRATION, pump, calibration.liquid_used_ml,
                             recorded_by_id=calibration.performed_by_id, at=at,
                             day=business_date(at, clinic.timezone),
                             reason=f"calibration {calibration.id}" if calibration.id else None)
