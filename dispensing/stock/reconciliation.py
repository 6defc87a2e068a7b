"""End-of-day reconciliation (chốt sổ) per location and product, CLINICAL_RULES §12.

    expected_close = opening + received + transferred_in − transferred_out − issued − waste
                     − other_out + adjusted
    variance       = measured_close − expected_close
    variance %     = variance ÷ (opening + received + transferred_in) × 100

(At a pump or counter shelf, stock arrives by transfer, so what was transferred in counts with
what was received in the base of the percentage.)

Within tolerance (both the clinic's percentage and absolute limits; unit-dose stock has no
absolute allowance) the variance is booked as hao hụt (loss) or dư thừa (surplus) and the
pharmacist signs. Outside it the day closes only with a discrepancy entry (a reason), an
investigation note and a second signature (witness), and the pharmacists and head of unit are
notified. Either way the variance becomes ADJUSTMENT lines dated the closed day, so the ledger then
holds what was measured, and a snapshot of every lot/bottle is stored. A closed day is locked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from dispensing import audit
from dispensing.accounts import reauthenticate
from dispensing.clock import business_date, day_bounds, utcnow
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.models import (
    Clinic,
    DiscrepancyReason,
    Dose,
    DoseKind,
    DoseState,
    Location,
    LocationKind,
    Lot,
    MeasureMethod,
    MovementKind,
    Product,
    ProductKind,
    Reconciliation,
    ReconciliationStatus,
    Reminder,
    ReminderKind,
    Role,
    StockMovement,
    User,
)
from dispensing.permissions import require_role
from dispensing.stock.ledger import (
    ZERO,
    Item,
    Term,
    append_line,
    item_balances,
    last_closed_day,
    location_terms,
    lock_locations,
    write_snapshot,
)
from dispensing.stock.movements import open_attachment
from dispensing.stock.signatures import Cosigner, require_same_clinic, resolve_cosigner, sign

# A balance reading is turned into millilitres to this resolution (the pumps' resolution).
VOLUME_QUANTUM = Decimal("0.01")
VOLUME_ROUNDING = ROUND_HALF_UP
PERCENT_QUANTUM = Decimal("0.000001")
IN_FLIGHT = (DoseState.REQUESTED, DoseState.PROGRAMMED, DoseState.RUNNING, DoseState.UNKNOWN)
METHODS_BY_KIND = {
    ProductKind.LIQUID: {MeasureMethod.BALANCE, MeasureMethod.CYLINDER, MeasureMethod.PUMP},
    ProductKind.UNIT_DOSE: {MeasureMethod.COUNT},
}


@dataclass(frozen=True)
class Measurement:
    """How the close was measured. BALANCE: the stable net weight in grams (``weight_g``, minus
    ``tare_g`` if given) divided by the density of ``lot_id`` (default: the lot held there);
    CYLINDER and PUMP: ``value`` in ml; COUNT: ``value`` in units."""

    method: MeasureMethod
    value: Decimal | None = None
    weight_g: Decimal | None = None
    tare_g: Decimal | None = None
    lot_id: int | None = None


@dataclass(frozen=True)
class Tolerance:
    pct: Decimal
    absolute: Decimal


def volume_from_weight(weight_g: Decimal, density_g_per_ml: Decimal, tare_g: Decimal | None = None
                       ) -> tuple[Decimal, dict]:
    """Return (ml, detail): net weight ÷ density, rounded half-up to 0.01 ml, and the figures
    behind it (weight, tare, density, the unrounded quotient, the rounding used).

    >>> volume_from_weight(Decimal("1040.52"), Decimal("1.0400"))[0]
    Decimal('1000.50')
    """
    for value in (weight_g, density_g_per_ml, tare_g or Decimal(0)):
        if isinstance(value, float) or not isinstance(value, Decimal) or not value.is_finite():
            raise ValidationFailed("weights are Decimals", code="MEASUREMENT_INVALID")
    net = weight_g - (tare_g or Decimal(0))
    if net < 0 or density_g_per_ml <= 0:
        raise ValidationFailed("negative net weight", code="MEASUREMENT_INVALID")
    quotient = net / density_g_per_ml
    volume = quotient.quantize(VOLUME_QUANTUM, rounding=VOLUME_ROUNDING)
    return volume, {
        "weight_g": str(weight_g),
        "tare_g": str(tare_g or Decimal(0)),
        "net_g": str(net),
        "density_g_per_ml": str(density_g_per_ml),
        "quotient_ml": str(quotient),
        "rounded_to": str(VOLUME_QUANTUM),
        "rounding": "ROUND_HALF_UP",
        "volume_ml": str(volume),
    }


def variance_percent(variance: Decimal, base: Decimal) -> Decimal | None:
    """Return variance ÷ base × 100 to 6 places, or None when the base is 0."""
    if base == 0:
        return None
    return (variance * 100 / base).quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_UP)


def within_tolerance(variance: Decimal, base: Decimal, tolerance: Tolerance) -> bool:
    """True when |variance| is within both limits (no variance is always within)."""
    if variance == 0:
        return True
    if abs(variance) > tolerance.absolute or base <= 0:
        return False
    return abs(variance) * 100 <= tolerance.pct * base


def allocate_variance(
    variance: Decimal,
    items: dict[Item, Decimal],
    *,
    attached: Item | None,
    expiry: dict[int, date],
    fallback: Item | None,
) -> list[tuple[Item, Decimal]]:
    """Split a variance over the lots/bottles held so that each adjustment line names one.

    A shortage comes out of items holding stock: bottles no longer open first (residue left at a
    pump), then the open bottle, first-expiry first. A surplus first brings items below zero back
    to zero, then goes to the open bottle; without one, to the lot (no bottle) of the first-expiry
    item held, else of ``fallback`` (the item of the last line at the location). Returns [(item, signed amount)], amounts summing to
    ``variance``. Raises ValidationFailed (SURPLUS_WITHOUT_LOT) when a surplus has nowhere to go.
    """
    if variance == 0:
        return []

    def order(item: Item) -> tuple:
        return (item == attached, expiry.get(item[0], date.max), item[0], item[1] or 0)

    result: list[tuple[Item, Decimal]] = []
    if variance < 0:
        left = -variance
        for item in sorted((i for i, v in items.items() if v > 0), key=order):
            take = min(left, items[item])
            result.append((item, -take))
            left -= take
            if left == 0:
                return result
        raise ValueError("a shortage larger than the stock held")  # measured close < 0
    left = variance
    for item in sorted((i for i, v in items.items() if v < 0), key=order):
        give = min(left, -items[item])
        result.append((item, give))
        left -= give
        if left == 0:
            return result
    if attached is not None:
        target = attached
    else:
        # Found liquid that no open bottle explains belongs to the lot, not to a sealed or departed
        # bottle (which would then seem to be in two places).
        positive = sorted((i for i, v in items.items() if v > 0), key=order)
        source = positive[0] if positive else fallback
        if source is None:
            raise ValidationFailed("surplus at a location that never held stock", code="SURPLUS_WITHOUT_LOT")
        target = (source[0], None)
    result.append((target, left))
    return result


@dataclass(frozen=True)
class Worksheet:
    """The §12 figures of one location, product and day, from the ledger."""

    location_id: int
    product_id: int
    business_date: date
    opening: Decimal
    received: Decimal
    transferred_in: Decimal
    transferred_out: Decimal
    issued: Decimal
    waste: Decimal
    other_out: Decimal
    adjusted: Decimal
    issued_by_kind: dict[str, Decimal]

    @property
    def expected_close(self) -> Decimal:
        return (self.opening + self.received + self.transferred_in - self.transferred_out - self.issued
                - self.waste - self.other_out + self.adjusted)

    @property
    def base(self) -> Decimal:
        """Stock available during the day: the base of the variance percentage."""
        return self.opening + self.received + self.transferred_in

    @property
    def active(self) -> bool:
        return any((self.opening, self.received, self.transferred_in, self.transferred_out, self.issued,
                    self.waste, self.other_out, self.adjusted))


def worksheet(session: Session, *, location_id: int, product_id: int, day: date) -> Worksheet:
    """Return the reconciliation worksheet of ``day`` before any close adjustment."""
    opening = sum(item_balances(session, location_id, product_id, day - timedelta(days=1)).values(), ZERO)
    terms = location_terms(session, location_id=location_id, product_id=product_id, first=day, last=day)
    return Worksheet(
        location_id=location_id, product_id=product_id, business_date=day, opening=opening,
        received=terms[Term.RECEIVED], transferred_in=terms[Term.TRANSFERRED_IN],
        transferred_out=terms[Term.TRANSFERRED_OUT], issued=terms[Term.ISSUED], waste=terms[Term.WASTE],
        other_out=terms[Term.OTHER_OUT], adjusted=terms.adjusted,
        issued_by_kind={kind.value: amount for kind, amount in terms.issued_by_kind.items()},
    )


def _fill(row: Reconciliation, sheet: Worksheet) -> None:
    row.opening = sheet.opening
    row.received = sheet.received
    row.transferred_in = sheet.transferred_in
    row.transferred_out = sheet.transferred_out
    row.issued = sheet.issued
    row.waste = sheet.waste
    row.other_out = sheet.other_out
    row.adjusted = sheet.adjusted
    row.expected_close = sheet.expected_close


@dataclass(frozen=True)
class ClosePreview:
    worksheet: Worksheet
    measured_close: Decimal
    measure_detail: dict
    variance: Decimal
    variance_pct: Decimal | None
    within_tolerance: bool
    tolerance: Tolerance


def _tolerance(clinic: Clinic, product: Product) -> Tolerance:
    absolute = clinic.reconcile_tolerance_ml if product.kind is ProductKind.LIQUID else Decimal(0)
    return Tolerance(pct=clinic.reconcile_tolerance_pct, absolute=absolute)


def _measure(session: Session, measurement: Measurement, *, location: Location, product: Product,
             items: dict[Item, Decimal]) -> tuple[Decimal, dict]:
    method = MeasureMethod(measurement.method)
    if method not in METHODS_BY_KIND[product.kind]:
        raise ValidationFailed("method not for this product", code="MEASURE_METHOD_NOT_ALLOWED")
    if method is MeasureMethod.PUMP and location.kind is not LocationKind.PUMP:
        raise ValidationFailed("a pump reading needs a pump", code="MEASURE_METHOD_NOT_ALLOWED")
    if method is MeasureMethod.BALANCE:
        if measurement.weight_g is None:
            raise ValidationFailed("weight required", code="MEASUREMENT_INVALID")
        lot_ids = {lot_id for (lot_id, _c), amount in items.items() if amount > 0}
        if measurement.lot_id is not None:
            lot_ids = {measurement.lot_id}
        lots = session.scalars(select(Lot).where(Lot.id.in_(lot_ids))).all() if lot_ids else []
        densities = {lot.density_g_per_ml for lot in lots}
        if None in densities:
            raise ValidationFailed("lot has no density", code="DENSITY_MISSING")
        if len(densities) != 1:
            raise ValidationFailed("say which lot was weighed", code="DENSITY_AMBIGUOUS")
        volume, detail = volume_from_weight(measurement.weight_g, densities.pop(), measurement.tare_g)
        detail["method"] = method.value
        detail["lot_ids"] = sorted(lot.id for lot in lots)
        return volume, detail
    value = measurement.value
    if value is None or isinstance(value, float) or not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationFailed("reading required", code="MEASUREMENT_INVALID")
    if value < 0 or value != value.quantize(Decimal("0.001")):
        raise ValidationFailed("reading must be ≥ 0 with at most 3 decimals", code="MEASUREMENT_INVALID")
    return value, {"method": method.value, "value": str(value)}


def _load(session: Session, user: User, location_id: int, product_id: int) -> tuple[Clinic, Location, Product]:
    location = lock_locations(session, location_id).get(location_id)
    if location is None:
        raise NotFound("location", code="LOCATION_NOT_FOUND")
    require_same_clinic(user, location.clinic_id)
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound("product", code="PRODUCT_NOT_FOUND")
    return session.get(Clinic, location.clinic_id), location, product


def _preview(session: Session, clinic: Clinic, location: Location, product: Product, day: date,
             measurement: Measurement) -> tuple[ClosePreview, dict[Item, Decimal]]:
    sheet = worksheet(session, location_id=location.id, product_id=product.id, day=day)
    items = item_balances(session, location.id, product.id, day)
    measured, detail = _measure(session, measurement, location=location, product=product, items=items)
    variance = measured - sheet.expected_close
    tolerance = _tolerance(clinic, product)
    preview = ClosePreview(
        worksheet=sheet, measured_close=measured, measure_detail=detail, variance=variance,
        variance_pct=variance_percent(variance, sheet.base),
        within_tolerance=within_tolerance(variance, sheet.base, tolerance), tolerance=tolerance,
    )
    return preview, items


def preview_close(session: Session, user: User, *, location_id: int, product_id: int, day: date,
                  measurement: Measurement) -> ClosePreview:
    """Return what closing ``day`` with ``measurement`` would record, without writing."""
    require_role(user, Role.PHARMACIST)
    clinic, location, product = _load(session, user, location_id, product_id)
    return _preview(session, clinic, location, product, day, measurement)[0]


def close_day(
    session: Session,
    user: User,
    *,
    location_id: int,
    product_id: int,
    day: date,
    measurement: Measurement,
    password: str,
    witness: Cosigner | None = None,
    discrepancy_reason: DiscrepancyReason | None = None,
    investigation_note: str | None = None,
    now: datetime | None = None,
) -> Reconciliation:
    """Close ``day`` for ``product_id`` at ``location_id`` (chốt sổ) and return the locked record.

    Raises PermissionDenied (not a pharmacist), NotFound, ReauthenticationFailed, ValidationFailed
    (FUTURE_DAY, DOSES_IN_FLIGHT, MEASURE_METHOD_NOT_ALLOWED, MEASUREMENT_INVALID, DENSITY_MISSING,
    DENSITY_AMBIGUOUS, DISCREPANCY_ENTRY_REQUIRED, INVESTIGATION_NOTE_REQUIRED, WITNESS_REQUIRED,
    COSIGNER_IS_SIGNER), Conflict (DAY_ALREADY_CLOSED, LATER_DAY_CLOSED).
    """
    require_role(user, Role.PHARMACIST)
    begin_write(session)
    now = now or utcnow()
    clinic, location, product = _load(session, user, location_id, product_id)
    if day > business_date(now, clinic.timezone):
        raise ValidationFailed("cannot close a future day", code="FUTURE_DAY")
    row = session.scalar(
        select(Reconciliation).where(
            Reconciliation.location_id == location.id, Reconciliation.product_id == product.id,
            Reconciliation.business_date == day,
        ).with_for_update()
    )
    if row is not None and row.status is ReconciliationStatus.CLOSED:
        raise Conflict("day already closed", code="DAY_ALREADY_CLOSED")
    closed = last_closed_day(session, location.id, product.id)
    if closed is not None and closed > day:
        raise Conflict("a later day is closed", code="LATER_DAY_CLOSED", closed_through=closed)
    # The pump's doses of the day still in flight: the day's own, and take-home doses filled that
    # day for later days (their ledger line is dated the day they were filled).
    filled_from, filled_until = day_bounds(day, clinic.timezone)
    if location.device_id is not None and session.scalar(
        select(func.count()).select_from(Dose).where(
            Dose.clinic_id == clinic.id, Dose.device_id == location.device_id, Dose.state.in_(IN_FLIGHT),
            or_(Dose.business_date == day,
                and_(Dose.kind == DoseKind.TAKE_HOME, Dose.requested_at >= filled_from,
                     Dose.requested_at < filled_until)))
    ):
        raise ValidationFailed("doses still in flight at this pump", code="DOSES_IN_FLIGHT")
    preview, items = _preview(session, clinic, location, product, day, measurement)
    reauthenticate(user, password)
    witness_user = None
    if not preview.within_tolerance:
        if discrepancy_reason is None:
            raise ValidationFailed("outside tolerance: discrepancy entry required", code="DISCREPANCY_ENTRY_REQUIRED")
        if not investigation_note or not investigation_note.strip():
            raise ValidationFailed("outside tolerance: investigation note required",
                                   code="INVESTIGATION_NOTE_REQUIRED")
        witness_user = resolve_cosigner(session, user, witness, required_code="WITNESS_REQUIRED")
    elif witness is not None:
        witness_user = resolve_cosigner(session, user, witness, required_code="WITNESS_REQUIRED")

    if row is None:
        row = Reconciliation(clinic_id=clinic.id, location_id=location.id, product_id=product.id,
                             business_date=day)
        session.add(row)
    _fill(row, preview.worksheet)
    variance = preview.variance
    row.measured_close = preview.measured_close
    row.measure_method = MeasureMethod(measurement.method)
    row.measure_detail = preview.measure_detail
    row.variance = variance
    row.variance_pct = preview.variance_pct
    row.within_tolerance = preview.within_tolerance
    row.loss = -variance if variance < 0 else ZERO
    row.surplus = variance if variance > 0 else ZERO
    row.discrepancy_reason = None if preview.within_tolerance else DiscrepancyReason(discrepancy_reason)
    row.investigation_note = investigation_note.strip() if investigation_note and investigation_note.strip() else None
    row.closed_by_id = user.id
    row.witness_id = witness_user.id if witness_user else None
    row.closed_at = now
    session.flush()  # still OPEN: the row may change until the status below is written

    attachment = open_attachment(session, location.id)
    attached = (attachment.container.lot_id, attachment.container_id) if attachment else None
    lots = {lot.id: lot.expiry_date for lot in session.scalars(
        select(Lot).where(Lot.id.in_({item[0] for item in items} | ({attached[0]} if attached else set()))))}
    fallback = None
    if variance > 0 and not items and attached is None:
        last = session.execute(
            select(StockMovement.lot_id, StockMovement.container_id)
            .where((StockMovement.to_location_id == location.id) | (StockMovement.from_location_id == location.id),
                   StockMovement.product_id == product.id)
            .order_by(StockMovement.id.desc()).limit(1)
        ).first()
        fallback = (last[0], last[1]) if last else None
    after = dict(items)
    for (lot_id, container_id), amount in allocate_variance(variance, items, attached=attached, expiry=lots,
                                                            fallback=fallback):
        append_line(
            session, clinic_id=clinic.id, kind=MovementKind.ADJUSTMENT, product_id=product.id, lot_id=lot_id,
            quantity=abs(amount), business_date=day, occurred_at=now, recorded_by_id=user.id,
            from_location_id=location.id if amount < 0 else None, to_location_id=location.id if amount > 0 else None,
            container_id=container_id, reason=f"reconciliation {row.id}",
            witness_id=witness_user.id if witness_user else None,
        )
        after[(lot_id, container_id)] = after.get((lot_id, container_id), ZERO) + amount
    write_snapshot(session, clinic_id=clinic.id, location_id=location.id, product_id=product.id,
                   business_date=day, items=after)
    row.status = ReconciliationStatus.CLOSED
    session.flush()

    data = {"business_date": day, "location_id": location.id, "expected_close": row.expected_close,
            "measured_close": row.measured_close, "variance": variance, "within_tolerance": row.within_tolerance}
    sign(session, user, action="stock.reconciliation.signed", role="pharmacist", entity=row, clinic_id=clinic.id,
         at=now, data=data)
    if witness_user is not None:
        sign(session, witness_user, action="stock.reconciliation.signed", role="witness", entity=row,
             clinic_id=clinic.id, at=now, data=data)
    if not row.within_tolerance:
        _notify_discrepancy(session, row, business_date(now, clinic.timezone))
        audit.record(session, "stock.reconciliation.discrepancy", actor_id=user.id, clinic_id=clinic.id,
                     entity=row, at=now, data={**data, "reason": row.discrepancy_reason,
                                               "notified": [Role.PHARMACIST.value, Role.ADMIN.value]})
    session.commit()
    return row


def _notify_discrepancy(session: Session, row: Reconciliation, today: date) -> None:
    """Tell the pharmacists and the head of unit about a close outside tolerance."""
    for role in (Role.PHARMACIST, Role.UNIT_HEAD):
        session.add(Reminder(
            clinic_id=row.clinic_id, business_date=today, kind=ReminderKind.STOCK_DISCREPANCY, for_role=role,
            subject_type="reconciliation", subject_id=row.id, due_on=today, code="STOCK_DISCREPANCY",
            params={"location_id": row.location_id, "business_date": row.business_date.isoformat(),
                    "variance": str(row.variance), "reason": row.discrepancy_reason.value},
        ))
    session.flush()


def open_worksheets(session: Session, clinic: Clinic, day: date) -> list[Reconciliation]:
    """Create the OPEN reconciliation of ``day`` for every location and product that held or moved
    stock, filled from the ledger (the end-of-day job's worksheet). Existing rows are refreshed
    while open and left alone once closed. Writes without committing (the caller's transaction)."""
    locations = session.scalars(
        select(Location).where(Location.clinic_id == clinic.id, Location.active.is_(True)).order_by(Location.id)
    ).all()
    products = session.scalars(select(Product).order_by(Product.id)).all()
    existing = {
        (row.location_id, row.product_id): row
        for row in session.scalars(select(Reconciliation).where(
            Reconciliation.clinic_id == clinic.id, Reconciliation.business_date == day))
    }
    rows = []
    for location in locations:
        for product in products:
            row = existing.get((location.id, product.id))
            if row is not None and row.status is ReconciliationStatus.CLOSED:
                continue
            sheet = worksheet(session, location_id=location.id, product_id=product.id, day=day)
            if row is None and not sheet.active:
                continue
            if row is None:
                row = Reconciliation(clinic_id=clinic.id, location_id=location.id, product_id=product.id,
                                     business_date=day, status=ReconciliationStatus.OPEN)
                session.add(row)
            _fill(row, sheet)
            rows.append(row)
    session.flush()
    return rows
