"""Quarantine decisions (khu biệt trữ): what happens to a bottle, or a lot's loose stock, held in
quarantine.

Stock in quarantine is never issued (``movements.require_issuable``). A decision, signed by the
pharmacist and the head of unit (role ``unit_head``), both re-authenticated, says what happens to it:
- release to stock: a transfer line back to a safe is booked with the decision, and the bottle may
  then go to a pump like any other;
- keep for return to the supplier, or keep for destruction: nothing moves; ``return_to_supplier``
  and ``destroy_stock`` (biên bản hủy thuốc) then take it from quarantine under their own records,
  each only what the decision on its current stay keeps for it
  (``movements.require_quarantine_exit``). Nothing else takes stock out of quarantine.

A decision is an append-only row tied to the ledger line that brought the item into quarantine
(``entry_movement_id``, unique): one decision per stay, so a second release, or a release after a
decision to destroy, is refused, by the database too when two people race. A bottle sent to
quarantine again later (a new entry line) gets a new decision. Whether something is in quarantine
is always read from the ledger, never from a flag. A bottle quarantined at receipt needs its
anomaly record countersigned by the head of unit before any decision.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispensing.accounts import reauthenticate
from dispensing.db import begin_write
from dispensing.errors import Conflict, ValidationFailed
from dispensing.models import (
    Container,
    Location,
    LocationKind,
    Lot,
    MovementKind,
    QuarantineDecision,
    QuarantineOutcome,
    ReceiptAnomaly,
    Role,
    StockMovement,
    User,
)
from dispensing.permissions import require_role
from dispensing.stock.ledger import ZERO, append_line, item_balances, lock_locations
from dispensing.stock.movements import _container, _context, _location, _lot
from dispensing.stock.movements import quarantine_decision_on as _decision_on
from dispensing.stock.movements import quarantine_entry_line as _entry_line
from dispensing.stock.signatures import Cosigner, require_same_clinic, resolve_unit_head, sign


@dataclass(frozen=True)
class QuarantinedItem:
    """One bottle, or a lot's loose stock, the ledger holds in quarantine, with its decision."""

    location_id: int
    lot_id: int
    lot_number: str
    expiry_date: date
    container_id: int | None
    label_code: str | None
    quantity: Decimal
    entry_movement_id: int | None
    anomaly_id: int | None
    # False while the anomaly record behind the quarantine waits for the head of unit.
    anomaly_signed: bool
    decision: QuarantineDecision | None


def _quarantine_locations(session: Session, clinic_id: int) -> list[Location]:
    return list(session.scalars(
        select(Location).where(Location.clinic_id == clinic_id, Location.kind == LocationKind.QUARANTINE)
        .order_by(Location.id)
    ))


def _anomaly_for(session: Session, entry: StockMovement | None) -> ReceiptAnomaly | None:
    """The anomaly record that sent a bottle to quarantine at receipt (None for a later transfer)."""
    if entry is None or entry.kind is not MovementKind.RECEIPT or entry.container_id is None:
        return None
    return session.scalar(
        select(ReceiptAnomaly).where(ReceiptAnomaly.container_id == entry.container_id)
        .order_by(ReceiptAnomaly.id.desc()).limit(1)
    )


def quarantined_items(session: Session, *, clinic_id: int) -> list[QuarantinedItem]:
    """Return what the ledger holds in the clinic's quarantine now, each item with its anomaly
    record's state and its decision (None while undecided), first-expiry first."""
    m = StockMovement
    items = []
    for location in _quarantine_locations(session, clinic_id):
        held: dict[tuple[int, int | None], Decimal] = defaultdict(lambda: ZERO)
        for side, sign_ in ((m.to_location_id, 1), (m.from_location_id, -1)):
            for lot_id, container_id, amount in session.execute(
                select(m.lot_id, m.container_id, func.sum(m.quantity)).where(side == location.id)
                .group_by(m.lot_id, m.container_id)
            ):
                held[(lot_id, container_id)] += sign_ * amount
        for (lot_id, container_id), amount in held.items():
            if amount <= 0:
                continue
            lot = session.get(Lot, lot_id)
            container = session.get(Container, container_id) if container_id is not None else None
            entry = _entry_line(session, location.id, lot_id, container_id)
            anomaly = _anomaly_for(session, entry)
            items.append(QuarantinedItem(
                location.id, lot_id, lot.lot_number, lot.expiry_date, container_id,
                container.label_code if container else None, amount, entry.id if entry else None,
                anomaly.id if anomaly else None, anomaly is None or anomaly.fully_signed, _decision_on(session, entry),
            ))
    items.sort(key=lambda item: (item.expiry_date, item.label_code or "", item.lot_id))
    return items


@dataclass(frozen=True)
class _Held:
    location: Location
    container: Container | None
    quantity: Decimal
    entry: StockMovement
    anomaly: ReceiptAnomaly | None


def _held_in_quarantine(session: Session, locations: list[Location], lot: Lot, container: Container | None,
                        day: date) -> list[_Held]:
    found = []
    for location in locations:
        for (lot_id, container_id), amount in item_balances(session, location.id, lot.product_id, day).items():
            if lot_id != lot.id or amount <= 0 or (container is not None and container_id != container.id):
                continue
            entry = _entry_line(session, location.id, lot_id, container_id)
            if entry is None:  # only corrections ever put it here: no stay to decide on
                raise ValidationFailed("nothing entered quarantine", code="NOT_IN_QUARANTINE")
            bottle = container if container is not None else (
                session.get(Container, container_id) if container_id is not None else None)
            found.append(_Held(location, bottle, amount, entry, _anomaly_for(session, entry)))
    return found


def _already_decided(session: Session, container: Container | None, lot: Lot) -> QuarantineDecision | None:
    query = select(QuarantineDecision).where(QuarantineDecision.lot_id == lot.id)
    if container is not None:
        query = query.where(QuarantineDecision.container_id == container.id)
    return session.scalar(query.order_by(QuarantineDecision.id.desc()).limit(1))


def decide_quarantine(
    session: Session, user: User, *, outcome: QuarantineOutcome | str, reason: str, password: str,
    unit_head: Cosigner | None, container_id: int | None = None, label_code: str | None = None,
    lot_id: int | None = None, to_location_id: int | None = None, now: datetime | None = None,
) -> list[QuarantineDecision]:
    """Record a signed decision on a quarantined bottle (``container_id`` or ``label_code``) or on
    every bottle and the loose stock of a lot (``lot_id``) held in quarantine, and return the
    decisions (one per item). ``user`` is the pharmacist; ``unit_head`` the head of unit co-signing.
    A release moves each item whole to the safe ``to_location_id``.

    Raises PermissionDenied (not a pharmacist; UNIT_HEAD_ROLE_REQUIRED), NotFound
    (CONTAINER_NOT_FOUND, LOT_NOT_FOUND, LOCATION_NOT_FOUND), ValidationFailed
    (QUARANTINE_OUTCOME_INVALID, REASON_REQUIRED, ITEM_REQUIRED, RELEASE_LOCATION_INVALID,
    NOT_IN_QUARANTINE, ANOMALY_NOT_COUNTERSIGNED, UNIT_HEAD_REQUIRED, COSIGNER_IS_SIGNER),
    ReauthenticationFailed, Conflict (QUARANTINE_ALREADY_DECIDED, DAY_CLOSED).
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    clinic, now, today = _context(session, user, now)
    try:
        outcome = QuarantineOutcome(outcome)
    except ValueError as exc:
        raise ValidationFailed("unknown outcome", code="QUARANTINE_OUTCOME_INVALID") from exc
    if not reason or not reason.strip():
        raise ValidationFailed("reason required", code="REASON_REQUIRED")
    container = None
    if container_id is not None or label_code:
        container = _container(session, container_id=container_id, label_code=label_code)
        require_same_clinic(user, container.clinic_id)
        lot = container.lot
    elif lot_id is not None:
        lot = _lot(session, lot_id)
    else:
        raise ValidationFailed("name the bottle or lot", code="ITEM_REQUIRED")
    quarantines = _quarantine_locations(session, clinic.id)
    release = outcome is QuarantineOutcome.RELEASE
    locations = lock_locations(session, *(q.id for q in quarantines), to_location_id if release else None)
    target = None
    if release:
        if to_location_id is None:
            raise ValidationFailed("say which safe", code="RELEASE_LOCATION_INVALID")
        target = _location(locations, to_location_id, user)
        if target.kind is not LocationKind.SAFE:
            raise ValidationFailed("released stock goes to a safe", code="RELEASE_LOCATION_INVALID")
    held = _held_in_quarantine(session, quarantines, lot, container, today)
    if not held:
        earlier = _already_decided(session, container, lot)
        if earlier is not None:
            raise Conflict("already decided", code="QUARANTINE_ALREADY_DECIDED", outcome=earlier.outcome.value)
        raise ValidationFailed("not in quarantine", code="NOT_IN_QUARANTINE")
    for item in held:
        earlier = _decision_on(session, item.entry)
        if earlier is not None:
            raise Conflict("already decided", code="QUARANTINE_ALREADY_DECIDED", outcome=earlier.outcome.value)
        if item.anomaly is not None and not item.anomaly.fully_signed:
            raise ValidationFailed("the anomaly record waits for the head of unit",
                                   code="ANOMALY_NOT_COUNTERSIGNED", anomaly_id=item.anomaly.id)
    reauthenticate(user, password)
    head = resolve_unit_head(session, user, unit_head)

    decisions = []
    for item in held:
        line = None
        if release:
            line = append_line(
                session, clinic_id=clinic.id, kind=MovementKind.TRANSFER, product_id=lot.product_id, lot_id=lot.id,
                quantity=item.quantity, business_date=today, occurred_at=now, recorded_by_id=user.id,
                from_location_id=item.location.id, to_location_id=target.id,
                container_id=item.container.id if item.container else None,
                reason=f"quarantine release: {reason.strip()}", witness_id=head.id,
            )
        decision = QuarantineDecision(
            clinic_id=clinic.id, business_date=today, decided_at=now, outcome=outcome, lot_id=lot.id,
            container_id=item.container.id if item.container else None, location_id=item.location.id,
            quantity=item.quantity, entry_movement_id=item.entry.id, release_movement_id=line.id if line else None,
            anomaly_id=item.anomaly.id if item.anomaly else None, reason=reason.strip(), pharmacist_id=user.id,
            unit_head_id=head.id,
        )
        try:
            with session.begin_nested():
                session.add(decision)
                session.flush()
        except IntegrityError as exc:  # the unique entry line: another pair decided first
            raise Conflict("already decided", code="QUARANTINE_ALREADY_DECIDED") from exc
        data = {"outcome": outcome.value, "lot_number": lot.lot_number, "quantity": item.quantity,
                "label_code": item.container.label_code if item.container else None,
                "release_movement_id": line.id if line else None, "to_location_id": target.id if target else None}
        for signer, role in ((user, "pharmacist"), (head, "unit_head")):
            sign(session, signer, action="stock.quarantine.decided", role=role, entity=decision,
                 clinic_id=clinic.id, at=now, data=data)
        decisions.append(decision)
    session.commit()
    return decisions
