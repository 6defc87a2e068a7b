"""The controlled-drug ledger: writing lines, the §12 terms they fall in, balances and day locks.

Every quantity that enters or leaves a location is a ``StockMovement`` line; nothing is ever
updated or deleted (database triggers). A balance is therefore a sum of lines. To keep that sum
short, the close of a day writes a ``StockSnapshot`` of every lot/bottle at the location; a closed
day is locked (no line may be dated on or before it), so a balance is the snapshot of the last
closed day plus the lines dated after it.

A correction line has the locations of the line it corrects, either the same way round (it adds to
it) or swapped (it takes back part of it). It counts in the term of the line it corrects, with a
minus sign when it takes back.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from dispensing.errors import Conflict, ValidationFailed
from dispensing.models import (
    Location,
    MovementKind,
    Reconciliation,
    ReconciliationStatus,
    StockMovement,
    StockSnapshot,
)

ZERO = Decimal("0.000")
# The ledger keeps quantities to 1/1000 of the unit (µl for liquids).
LEDGER_QUANTUM = Decimal("0.001")

# Kinds by what they do to stock.
PATIENT_KINDS = frozenset({MovementKind.DOSE, MovementKind.TAKE_HOME, MovementKind.REPLACEMENT})
WASTE_KINDS = frozenset({MovementKind.WASTE, MovementKind.PRIMING, MovementKind.CALIBRATION})
OTHER_OUT_KINDS = frozenset({MovementKind.RETURN, MovementKind.DESTRUCTION})
# Lines booked from what a device delivered: they may take a bottle below what the ledger thought
# it held (the close then finds the surplus), so they are not refused for want of stock.
DEVICE_KINDS = PATIENT_KINDS | {MovementKind.PRIMING, MovementKind.CALIBRATION}


class Term(enum.StrEnum):
    """A term of the §12 formula. Inflow terms add to a balance, the others subtract."""

    RECEIVED = "received"
    TRANSFERRED_IN = "transferred_in"
    TRANSFERRED_OUT = "transferred_out"
    ISSUED = "issued"  # doses, take-home, replacements
    WASTE = "waste"  # witnessed spill, priming, calibration liquid
    OTHER_OUT = "other_out"  # return to the supplier, destruction
    LOSS = "loss"  # hao hụt (adjustment out)
    SURPLUS = "surplus"  # dư thừa (adjustment in)


INFLOW_TERMS = frozenset({Term.RECEIVED, Term.TRANSFERRED_IN, Term.SURPLUS})


def term_for(kind: MovementKind, enters: bool) -> Term:
    """Return the term a line of ``kind`` falls in for a location it enters (or leaves).

    Raises ValueError for a combination no service writes (e.g. a dose entering a location).
    """
    if kind is MovementKind.RECEIPT and enters:
        return Term.RECEIVED
    if kind is MovementKind.TRANSFER:
        return Term.TRANSFERRED_IN if enters else Term.TRANSFERRED_OUT
    if kind is MovementKind.ADJUSTMENT:
        return Term.SURPLUS if enters else Term.LOSS
    if not enters:
        if kind in PATIENT_KINDS:
            return Term.ISSUED
        if kind in WASTE_KINDS:
            return Term.WASTE
        if kind in OTHER_OUT_KINDS:
            return Term.OTHER_OUT
    raise ValueError(f"a {kind} line cannot {'enter' if enters else 'leave'} a location")


@dataclass
class Terms:
    """Totals of the §12 terms over some lines, signed as the terms are (a take-back is negative)."""

    values: dict[Term, Decimal] = field(default_factory=lambda: {term: ZERO for term in Term})
    # Lines of patient kinds by kind (dose / take_home / replacement), for the worksheet.
    issued_by_kind: dict[MovementKind, Decimal] = field(
        default_factory=lambda: {kind: ZERO for kind in sorted(PATIENT_KINDS)}
    )

    def __getitem__(self, term: Term) -> Decimal:
        return self.values[term]

    def add(self, term: Term, amount: Decimal, kind: MovementKind) -> None:
        self.values[term] += amount
        if term is Term.ISSUED:
            self.issued_by_kind[kind] += amount

    @property
    def net(self) -> Decimal:
        """What the lines did to the balance: inflow terms minus outflow terms."""
        return sum(
            (value if term in INFLOW_TERMS else -value for term, value in self.values.items()), ZERO
        )

    @property
    def adjusted(self) -> Decimal:
        """Adjustments as one signed figure: surplus minus loss."""
        return self.values[Term.SURPLUS] - self.values[Term.LOSS]


# ---------------------------------------------------------------------------------------------
# Writing lines


def ledger_quantity(value: Decimal, *, code: str = "QUANTITY_NOT_POSITIVE") -> Decimal:
    """Return ``value`` as a ledger quantity. Raises ValidationFailed when it is not a positive
    Decimal with at most three decimal places."""
    if isinstance(value, float) or not isinstance(value, Decimal | int):
        raise ValidationFailed("quantity must be a Decimal", code="QUANTITY_INVALID")
    value = Decimal(value)
    if not value.is_finite() or value <= 0:
        raise ValidationFailed("quantity must be positive", code=code)
    if value != value.quantize(LEDGER_QUANTUM):
        raise ValidationFailed("quantity has more than 3 decimal places", code="QUANTITY_PRECISION")
    return value


def append_line(
    session: Session,
    *,
    clinic_id: int,
    kind: MovementKind,
    product_id: int,
    lot_id: int,
    quantity: Decimal,
    business_date: date,
    occurred_at: datetime,
    recorded_by_id: int,
    from_location_id: int | None = None,
    to_location_id: int | None = None,
    container_id: int | None = None,
    dose_id: int | None = None,
    corrects_id: int | None = None,
    amends_date: date | None = None,
    reason: str | None = None,
    witness_id: int | None = None,
    open_day_checked: bool = False,
) -> StockMovement:
    """Add one ledger line and flush it. Raises ValidationFailed for a bad quantity and Conflict
    (DAY_CLOSED) when the day is already closed at either location (``open_day_checked``: the
    caller has checked that already, in the transaction, with the location row-locked)."""
    quantity = ledger_quantity(quantity)
    for location_id in (from_location_id, to_location_id):
        if location_id is not None and not open_day_checked:
            require_open_day(session, location_id, product_id, business_date)
    line = StockMovement(
        clinic_id=clinic_id,
        business_date=business_date,
        occurred_at=occurred_at,
        kind=kind,
        product_id=product_id,
        lot_id=lot_id,
        container_id=container_id,
        from_location_id=from_location_id,
        to_location_id=to_location_id,
        quantity=quantity,
        dose_id=dose_id,
        corrects_id=corrects_id,
        amends_date=amends_date,
        reason=reason,
        recorded_by_id=recorded_by_id,
        witness_id=witness_id,
    )
    session.add(line)
    session.flush()
    return line


def lock_locations(session: Session, *location_ids: int | None) -> dict[int, Location]:
    """Return the locations by id, row-locked in id order (PostgreSQL) so writers touching the
    same location serialise; SQLite writers already hold the database write lock."""
    ids = sorted({location_id for location_id in location_ids if location_id is not None})
    if not ids:
        return {}
    rows = session.scalars(
        select(Location).where(Location.id.in_(ids)).order_by(Location.id).with_for_update()
    ).all()
    return {row.id: row for row in rows}


# ---------------------------------------------------------------------------------------------
# Closed days


def last_closed_day(
    session: Session, location_id: int, product_id: int, *, on_or_before: date | None = None
) -> date | None:
    """Return the latest closed business day of ``product_id`` at ``location_id``."""
    query = select(func.max(Reconciliation.business_date)).where(
        Reconciliation.location_id == location_id,
        Reconciliation.product_id == product_id,
        Reconciliation.status == ReconciliationStatus.CLOSED,
    )
    if on_or_before is not None:
        query = query.where(Reconciliation.business_date <= on_or_before)
    return session.scalar(query)


def require_open_day(session: Session, location_id: int, product_id: int, business_date: date) -> None:
    """Raise Conflict(DAY_CLOSED) when ``business_date`` or a later day is closed at the location:
    a closed day never changes, so no line may be dated on or before it."""
    closed = last_closed_day(session, location_id, product_id)
    if closed is not None and business_date <= closed:
        raise Conflict(
            "day closed", code="DAY_CLOSED", location_id=location_id, business_date=business_date,
            closed_through=closed,
        )


def closed_days(
    session: Session, *, location_ids: Iterable[int] | None = None, on_or_before: date
) -> dict[tuple[int, int], date]:
    """Return {(location_id, product_id): last closed day on or before ``on_or_before``}."""
    query = (
        select(Reconciliation.location_id, Reconciliation.product_id, func.max(Reconciliation.business_date))
        .where(
            Reconciliation.status == ReconciliationStatus.CLOSED,
            Reconciliation.business_date <= on_or_before,
        )
        .group_by(Reconciliation.location_id, Reconciliation.product_id)
    )
    if location_ids is not None:
        query = query.where(Reconciliation.location_id.in_(list(location_ids)))
    return {(row[0], row[1]): row[2] for row in session.execute(query)}


# ---------------------------------------------------------------------------------------------
# Balances

Item = tuple[int, int | None]  # (lot_id, container_id)


def item_balances(session: Session, location_id: int, product_id: int, end_of: date) -> dict[Item, Decimal]:
    """Return the non-zero balance of every lot/bottle of ``product_id`` at ``location_id`` at the
    end of business day ``end_of``: the last snapshot on or before it plus the lines after it."""
    snapshot_day = last_closed_day(session, location_id, product_id, on_or_before=end_of)
    balances: dict[Item, Decimal] = defaultdict(lambda: ZERO)
    if snapshot_day is not None:
        for lot_id, container_id, balance in session.execute(
            select(StockSnapshot.lot_id, StockSnapshot.container_id, StockSnapshot.balance).where(
                StockSnapshot.location_id == location_id,
                StockSnapshot.product_id == product_id,
                StockSnapshot.business_date == snapshot_day,
            )
        ):
            balances[(lot_id, container_id)] += balance
    for side, sign in ((StockMovement.to_location_id, 1), (StockMovement.from_location_id, -1)):
        query = (
            select(StockMovement.lot_id, StockMovement.container_id, func.sum(StockMovement.quantity))
            .where(
                side == location_id,
                StockMovement.product_id == product_id,
                StockMovement.business_date <= end_of,
            )
            .group_by(StockMovement.lot_id, StockMovement.container_id)
        )
        if snapshot_day is not None:
            query = query.where(StockMovement.business_date > snapshot_day)
        for lot_id, container_id, total in session.execute(query):
            balances[(lot_id, container_id)] += sign * total
    return {item: value for item, value in balances.items() if value != 0}


def balance(
    session: Session,
    *,
    clinic_id: int | None = None,
    location_id: int | None = None,
    product_id: int | None = None,
    lot_id: int | None = None,
    container_id: int | None = None,
    end_of: date | None = None,
    at: datetime | None = None,
) -> Decimal:
    """Return the stock held, from the ledger, narrowed by any of clinic, location, product, lot
    and bottle: at the end of business day ``end_of``, at the instant ``at``, or now.

    With a clinic or a location, each location/product starts from the snapshot of its last
    closed day and adds the lines after it. For an instant, lines count when they occurred at or
    before it, and snapshots are used up to two days before it (a margin no timezone exceeds).
    """
    if end_of is not None and at is not None:
        raise ValueError("give end_of or at, not both")
    m = StockMovement
    filters = [
        (column, value)
        for column, value in ((m.product_id, product_id), (m.lot_id, lot_id), (m.container_id, container_id))
        if value is not None
    ]
    window = []
    if end_of is not None:
        window.append(m.business_date <= end_of)
    if at is not None:
        window.append(m.occurred_at <= at)

    if location_id is not None:
        location_ids = [location_id]
    elif clinic_id is not None:
        location_ids = list(session.scalars(select(Location.id).where(Location.clinic_id == clinic_id)))
    else:
        location_ids = None
    if not location_ids:
        if location_ids == []:
            return ZERO
        # Lot or bottle anywhere: its own lines (indexed) are short enough to add up directly.
        total = ZERO
        for side, sign in ((m.to_location_id, 1), (m.from_location_id, -1)):
            query = select(func.sum(m.quantity)).where(side.is_not(None), *window)
            for column, value in filters:
                query = query.where(column == value)
            total += sign * (session.scalar(query) or ZERO)
        return total

    cutoff = at.date() - timedelta(days=2) if at is not None else (end_of or date.max)
    closed = closed_days(session, location_ids=location_ids, on_or_before=cutoff)
    if product_id is not None:
        closed = {key: day for key, day in closed.items() if key[1] == product_id}
    total = ZERO
    if closed:
        snap = StockSnapshot
        query = select(func.sum(snap.balance)).where(
            or_(
                *(
                    and_(snap.location_id == loc, snap.product_id == prod, snap.business_date == day)
                    for (loc, prod), day in closed.items()
                )
            )
        )
        for column, value in zip((snap.product_id, snap.lot_id, snap.container_id),
                                 (product_id, lot_id, container_id), strict=True):
            if value is not None:
                query = query.where(column == value)
        total += session.scalar(query) or ZERO
    # Lines after each location/product's snapshot, all lines where it has none: one small query
    # per location, product and side, each an index range (location, business date).
    for loc in location_ids:
        since = {prod: day for (l2, prod), day in closed.items() if l2 == loc}
        if product_id is not None:
            slices = [(product_id, since.get(product_id))]
        else:
            slices = [(prod, day) for prod, day in since.items()] + [(None, None)]
        for prod, day in slices:
            for side, sign in ((m.to_location_id, 1), (m.from_location_id, -1)):
                query = select(func.sum(m.quantity)).where(side == loc, *window)
                if prod is not None:
                    query = query.where(m.product_id == prod)
                elif since:
                    query = query.where(m.product_id.not_in(list(since)))
                if day is not None:
                    query = query.where(m.business_date > day)
                for column, value in filters:
                    if column is not m.product_id:
                        query = query.where(column == value)
                total += sign * (session.scalar(query) or ZERO)
    return total


def balances_by_location(session: Session, *, container_id: int) -> dict[int, Decimal]:
    """Return {location_id: balance} of one bottle, locations where it is non-zero."""
    m = StockMovement
    result: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for side, sign in ((m.to_location_id, 1), (m.from_location_id, -1)):
        for loc, amount in session.execute(
            select(side, func.sum(m.quantity)).where(m.container_id == container_id, side.is_not(None)).group_by(side)
        ):
            result[loc] += sign * amount
    return {loc: value for loc, value in result.items() if value != 0}


def write_snapshot(
    session: Session, *, clinic_id: int, location_id: int, product_id: int, business_date: date,
    items: Mapping[Item, Decimal],
) -> None:
    """Store the end-of-day balance of every non-zero lot/bottle (called by the close)."""
    rows = [
        StockSnapshot(
            clinic_id=clinic_id, location_id=location_id, product_id=product_id, business_date=business_date,
            lot_id=lot_id, container_id=container_id, balance=value,
        )
        for (lot_id, container_id), value in sorted(items.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
        if value != 0
    ]
    session.add_all(rows)
    session.flush()


# ---------------------------------------------------------------------------------------------
# Terms of the §12 formula


def _grouped_lines(session: Session, where, extra_group=()):
    m = StockMovement
    o = aliased(StockMovement)
    columns = (
        *extra_group,
        m.kind,
        o.kind,
        m.from_location_id,
        m.to_location_id,
        o.from_location_id,
        o.to_location_id,
    )
    query = (
        select(*columns, func.sum(m.quantity))
        .select_from(m)
        .outerjoin(o, m.corrects_id == o.id)
        .where(*where)
        .group_by(*columns)
    )
    return session.execute(query)


def _root(kind, root_kind, m_from, m_to, o_from, o_to):
    """Return (root kind, root from, root to, sign) of a line: a correction counts in the term of
    the line it corrects, negative when it takes back (its locations are swapped)."""
    if root_kind is None:
        return MovementKind(kind), m_from, m_to, 1
    same_way = (m_from, m_to) == (o_from, o_to)
    return MovementKind(root_kind), o_from, o_to, (1 if same_way else -1)


def location_terms(
    session: Session, *, location_id: int, product_id: int, first: date, last: date
) -> Terms:
    """Return the §12 terms of the lines at ``location_id`` dated ``first``..``last``."""
    m = StockMovement
    rows = _grouped_lines(
        session,
        (
            or_(m.from_location_id == location_id, m.to_location_id == location_id),
            m.product_id == product_id,
            m.business_date >= first,
            m.business_date <= last,
        ),
    )
    terms = Terms()
    for kind, root_kind, m_from, m_to, o_from, o_to, amount in rows:
        root, r_from, r_to, sign = _root(kind, root_kind, m_from, m_to, o_from, o_to)
        enters = r_to == location_id
        if not enters and r_from != location_id:  # pragma: no cover - corrections keep locations
            raise ValueError("a correction line must have the locations of the line it corrects")
        terms.add(term_for(root, enters), sign * amount, root)
    return terms


def clinic_terms_by_day(
    session: Session, *, clinic_id: int, product_id: int, first: date, last: date
) -> dict[date, Terms]:
    """Return the §12 terms of the whole clinic per business day: lines between two of its
    locations (transfers) cancel out; what enters or leaves the clinic counts."""
    m = StockMovement
    rows = _grouped_lines(
        session,
        (m.clinic_id == clinic_id, m.product_id == product_id, m.business_date >= first, m.business_date <= last),
        extra_group=(m.business_date,),
    )
    result: dict[date, Terms] = defaultdict(Terms)
    for day, kind, root_kind, m_from, m_to, o_from, o_to, amount in rows:
        root, r_from, r_to, sign = _root(kind, root_kind, m_from, m_to, o_from, o_to)
        if r_from is not None and r_to is not None:
            continue  # inside the clinic
        result[day].add(term_for(root, r_to is not None), sign * amount, root)
    return dict(result)


def sum_terms(days: Iterable[Terms]) -> Terms:
    total = Terms()
    for terms in days:
        for term, value in terms.values.items():
            total.values[term] += value
        for kind, value in terms.issued_by_kind.items():
            total.issued_by_kind[kind] += value
    return total
