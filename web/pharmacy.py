"""Pharmacist pages (dược sĩ / thủ kho): stock by location, lot and bottle with the FEFO choice of
the next bottle; receipts with lots from a pack scan, labelled bottles and anomaly records; bottles
to and from the pumps, transfers, returns and witnessed waste; the end-of-day reconciliation
worksheet (§12) with the balance read through the devices layer and the close; register and report
downloads.

Every figure comes from the stock services (``dispensing.stock``, ``dispensing.reports``); every
change is one of their use cases, which check the role, re-authenticate the signers and commit.
A refused form comes back as typed with the reason, and nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from markupsafe import Markup
from sqlalchemy import select

from dispensing import day_work, reports, stock
from dispensing.errors import DomainError, NotFound, ValidationFailed
from dispensing.models import (
    AnomalyKind,
    Container,
    ContainerAttachment,
    DiscrepancyReason,
    Location,
    LocationKind,
    Lot,
    MeasureMethod,
    Product,
    ProductKind,
    QuarantineDecision,
    QuarantineOutcome,
    Receipt,
    ReceiptAnomaly,
    Reconciliation,
    ReconciliationStatus,
    Role,
    StockMovement,
    User,
    WeighingState,
)
from dispensing.permissions import require_role
from dispensing.stock.ledger import last_closed_day
from dispensing.stock.reconciliation import METHODS_BY_KIND
from web import context
from web.auth import role_required
from web.database import db, writer
from web.errors import message_for, register_messages
from web.forms import DATE_PATTERN, DATE_PLACEHOLDER, format_day, parse_day
from web.navigation import register

bp = Blueprint("pharmacy", __name__, url_prefix="/pharmacy")

register("pharmacy.stock", lazy_gettext("Stock"), Role.PHARMACIST, order=30)
register("pharmacy.new_receipt", lazy_gettext("Receipts"), Role.PHARMACIST, order=31)
register("pharmacy.transfers", lazy_gettext("Bottles and transfers"), Role.PHARMACIST, order=32)
register("pharmacy.quarantine", lazy_gettext("Quarantine"), Role.PHARMACIST, order=32)
register("pharmacy.reconciliation", lazy_gettext("Reconciliation"), Role.PHARMACIST, order=33)
register("pharmacy.reports", lazy_gettext("Registers and reports"), Role.PHARMACIST, order=34)

register_messages({
    "NUMBER_INVALID": lazy_gettext("Enter a number, with a comma for decimals (e.g. 1040,52)."),
    "NUMBER_AMBIGUOUS": lazy_gettext(
        "Write the number without thousands separators, with a comma for decimals (e.g. 1040,5)."),
    "DATE_INVALID": lazy_gettext("Enter the date as dd/mm/yyyy."),
    "CHOICE_REQUIRED": lazy_gettext("Choose one of the options."),
    "SIGNATURE_PASSWORD_REQUIRED": lazy_gettext("Enter your password to sign."),
    "ANOMALY_KIND_INVALID": lazy_gettext("Choose the kind of anomaly."),
    "BALANCE_NOT_FOUND": lazy_gettext("Choose a balance that is in service."),
    "BALANCE_DRIVER_UNSUPPORTED": lazy_gettext("This balance's driver cannot be read from here."),
    "BALANCE_UNAVAILABLE": lazy_gettext("The balance does not answer: check its cable and power, or measure with a cylinder."),
    "BALANCE_NO_STABLE_READING": lazy_gettext(
        "The balance gave no stable reading in grams: wait until it settles and read again."),
    "BALANCE_OVERLOAD": lazy_gettext(
        "The load is over the balance's capacity: weigh a smaller container or measure with a cylinder."),
    "BALANCE_UNDERLOAD": lazy_gettext("The balance reads below zero: check the pan is in place, zero it and read again."),
    "BALANCE_WRONG_UNIT": lazy_gettext("The balance is set to a unit other than grams: set it to grams and read again."),
    "BALANCE_CONFIG_INVALID": lazy_gettext("This balance's settings are wrong: ask the administrator to check them."),
    "BALANCE_NOT_AT_COUNTER": lazy_gettext(
        "This balance is not at an active counter, and only a counter's device service reads a balance: "
        "ask the administrator to assign it to a counter, or measure with a cylinder."),
    "WEIGHING_EXPIRED": lazy_gettext(
        "No reading came back in time: check that the counter's device service (or its agent) is running, "
        "then read again."),
    "BALANCE_NOT_SIMULATED": lazy_gettext("Only a simulated balance can be given a weight from this page."),
    "SIMULATED_LOAD_INVALID": lazy_gettext("Enter a weight from 0 g up to the balance's capacity."),
    "PERIOD_INVALID_DATES": lazy_gettext("Enter the first and last day as dd/mm/yyyy."),
})

LOCATION_KIND_LABELS = {
    LocationKind.SAFE: lazy_gettext("Safe"),
    LocationKind.PUMP: lazy_gettext("Pump reservoir"),
    LocationKind.COUNTER: lazy_gettext("Counter shelf"),
    LocationKind.QUARANTINE: lazy_gettext("Quarantine"),
}
ANOMALY_LABELS = {
    AnomalyKind.BROKEN_SEAL: lazy_gettext("Broken seal"),
    AnomalyKind.CRACKED_BOTTLE: lazy_gettext("Cracked bottle"),
    AnomalyKind.SHORT_VOLUME: lazy_gettext("Short volume"),
    AnomalyKind.WRONG_LABEL: lazy_gettext("Wrong label"),
    AnomalyKind.EXCESS: lazy_gettext("Excess against the delivery note"),
    AnomalyKind.SHORTAGE: lazy_gettext("Shortage against the delivery note"),
}
BOTTLE_ANOMALIES = (AnomalyKind.BROKEN_SEAL, AnomalyKind.CRACKED_BOTTLE, AnomalyKind.SHORT_VOLUME,
                    AnomalyKind.WRONG_LABEL, AnomalyKind.EXCESS)
DELIVERY_ANOMALIES = (AnomalyKind.SHORTAGE, AnomalyKind.EXCESS)
METHOD_LABELS = {
    MeasureMethod.BALANCE: lazy_gettext("Balance (weight ÷ density of the lot)"),
    MeasureMethod.CYLINDER: lazy_gettext("Graduated cylinder"),
    MeasureMethod.PUMP: lazy_gettext("Pump reservoir reading"),
    MeasureMethod.COUNT: lazy_gettext("Count"),
}
REASON_LABELS = {
    DiscrepancyReason.UNRECORDED_SPILL: lazy_gettext("Spill not recorded"),
    DiscrepancyReason.MEASUREMENT_ERROR: lazy_gettext("Measurement error"),
    DiscrepancyReason.DEVICE_ERROR: lazy_gettext("Device error"),
    DiscrepancyReason.RECORDING_ERROR: lazy_gettext("Recording error"),
    DiscrepancyReason.SUSPECTED_DIVERSION: lazy_gettext("Suspected diversion"),
    DiscrepancyReason.UNKNOWN: lazy_gettext("Unknown, under investigation"),
}
MOVEMENT_TERMS = (
    ("opening", lazy_gettext("Opening balance (tồn đầu)")),
    ("received", lazy_gettext("Received")),
    ("transferred_in", lazy_gettext("Transferred in")),
    ("transferred_out", lazy_gettext("Transferred out")),
    ("issued", lazy_gettext("Issued to patients (doses, take-home, replacements)")),
    ("waste", lazy_gettext("Witnessed waste, priming, calibration")),
    ("other_out", lazy_gettext("Returned or destroyed")),
    ("adjusted", lazy_gettext("Adjustments")),
)
LOCATION_ORDER = [LocationKind.SAFE, LocationKind.COUNTER, LocationKind.PUMP, LocationKind.QUARANTINE]
MAX_LOTS = 10
MAX_BOTTLES = 40
DEFAULT_BOTTLES = 4
EXPIRY_WARNING_DAYS = 60
RECENT_DECISIONS = 20


# ---- small helpers ------------------------------------------------------------------------------

_NUMBER = re.compile(r"^\d+(?:[.,]\d+)?$")
_AMBIGUOUS = re.compile(r"^\d{1,3}\.\d{3}$")  # "1.040": a thousand and forty, or one point oh four?


def parse_number(text: str | None, *, required: bool = False) -> Decimal | None:
    """Return the number typed (comma or point for decimals; no thousands separators); None when
    empty and not ``required``. Raises ValidationFailed (NUMBER_INVALID, NUMBER_AMBIGUOUS)."""
    text = (text or "").strip().replace(" ", "").replace("\u00a0", "")
    if not text:
        if required:
            raise ValidationFailed("number required", code="NUMBER_INVALID")
        return None
    if _AMBIGUOUS.match(text):
        raise ValidationFailed("ambiguous number", code="NUMBER_AMBIGUOUS")
    if not _NUMBER.match(text):
        raise ValidationFailed("not a number", code="NUMBER_INVALID")
    try:
        return Decimal(text.replace(",", "."))
    except InvalidOperation as exc:  # pragma: no cover - the pattern already checked it
        raise ValidationFailed("not a number", code="NUMBER_INVALID") from exc


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else None


def _day(text: str | None, default: date) -> date:
    try:
        return parse_day(text) or default
    except ValueError as exc:
        raise ValidationFailed("bad date", code="DATE_INVALID") from exc


def _code(exc: DomainError) -> str:
    return str(exc.params.get("code") or exc.code)


def _status(exc: DomainError) -> int:
    return exc.status if 400 <= exc.status < 500 else 400


def _pharmacist() -> User:
    """The signed-in pharmacist (the stock services check the role again on every write)."""
    user = context.actor()
    require_role(user, Role.PHARMACIST)
    return user


def _locations(user: User, *kinds: LocationKind) -> list[Location]:
    query = select(Location).where(Location.clinic_id == user.clinic_id, Location.active.is_(True))
    if kinds:
        query = query.where(Location.kind.in_(kinds))
    # Safes first (the default place to receive into and return to), quarantine last; the same
    # order on both databases (PostgreSQL would sort the enum by declaration, SQLite by text).
    return sorted(db().scalars(query), key=lambda loc: (LOCATION_ORDER.index(loc.kind), loc.code))


def _location(user: User, location_id: int | None) -> Location:
    location = db().get(Location, location_id) if location_id else None
    if location is None or location.clinic_id != user.clinic_id:
        raise NotFound("location", code="LOCATION_NOT_FOUND")
    return location


def _container_id(user: User, label: str | None) -> int | None:
    """The bottle with this label in the user's clinic; None when no label was typed."""
    label = (label or "").strip().upper()
    if not label:
        return None
    container = db().scalar(select(Container).where(Container.label_code == label))
    if container is None or container.clinic_id != user.clinic_id:
        raise NotFound("container", code="CONTAINER_NOT_FOUND")
    return container.id


def _products() -> list[Product]:
    return list(db().scalars(select(Product).order_by(Product.controlled.desc(), Product.id)))


def _active_pairs(user: User) -> set[tuple[int, int]]:
    """(location, product) pairs the clinic's ledger ever touched."""
    m = StockMovement
    pairs: set[tuple[int, int]] = set()
    for column in (m.to_location_id, m.from_location_id):
        pairs |= {(loc, prod) for loc, prod in db().execute(
            select(column, m.product_id).where(m.clinic_id == user.clinic_id, column.is_not(None)).distinct())}
    return pairs


def barcode_svg(value: str, *, height: int = 40) -> Markup:
    """The Code 128 bars of a bottle label as inline SVG (the pattern from ``devices.labels``)."""
    from devices.labels import code128_modules

    modules = code128_modules(value)
    quiet = 10
    width = len(modules) + 2 * quiet
    bars, x = [], quiet
    for run in re.finditer(r"1+|0+", modules):
        if run.group()[0] == "1":
            bars.append(f'<rect x="{x}" y="0" width="{len(run.group())}" height="{height}"/>')
        x += len(run.group())
    return Markup(
        f'<svg class="barcode" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width * 2}" height="{height}" role="img" aria-label="{Markup.escape(value)}">'
        f'<rect width="{width}" height="{height}" fill="#fff"/><g fill="#000">{"".join(bars)}</g></svg>')


def _render(template: str, status: int = 200, **values):
    return render_template(template, location_kind_labels=LOCATION_KIND_LABELS, today=context.today(),
                           date_pattern=DATE_PATTERN, date_placeholder=DATE_PLACEHOLDER, **values), status


# ---- stock by location, lot and bottle ----------------------------------------------------------


@dataclass
class StockItem:
    lot: Lot
    container: Container | None
    quantity: Decimal
    product: Product
    open_on_pump: bool = False

    def flags(self, location: Location, today: date) -> list[str]:
        flags = []
        if location.kind is LocationKind.QUARANTINE:
            flags.append("quarantined")
        if self.lot.expiry_date < today:
            flags.append("expired")
        elif self.lot.expiry_date <= today + timedelta(days=EXPIRY_WARNING_DAYS):
            flags.append("expiring")
        if self.product.kind is ProductKind.LIQUID and self.lot.concentration_verified_at is None:
            flags.append("unverified")
        if self.quantity < 0:
            flags.append("negative")
        return flags


@dataclass
class LocationStock:
    location: Location
    items: list[StockItem] = field(default_factory=list)
    totals: dict[int, Decimal] = field(default_factory=dict)  # product id → quantity


@bp.get("/stock", endpoint="stock")
@role_required(Role.PHARMACIST)
def stock_overview():
    user = _pharmacist()
    today = context.today()
    session = db()
    locations = _locations(user)
    products = {p.id: p for p in _products()}
    pairs = _active_pairs(user)
    held: dict[int, dict] = {}
    for location in locations:
        for product_id in sorted(p for loc, p in pairs if loc == location.id):
            for item, quantity in stock.item_balances(session, location.id, product_id, today).items():
                held.setdefault(location.id, {})[(product_id, *item)] = quantity
    lot_ids = {key[1] for items in held.values() for key in items}
    container_ids = {key[2] for items in held.values() for key in items if key[2] is not None}
    lots = {lot.id: lot for lot in session.scalars(select(Lot).where(Lot.id.in_(lot_ids)))} if lot_ids else {}
    containers = ({c.id: c for c in session.scalars(select(Container).where(Container.id.in_(container_ids)))}
                  if container_ids else {})
    open_bottles = {row.location_id: row for row in session.scalars(select(ContainerAttachment).where(
        ContainerAttachment.clinic_id == user.clinic_id, ContainerAttachment.detached_at.is_(None)))}
    overview = []
    for location in locations:
        entry = LocationStock(location)
        attachment = open_bottles.get(location.id)
        for (product_id, lot_id, container_id), quantity in held.get(location.id, {}).items():
            entry.items.append(StockItem(
                lots[lot_id], containers.get(container_id), quantity, products[product_id],
                open_on_pump=attachment is not None and attachment.container_id == container_id))
            entry.totals[product_id] = entry.totals.get(product_id, Decimal(0)) + quantity
        entry.items.sort(key=lambda i: (i.product.id, i.lot.expiry_date, i.lot.lot_number,
                                        i.container.label_code if i.container else ""))
        overview.append(entry)
    fefo = {product.id: stock.suggest_bottles(session, clinic_id=user.clinic_id, product_id=product.id, day=today)
            for product in products.values() if product.kind is ProductKind.LIQUID}
    pending = list(session.scalars(select(ReceiptAnomaly).where(
        ReceiptAnomaly.clinic_id == user.clinic_id, ReceiptAnomaly.unit_head_id.is_(None)).order_by(ReceiptAnomaly.id)))
    forecast = day_work.forecast_for(session, user, today)
    return _render("pharmacy/stock.html", overview=overview, products=products, fefo=fefo, open_bottles=open_bottles,
                   pending_anomalies=pending, anomaly_labels=ANOMALY_LABELS, forecast=forecast)


# ---- receipts ---------------------------------------------------------------------------------


def _scan_separator() -> str | None:
    from devices.errors import DeviceConfigError
    from devices.registry import load_registry

    try:
        return load_registry().wedge_separator
    except DeviceConfigError:
        return None  # a broken device file must not stop a pack scan typed in the human-readable form


def read_pack_scan(text: str):
    """Return the classified pack scan. Raises ValidationFailed: INVALID_GTIN for a wrong GTIN
    check digit, PACK_SCAN_REJECTED for anything else that is not a GS1 pack code with GTIN, lot
    and expiry."""
    from devices.scan import ScanKind, ScanRejection, classify_scan

    scan = classify_scan(text, separator=_scan_separator())
    if scan.rejection in (ScanRejection.INVALID_GTIN_CHECK_DIGIT, ScanRejection.INVALID_GTIN):
        raise ValidationFailed("GTIN check digit wrong", code="INVALID_GTIN")
    if scan.kind is not ScanKind.MEDICINE_PACK or not scan.accepted:
        raise ValidationFailed("pack scan rejected", code="PACK_SCAN_REJECTED")
    return scan


def _lot_values(form, i: int) -> dict:
    keys = ("product_id", "pack_scan", "lot_number", "expiry", "gtin", "manufacturer", "concentration", "density",
            "loose_quantity")
    values = {key: (form.get(f"lot{i}_{key}") or "").strip() for key in keys}
    values["verified"] = bool(form.get(f"lot{i}_verified"))
    count = min(max(_int(form.get(f"lot{i}_bottles")) or DEFAULT_BOTTLES, 1), MAX_BOTTLES)
    values["bottles"] = [
        {key: (form.get(f"lot{i}_b{j}_{key}") or "").strip() for key in ("quantity", "nominal", "label", "anomaly",
                                                                         "description")}
        for j in range(count)
    ]
    return values


def receipt_values(form) -> dict:
    count = min(max(_int(form.get("lot_count")) or 1, 1), MAX_LOTS)
    values = {key: (form.get(key) or "").strip() for key in
              ("location_id", "supplier", "delivery_note_no", "deliverer_name", "note", "delivery_anomaly",
               "delivery_anomaly_lot", "delivery_anomaly_description", "delivery_anomaly_expected",
               "delivery_anomaly_found")}
    values["lots"] = [_lot_values(form, i) for i in range(count)]
    return values


def _empty_receipt(user: User) -> dict:
    safes = _locations(user, LocationKind.SAFE)
    lot = _lot_values({}, 0)
    methadone = next((p for p in _products() if p.kind is ProductKind.LIQUID and p.controlled), None)
    lot["product_id"] = str(methadone.id) if methadone else ""
    return {"location_id": str(safes[0].id) if safes else "", "lots": [lot]}


def _anomaly(kind: str, description: str) -> stock.AnomalyIn | None:
    if not kind:
        return None
    try:
        anomaly_kind = AnomalyKind(kind)
    except ValueError as exc:
        raise ValidationFailed("anomaly kind", code="ANOMALY_KIND_INVALID") from exc
    return stock.AnomalyIn(anomaly_kind, description)


def parse_delivery(values: dict) -> stock.DeliveryIn:
    """The service's delivery for the typed form. Raises ValidationFailed with a code."""
    lots = []
    for lot in values["lots"]:
        product_id = _int(lot["product_id"])
        if product_id is None:
            raise ValidationFailed("product", code="CHOICE_REQUIRED")
        lot_number, gtin = lot["lot_number"], lot["gtin"] or None
        try:
            expiry = parse_day(lot["expiry"])
        except ValueError as exc:
            raise ValidationFailed("expiry", code="DATE_INVALID") from exc
        if lot["pack_scan"]:
            scan = read_pack_scan(lot["pack_scan"])
            lot_number, expiry, gtin = lot_number or scan.lot, expiry or scan.expiry, gtin or scan.gtin
            if lot_number != scan.lot or expiry != scan.expiry or gtin != scan.gtin:
                # What was typed must agree with the pack's own code.
                raise ValidationFailed("typed lot differs from the pack", code="PACK_SCAN_REJECTED")
        if not lot_number or expiry is None:
            raise ValidationFailed("lot number and expiry", code="LOT_NUMBER_REQUIRED")
        bottles = []
        for bottle in lot["bottles"]:
            quantity = parse_number(bottle["quantity"])
            if quantity is None:
                if bottle["anomaly"] or bottle["label"] or bottle["nominal"]:
                    raise ValidationFailed("bottle quantity", code="QUANTITY_INVALID")
                continue
            bottles.append(stock.BottleIn(quantity=quantity, nominal=parse_number(bottle["nominal"]),
                                          label_code=bottle["label"].upper() or None,
                                          anomaly=_anomaly(bottle["anomaly"], bottle["description"])))
        lots.append(stock.LotIn(
            product_id=product_id, lot_number=lot_number, expiry_date=expiry, bottles=tuple(bottles),
            loose_quantity=parse_number(lot["loose_quantity"]),
            concentration_mg_per_ml=parse_number(lot["concentration"]), density_g_per_ml=parse_number(lot["density"]),
            gtin=gtin, manufacturer=lot["manufacturer"] or None, concentration_verified=lot["verified"],
        ))
    anomalies = []
    delivery_anomaly = _anomaly(values.get("delivery_anomaly", ""), values.get("delivery_anomaly_description", ""))
    if delivery_anomaly is not None:
        lot_index = _int(values.get("delivery_anomaly_lot"))
        anomalies.append((lot_index, stock.AnomalyIn(
            delivery_anomaly.kind, delivery_anomaly.description,
            parse_number(values.get("delivery_anomaly_expected")), parse_number(values.get("delivery_anomaly_found")))))
    return stock.DeliveryIn(
        location_id=_int(values["location_id"]) or 0, supplier=values["supplier"],
        delivery_note_no=values["delivery_note_no"], deliverer_name=values["deliverer_name"],
        lots=tuple(lots), anomalies=tuple(anomalies), note=values["note"] or None,
    )


def _render_receipt_form(user: User, values: dict, *, error: str | None = None, status: int = 200):
    recent = list(db().scalars(select(Receipt).where(Receipt.clinic_id == user.clinic_id)
                               .order_by(Receipt.id.desc()).limit(10)))
    return _render("pharmacy/receipt_form.html", status, values=values, error=error,
                   locations=_locations(user, LocationKind.SAFE, LocationKind.COUNTER), products=_products(),
                   bottle_anomalies=BOTTLE_ANOMALIES, delivery_anomalies=DELIVERY_ANOMALIES,
                   anomaly_labels=ANOMALY_LABELS, recent=recent, max_lots=MAX_LOTS, max_bottles=MAX_BOTTLES,
                   use_htmx=True)


@bp.get("/receipts/new")
@role_required(Role.PHARMACIST)
def new_receipt():
    user = _pharmacist()
    return _render_receipt_form(user, _empty_receipt(user))


@bp.post("/receipts/scan")
@role_required(Role.PHARMACIST)
def scan_pack():
    """htmx: the lot fields filled from a pack scan typed by the keyboard-wedge scanner."""
    _pharmacist()
    index = min(_int(request.form.get("lot")) or 0, MAX_LOTS - 1)
    lot = _lot_values(request.form, index)
    error, status = None, 200
    if lot["pack_scan"]:
        try:
            scan = read_pack_scan(lot["pack_scan"])
        except DomainError as exc:
            error, status = message_for(_code(exc)), 422
        else:
            lot.update(lot_number=scan.lot, expiry=format_day(scan.expiry), gtin=scan.gtin)
    return _render("pharmacy/_lot_identity.html", status, i=index, lot=lot, scan_error=error)


@bp.post("/receipts")
@role_required(Role.PHARMACIST)
def record_receipt():
    user = _pharmacist()
    values = receipt_values(request.form)
    action = request.form.get("action", "save")
    if action == "add_lot" and len(values["lots"]) < MAX_LOTS:
        values["lots"].append({**_lot_values({}, 0), "product_id": values["lots"][-1]["product_id"]})
        return _render_receipt_form(user, values)
    if action.startswith("add_bottles_"):
        index = _int(action.rpartition("_")[2])
        if index is not None and index < len(values["lots"]):
            bottles = values["lots"][index]["bottles"]
            bottles.extend({k: "" for k in ("quantity", "nominal", "label", "anomaly", "description")}
                           for _ in range(min(DEFAULT_BOTTLES, MAX_BOTTLES - len(bottles))))
        return _render_receipt_form(user, values)
    password = request.form.get("password") or ""
    try:
        delivery = parse_delivery(values)
        if not password:
            raise ValidationFailed("password", code="SIGNATURE_PASSWORD_REQUIRED")
        result = stock.receive_delivery(writer(), user, delivery, password=password)
    except DomainError as exc:
        db().rollback()
        return _render_receipt_form(user, values, error=message_for(_code(exc)), status=_status(exc))
    flash(gettext("Delivery recorded: %(bottles)s bottles, %(quarantined)s in quarantine.",
                  bottles=len(result.containers), quarantined=len(result.quarantined)), "info")
    return redirect(url_for("pharmacy.receipt", receipt_id=result.receipt.id))


@bp.get("/receipts/<int:receipt_id>")
@role_required(Role.PHARMACIST)
def receipt(receipt_id: int):
    user = _pharmacist()
    row = db().get(Receipt, receipt_id)
    if row is None or row.clinic_id != user.clinic_id:
        abort(404)
    people = {u.id: u.full_name for u in db().scalars(select(User).where(User.clinic_id == user.clinic_id))}
    labels = {line.container.label_code: barcode_svg(line.container.label_code)
              for line in row.lines if line.container is not None}
    return _render("pharmacy/receipt.html", receipt=row, location=db().get(Location, row.location_id), people=people,
                   labels=labels, anomaly_labels=ANOMALY_LABELS)


# ---- bottles on pumps, transfers, returns, waste ------------------------------------------------


def _render_transfers(user: User, *, errors: dict | None = None, values: dict | None = None, status: int = 200):
    session = db()
    today = context.today()
    pumps = _locations(user, LocationKind.PUMP)
    open_bottles = {row.location_id: row for row in session.scalars(select(ContainerAttachment).where(
        ContainerAttachment.clinic_id == user.clinic_id, ContainerAttachment.detached_at.is_(None)))}
    liquids = [p for p in _products() if p.kind is ProductKind.LIQUID]
    fefo = [s for p in liquids for s in stock.suggest_bottles(session, clinic_id=user.clinic_id, product_id=p.id,
                                                               day=today)]
    fefo.sort(key=lambda s: (s.expiry_date, not s.opened, s.label_code))
    lots = list(session.scalars(select(Lot).where(Lot.expiry_date >= today - timedelta(days=3650))
                                .order_by(Lot.expiry_date, Lot.lot_number)))
    return _render("pharmacy/transfers.html", status, pumps=pumps, open_bottles=open_bottles, fefo=fefo,
                   stores=_locations(user, LocationKind.SAFE, LocationKind.COUNTER, LocationKind.QUARANTINE),
                   returns_to=_locations(user, LocationKind.SAFE, LocationKind.QUARANTINE),
                   all_locations=_locations(user), lots=lots, errors=errors or {}, values=values or {})


@bp.get("/transfers")
@role_required(Role.PHARMACIST)
def transfers():
    return _render_transfers(_pharmacist())[0]


def _movement(form_name: str, action):
    """Run one movement use case for the form ``form_name``: on success back to the page with a
    message; on a refusal the page again with the reason at that form and nothing written."""
    user = _pharmacist()
    values = {key: value for key, value in request.form.items() if "password" not in key}
    try:
        message = action(user)
    except DomainError as exc:
        db().rollback()
        return _render_transfers(user, errors={form_name: message_for(_code(exc))},
                                 values={form_name: values}, status=_status(exc))
    flash(message, "info")
    return redirect(url_for("pharmacy.transfers"))


def _password(name: str = "password") -> str:
    password = request.form.get(name) or ""
    if not password:
        raise ValidationFailed("password", code="SIGNATURE_PASSWORD_REQUIRED")
    return password


def _witness() -> stock.Cosigner | None:
    username = (request.form.get("witness_username") or "").strip()
    return stock.Cosigner(username, request.form.get("witness_password") or "") if username else None


def _item(user: User) -> tuple[int | None, int | None, Decimal | None]:
    """(lot_id, container_id, quantity) of the form: a bottle label, or a lot and a quantity."""
    container_id = _container_id(user, request.form.get("label_code"))
    lot_id = _int(request.form.get("lot_id"))
    return lot_id, container_id, parse_number(request.form.get("quantity"))


@bp.post("/transfers/attach")
@role_required(Role.PHARMACIST)
def attach():
    def action(user):
        label = (request.form.get("label_code") or "").strip().upper()
        if not label:
            raise ValidationFailed("label", code="ITEM_REQUIRED")
        row = stock.attach_container(writer(), user, location_id=_int(request.form.get("location_id")) or 0,
                                     label_code=label)
        return gettext("Bottle %(label)s is open on the pump.", label=row.container.label_code)
    return _movement("attach", action)


@bp.post("/transfers/detach")
@role_required(Role.PHARMACIST)
def detach():
    def action(user):
        remaining = parse_number(request.form.get("remaining"), required=True)
        row = stock.detach_container(writer(), user, location_id=_int(request.form.get("location_id")) or 0,
                                     remaining=remaining,
                                     return_to_location_id=_int(request.form.get("return_to_location_id")))
        return gettext("Bottle %(label)s taken off the pump.", label=row.container.label_code)
    return _movement("detach", action)


@bp.post("/transfers/move")
@role_required(Role.PHARMACIST)
def move():
    def action(user):
        lot_id, container_id, quantity = _item(user)
        stock.transfer_stock(writer(), user, from_location_id=_int(request.form.get("from_location_id")) or 0,
                             to_location_id=_int(request.form.get("to_location_id")) or 0, lot_id=lot_id,
                             container_id=container_id, quantity=quantity,
                             reason=(request.form.get("reason") or "").strip() or None)
        return gettext("Transfer recorded.")
    return _movement("move", action)


@bp.post("/transfers/return")
@role_required(Role.PHARMACIST)
def return_stock():
    def action(user):
        lot_id, container_id, quantity = _item(user)
        password = _password()
        stock.return_to_supplier(writer(), user, location_id=_int(request.form.get("location_id")) or 0,
                                 reason=request.form.get("reason") or "", password=password, lot_id=lot_id,
                                 container_id=container_id, quantity=quantity)
        return gettext("Return to the supplier recorded.")
    return _movement("return", action)


@bp.post("/transfers/waste")
@role_required(Role.PHARMACIST)
def waste():
    def action(user):
        lot_id, container_id, quantity = _item(user)
        if quantity is None:
            raise ValidationFailed("quantity", code="QUANTITY_INVALID")
        password = _password()
        stock.record_waste(writer(), user, location_id=_int(request.form.get("location_id")) or 0,
                           quantity=quantity, reason=request.form.get("reason") or "", password=password,
                           witness=_witness(), lot_id=lot_id, container_id=container_id)
        return gettext("Witnessed waste recorded.")
    return _movement("waste", action)


# ---- quarantine: decisions signed by the pharmacist and the head of unit, returns, destruction --


def _item_key(item: stock.QuarantinedItem) -> str:
    """A quarantined item as a form value: its quarantine location, lot and bottle (0: loose)."""
    return f"{item.location_id}:{item.lot_id}:{item.container_id or 0}"


def _quarantined(user: User, key: str | None) -> stock.QuarantinedItem:
    """The item the ledger holds in quarantine under ``key`` now. Raises ValidationFailed."""
    if not key:
        raise ValidationFailed("item", code="ITEM_REQUIRED")
    for item in stock.quarantined_items(db(), clinic_id=user.clinic_id):
        if _item_key(item) == key:
            return item
    raise ValidationFailed("not in quarantine", code="NOT_IN_QUARANTINE")


def _render_quarantine(user: User, *, errors: dict | None = None, values: dict | None = None, status: int = 200):
    from web.unit_head import OUTCOME_LABELS, anomaly_views, lot_units

    session = db()
    items = stock.quarantined_items(session, clinic_id=user.clinic_id)
    anomaly_ids = {item.anomaly_id for item in items if item.anomaly_id}
    anomalies = {v.anomaly.id: v for v in anomaly_views(session, list(session.scalars(
        select(ReceiptAnomaly).where(ReceiptAnomaly.id.in_(anomaly_ids)))))} if anomaly_ids else {}
    recent = list(session.scalars(select(QuarantineDecision).where(QuarantineDecision.clinic_id == user.clinic_id)
                                  .order_by(QuarantineDecision.id.desc()).limit(RECENT_DECISIONS)))
    people_ids = {i for d in recent for i in (d.pharmacist_id, d.unit_head_id)}
    people_ids |= {i for item in items if item.decision for i in (item.decision.pharmacist_id,
                                                                   item.decision.unit_head_id)}
    people = ({u.id: u.full_name for u in session.scalars(select(User).where(User.id.in_(people_ids)))}
              if people_ids else {})
    keyed = [(_item_key(item), item) for item in items]
    return _render(
        "pharmacy/quarantine.html", status, units=lot_units(session, {item.lot_id for item in items}
                                                             | {d.lot_id for d in recent}), items=keyed, anomalies=anomalies, recent=recent, people=people,
        safes=_locations(user, LocationKind.SAFE),
        undecided=[(key, item) for key, item in keyed if item.decision is None and item.anomaly_signed],
        to_return=[(key, item) for key, item in keyed
                   if item.decision and item.decision.outcome is QuarantineOutcome.RETURN_TO_SUPPLIER],
        to_destroy=[(key, item) for key, item in keyed
                    if item.decision and item.decision.outcome is QuarantineOutcome.DESTRUCTION],
        outcome_labels=OUTCOME_LABELS, outcomes=list(QuarantineOutcome), anomaly_labels=ANOMALY_LABELS,
        errors=errors or {}, values=values or {}, chosen=request.args.get("item", ""),
    )


@bp.get("/quarantine", endpoint="quarantine")
@role_required(Role.PHARMACIST)
def quarantine():
    return _render_quarantine(_pharmacist())[0]


def _quarantine_action(form_name: str, action):
    """Run one quarantine use case: on success back to the page with a message; on a refusal the
    page again with the reason at that form, the form as typed (no passwords), nothing written."""
    user = _pharmacist()
    values = {key: value for key, value in request.form.items(multi=False) if "password" not in key}
    values["items"] = request.form.getlist("item")
    try:
        message = action(user)
    except DomainError as exc:
        db().rollback()
        return _render_quarantine(user, errors={form_name: message_for(_code(exc))}, values={form_name: values},
                                  status=_status(exc))
    flash(message, "info")
    return redirect(url_for("pharmacy.quarantine"))


def _unit_head() -> stock.Cosigner | None:
    username = (request.form.get("unit_head_username") or "").strip()
    return stock.Cosigner(username, request.form.get("unit_head_password") or "") if username else None


@bp.post("/quarantine/decide")
@role_required(Role.PHARMACIST)
def decide_quarantine():
    """A decision on one quarantined bottle (or a lot's loose stock), signed by the pharmacist and
    co-signed by the head of unit on the same form; a release moves it whole to the chosen safe."""
    def action(user):
        item = _quarantined(user, request.form.get("item"))
        outcome = request.form.get("outcome") or ""
        release = outcome == QuarantineOutcome.RELEASE.value
        password = _password()
        decisions = stock.decide_quarantine(
            writer(), user, outcome=outcome, reason=request.form.get("reason") or "", password=password,
            unit_head=_unit_head(), container_id=item.container_id,
            lot_id=item.lot_id if item.container_id is None else None,
            to_location_id=_int(request.form.get("to_location_id")) if release else None)
        what = item.label_code or item.lot_number
        if release:
            return gettext("%(item)s released from quarantine to the safe: it may be issued again.", item=what)
        if decisions[0].outcome is QuarantineOutcome.RETURN_TO_SUPPLIER:
            return gettext("Decision signed: %(item)s is kept for return to the supplier.", item=what)
        return gettext("Decision signed: %(item)s is kept for destruction.", item=what)
    return _quarantine_action("decide", action)


@bp.post("/quarantine/return")
@role_required(Role.PHARMACIST)
def return_quarantined():
    """Return a quarantined bottle to the supplier (signed with the password), whole."""
    def action(user):
        item = _quarantined(user, request.form.get("item"))
        password = _password()
        stock.return_to_supplier(writer(), user, location_id=item.location_id, reason=request.form.get("reason") or "",
                                 password=password, lot_id=item.lot_id, container_id=item.container_id,
                                 quantity=None if item.container_id else item.quantity)
        return gettext("Return to the supplier recorded.")
    return _quarantine_action("return", action)


@bp.post("/quarantine/destroy")
@role_required(Role.PHARMACIST)
def destroy_quarantined():
    """Destroy the chosen quarantined bottles under one destruction record (biên bản hủy thuốc),
    signed by the pharmacist and a witness."""
    def action(user):
        keys = [key for key in request.form.getlist("item") if key.strip()]
        if not keys:
            raise ValidationFailed("nothing chosen", code="DESTRUCTION_EMPTY")
        items = [_quarantined(user, key) for key in dict.fromkeys(keys)]
        password = _password()
        record = stock.destroy_stock(
            writer(), user, record_no=request.form.get("record_no") or "", method=request.form.get("method") or "",
            reason=request.form.get("reason") or "", password=password, witness=_witness(),
            items=[stock.DestructionItem(location_id=item.location_id, lot_id=item.lot_id,
                                         container_id=item.container_id,
                                         quantity=None if item.container_id else item.quantity) for item in items])
        return gettext("Destruction record %(no)s signed.", no=record.record_no)
    return _quarantine_action("destroy", action)


# ---- reconciliation -----------------------------------------------------------------------------


@bp.get("/reconciliation", endpoint="reconciliation")
@role_required(Role.PHARMACIST)
def reconciliation():
    user = _pharmacist()
    today = context.today()
    try:
        day = _day(request.args.get("day"), today)
    except DomainError as exc:
        flash(message_for(_code(exc)), "error")
        day = today
    session = db()
    products = {p.id: p for p in _products()}
    rows = {(r.location_id, r.product_id): r for r in session.scalars(select(Reconciliation).where(
        Reconciliation.clinic_id == user.clinic_id, Reconciliation.business_date == day))}
    pairs = _active_pairs(user) | set(rows)
    m = StockMovement
    moved = set()
    for column in (m.to_location_id, m.from_location_id):
        moved |= {(loc, prod) for loc, prod in session.execute(select(column, m.product_id).where(
            m.clinic_id == user.clinic_id, m.business_date == day, column.is_not(None)).distinct())}
    sheets = []
    for location in _locations(user):
        for product_id in sorted(p for loc, p in pairs if loc == location.id):
            row = rows.get((location.id, product_id))
            closed = row is not None and row.status is ReconciliationStatus.CLOSED
            expected = None
            if not closed:
                # The day's expected close is the ledger balance at its end (opening plus the
                # day's terms); the worksheet page shows the terms one by one.
                expected = sum(stock.item_balances(session, location.id, product_id, day).values(), Decimal(0))
                if expected == 0 and (location.id, product_id) not in moved and row is None:
                    continue
            sheets.append({"location": location, "product": products[product_id], "row": row, "closed": closed,
                           "expected": row.expected_close if closed else expected})
    return _render("pharmacy/reconciliation.html", day=day, sheets=sheets, previous=day - timedelta(days=1),
                   following=day + timedelta(days=1), format_day=format_day)[0]


@dataclass
class CloseValues:
    method: str = ""
    weight_g: str = ""
    tare_g: str = ""
    lot_id: str = ""
    value: str = ""
    balance_id: str = ""
    reason: str = ""
    note: str = ""
    witness_username: str = ""
    sim_load_g: str = ""

    @classmethod
    def from_form(cls, form) -> CloseValues:
        return cls(**{name: (form.get(name) or "").strip() for name in cls.__dataclass_fields__})

    def measurement(self) -> stock.Measurement:
        """The service's measurement. Raises ValidationFailed with a code."""
        try:
            method = MeasureMethod(self.method)
        except ValueError as exc:
            raise ValidationFailed("method", code="CHOICE_REQUIRED") from exc
        if method is MeasureMethod.BALANCE:
            return stock.Measurement(method=method, weight_g=parse_number(self.weight_g, required=True),
                                     tare_g=parse_number(self.tare_g), lot_id=_int(self.lot_id))
        return stock.Measurement(method=method, value=parse_number(self.value, required=True))

    def discrepancy(self) -> DiscrepancyReason | None:
        try:
            return DiscrepancyReason(self.reason) if self.reason else None
        except ValueError as exc:
            raise ValidationFailed("reason", code="CHOICE_REQUIRED") from exc


def _sheet_context(user: User, location_id: int, product_id: int):
    location = _location(user, location_id)
    product = db().get(Product, product_id)
    if product is None:
        raise NotFound("product", code="PRODUCT_NOT_FOUND")
    return location, product


def _weighing_choices(user: User, location: Location, product: Product, day: date) -> tuple[list, list[Lot]]:
    """The clinic's balances and the lots held at ``location`` at the end of ``day``."""
    from web.pharmacy_balance import balances_of

    held = stock.item_balances(db(), location.id, product.id, day)
    lot_ids = {lot_id for (lot_id, _c), amount in held.items() if amount > 0}
    lots = list(db().scalars(select(Lot).where(Lot.id.in_(lot_ids)).order_by(Lot.expiry_date))) if lot_ids else []
    return balances_of(db(), user.clinic_id), lots


def _simulated(balances: list, values: CloseValues) -> bool:
    """True when the balance chosen on the form is a ``sim://`` one (it gets the simulated-pan control)."""
    from web.pharmacy_balance import is_simulated

    chosen = next((b for b in balances if str(b.id) == values.balance_id), None)
    return chosen is not None and is_simulated(chosen)


def _render_worksheet(location_id: int, product_id: int, day: date, values: CloseValues | None = None, *,
                      preview=None, error: str | None = None, status: int = 200):
    from web.pharmacy_balance import default_balance

    user = _pharmacist()
    session = db()
    location, product = _sheet_context(user, location_id, product_id)
    row = session.scalar(select(Reconciliation).where(
        Reconciliation.location_id == location.id, Reconciliation.product_id == product.id,
        Reconciliation.business_date == day))
    closed = row is not None and row.status is ReconciliationStatus.CLOSED
    closed_through = last_closed_day(session, location.id, product.id)
    locked = closed or (closed_through is not None and closed_through >= day)
    sheet = stock.worksheet(session, location_id=location.id, product_id=product.id, day=day)
    methods = [m for m in (MeasureMethod.BALANCE, MeasureMethod.CYLINDER, MeasureMethod.PUMP, MeasureMethod.COUNT)
               if m in METHODS_BY_KIND[product.kind]
               and (m is not MeasureMethod.PUMP or location.kind is LocationKind.PUMP)]
    balances, lots = _weighing_choices(user, location, product, day) if MeasureMethod.BALANCE in methods else ([], [])
    if values is None:
        chosen = default_balance(location, balances)
        values = CloseValues(method=methods[0].value, balance_id=str(chosen.id) if chosen else "")
    people = {}
    if row is not None:
        people = {u.id: u.full_name for u in session.scalars(select(User).where(
            User.id.in_([i for i in (row.closed_by_id, row.witness_id) if i])))}
    weighed = {}
    if row is not None and row.measure_detail and row.measure_detail.get("weight_g"):
        weighed = {key: Decimal(row.measure_detail[key]) for key in ("weight_g", "tare_g", "net_g", "density_g_per_ml")}
    clinic = context.clinic()
    return _render("pharmacy/worksheet.html", status, weighed=weighed, location=location, product=product, day=day, row=row,
                   closed=closed, locked=locked, closed_through=closed_through, sheet=sheet, terms=MOVEMENT_TERMS,
                   methods=methods, method_labels=METHOD_LABELS, reason_labels=REASON_LABELS, values=values,
                   balances=balances, lots=lots, preview=preview, error=error, people=people,
                   simulated=_simulated(balances, values),
                   tolerance_pct=clinic.reconcile_tolerance_pct, tolerance_ml=clinic.reconcile_tolerance_ml,
                   day_text=format_day(day), location_id=location.id, product_id=product.id, use_htmx=True)


def _worksheet_day() -> date:
    return _day(request.values.get("day"), context.today())


@bp.get("/reconciliation/<int:location_id>/<int:product_id>")
@role_required(Role.PHARMACIST)
def worksheet(location_id: int, product_id: int):
    try:
        day = _worksheet_day()
    except DomainError as exc:
        flash(message_for(_code(exc)), "error")
        return redirect(url_for("pharmacy.reconciliation"))
    return _render_worksheet(location_id, product_id, day)


@bp.post("/reconciliation/<int:location_id>/<int:product_id>/read-balance")
@role_required(Role.PHARMACIST)
def read_balance(location_id: int, product_id: int):
    """htmx: ask the chosen balance's counter for one stable weight (a weighing request for its
    device service; this worker never opens a port) and answer 202 with the fragment that polls
    ``weighing_status`` until the weight is there. A refused request: 422 with the reason."""
    from dispensing import weighing

    user = _pharmacist()
    location, product = _sheet_context(user, location_id, product_id)
    values = CloseValues.from_form(request.form)
    try:
        day = _worksheet_day()
    except DomainError as exc:
        abort(_status(exc))
    balances, lots = _weighing_choices(user, location, product, day)
    fragment = {"location_id": location_id, "product_id": product_id, "balances": balances, "lots": lots,
                "simulated": _simulated(balances, values)}
    balance_id = _int(values.balance_id)
    if balance_id is None:
        return _render("pharmacy/_weight.html", 422, values=values, reading=None,
                       reading_error=message_for("BALANCE_NOT_FOUND"), **fragment)
    try:
        pending = weighing.request_weighing(writer(), user, balance_id, location_id=location.id,
                                            product_id=product.id)
    except DomainError as exc:
        return _render("pharmacy/_weight.html", 422, values=values, reading=None,
                       reading_error=message_for(_code(exc)), **fragment)
    return _render("pharmacy/_weight.html", 202, values=values, reading=None, reading_error=None,
                   pending=pending.id, **fragment)


@bp.get("/reconciliation/<int:location_id>/<int:product_id>/weighing/<int:request_id>")
@role_required(Role.PHARMACIST)
def weighing_status(location_id: int, product_id: int, request_id: int):
    """htmx poll of a weighing request (the page asks every half second). Still open: only the
    status element, polling again. Final: the whole weight fragment, as the read used to answer —
    the weight filled in (200), or the reason there is none (422)."""
    from dispensing import weighing
    from web.pharmacy_balance import Reading

    user = _pharmacist()
    location, product = _sheet_context(user, location_id, product_id)
    values = CloseValues.from_form(request.args)
    try:
        day = _worksheet_day()
        row = weighing.get_weighing(writer(), user, request_id)
    except DomainError as exc:
        abort(_status(exc))
    if row.open:
        return _render("pharmacy/_weight_pending.html", 202, pending=row.id, location_id=location_id,
                       product_id=product_id)
    balances, lots = _weighing_choices(user, location, product, day)
    values.balance_id = str(row.device_id)
    reading, error = None, None
    if row.state is WeighingState.COMPLETED:
        reading = Reading.of(row)
        values.weight_g = _plain(reading.grams)
        values.method = MeasureMethod.BALANCE.value
    else:
        error = message_for(weighing_failure_code(row.failure_reason))
    html, status = _render("pharmacy/_weight.html", 200 if reading else 422, values=values, reading=reading,
                           reading_error=error, location_id=location_id, product_id=product_id, balances=balances,
                           lots=lots, simulated=_simulated(balances, values))
    # The poll targets the status element; the final answer replaces the whole fragment.
    return html, status, {"HX-Retarget": "#balance-reading", "HX-Reswap": "outerHTML"}


# What the balance's device service reported, as the page explains it.
_WEIGHING_FAILURES = {
    "UNSTABLE_READING": "BALANCE_NO_STABLE_READING",
    "BALANCE_OVERLOAD": "BALANCE_OVERLOAD",
    "BALANCE_UNDERLOAD": "BALANCE_UNDERLOAD",
    "WRONG_UNIT": "BALANCE_WRONG_UNIT",
    "WEIGHING_EXPIRED": "WEIGHING_EXPIRED",
    "BALANCE_DRIVER_UNSUPPORTED": "BALANCE_DRIVER_UNSUPPORTED",
    "BALANCE_CONFIG_INVALID": "BALANCE_CONFIG_INVALID",
}


def weighing_failure_code(reason: str | None) -> str:
    """The message code for a failed weighing's reason; a port, a cable or a silent balance (and
    anything else the device reported) is "the balance does not answer"."""
    return _WEIGHING_FAILURES.get(reason or "", "BALANCE_UNAVAILABLE")


@bp.post("/reconciliation/<int:location_id>/<int:product_id>/simulated-load")
@role_required(Role.PHARMACIST)
def simulated_load(location_id: int, product_id: int):
    """htmx, ``sim://`` balances only (demo and tests): put ``sim_load_g`` grams on the simulated
    pan, as the pharmacist puts the reservoir on a real one. Nothing is read or written here; "read
    balance" then reads the weight through the real driver. Any other balance: 404."""
    from dispensing.models import Device
    from web.pharmacy_balance import BalanceUnavailable, is_simulated, place_on_simulated_pan

    user = _pharmacist()
    location, product = _sheet_context(user, location_id, product_id)
    values = CloseValues.from_form(request.form)
    try:
        day = _worksheet_day()
    except DomainError as exc:
        abort(_status(exc))
    device = db().get(Device, _int(values.balance_id) or 0)
    if device is None or device.clinic_id != user.clinic_id or not is_simulated(device):
        abort(404)
    balances, lots = _weighing_choices(user, location, product, day)
    placed, error = None, None
    try:
        grams = parse_number(values.sim_load_g, required=True)
        place_on_simulated_pan(device, grams)
        placed = grams
    except ValidationFailed as exc:
        error = message_for(_code(exc))
    except BalanceUnavailable as exc:
        error = message_for(exc.code)
    return _render("pharmacy/_weight.html", 200 if placed is not None else 422, values=values, reading=None,
                   reading_error=None, sim_placed=placed, sim_error=error, location_id=location_id,
                   product_id=product_id, balances=balances, lots=lots, simulated=True)


def _plain(value: Decimal) -> str:
    """A number as typed back into a field: a decimal comma in Vietnamese, never a thousands mark."""
    from web.formatting import is_vietnamese

    text = format(value, "f")
    return text.replace(".", ",") if is_vietnamese() else text


@bp.post("/reconciliation/<int:location_id>/<int:product_id>/preview")
@role_required(Role.PHARMACIST)
def preview(location_id: int, product_id: int):
    """htmx: what closing with this measurement would record; nothing is written."""
    user = _pharmacist()
    values = CloseValues.from_form(request.form)
    try:
        day = _worksheet_day()
        result = stock.preview_close(db(), user, location_id=location_id, product_id=product_id, day=day,
                                     measurement=values.measurement())
    except DomainError as exc:
        return _render("pharmacy/_preview.html", _status(exc), preview=None, preview_error=message_for(_code(exc)))
    return _render("pharmacy/_preview.html", preview=result, preview_error=None)


@bp.post("/reconciliation/<int:location_id>/<int:product_id>/close")
@role_required(Role.PHARMACIST)
def close(location_id: int, product_id: int):
    """Close the day (chốt sổ), signed with the password; outside tolerance also a discrepancy
    reason, an investigation note and a witness's signature."""
    user = _pharmacist()
    values = CloseValues.from_form(request.form)
    try:
        day = _worksheet_day()
    except DomainError as exc:
        flash(message_for(_code(exc)), "error")
        return redirect(url_for("pharmacy.reconciliation"))
    result = None
    try:
        measurement = values.measurement()
        result = stock.preview_close(db(), user, location_id=location_id, product_id=product_id, day=day,
                                     measurement=measurement)
        password = _password()
        stock.close_day(writer(), user, location_id=location_id, product_id=product_id, day=day,
                        measurement=measurement, password=password, witness=_witness(),
                        discrepancy_reason=values.discrepancy(), investigation_note=values.note or None)
    except DomainError as exc:
        db().rollback()
        return _render_worksheet(location_id, product_id, day, values, preview=result,
                                 error=message_for(_code(exc)), status=_status(exc))
    flash(gettext("The day is closed and locked."), "info")
    return redirect(url_for("pharmacy.worksheet", location_id=location_id, product_id=product_id,
                            day=format_day(day)))


# ---- registers and reports ------------------------------------------------------------------------

PDF = "application/pdf"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _render_reports(error: str | None = None, status: int = 200):
    _pharmacist()
    today = context.today()
    first = today.replace(day=1)
    last_month = first - timedelta(days=1)
    return _render("pharmacy/reports.html", status, error=error, products=_products(), first=format_day(first),
                   last=format_day(today), month=last_month.month, year=last_month.year,
                   day_text=format_day(today - timedelta(days=1)))


@bp.get("/reports", endpoint="reports")
@role_required(Role.PHARMACIST)
def reports_page():
    return _render_reports()[0]


def _file(document, fmt: str) -> Response:
    if fmt == "xlsx":
        body, mimetype, suffix = reports.render_xlsx(document), XLSX, "xlsx"
    else:
        body, mimetype, suffix = reports.render_pdf(document), PDF, "pdf"
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{document.code}.{suffix}"'})


@bp.get("/reports/<kind>")
@role_required(Role.PHARMACIST)
def download(kind: str):
    user = _pharmacist()
    args = request.args
    fmt = args.get("format", "pdf")
    if fmt not in ("pdf", "xlsx") or kind not in ("daily", "stock", "monthly"):
        abort(404)
    product_id = _int(args.get("product_id"))
    try:
        if kind == "daily":
            document = reports.daily_dispensing_register(db(), user, day=_day(args.get("day"), context.today()),
                                                         product_id=product_id)
        elif kind == "stock":
            try:
                first, last = parse_day(args.get("first")), parse_day(args.get("last"))
            except ValueError as exc:
                raise ValidationFailed("dates", code="PERIOD_INVALID_DATES") from exc
            if first is None or last is None:
                raise ValidationFailed("dates", code="PERIOD_INVALID_DATES")
            document = reports.stock_register(db(), user, first=first, last=last, product_id=product_id)
        else:
            year, month = _int(args.get("year")), _int(args.get("month"))
            if year is None or month is None or not 1 <= month <= 12 or not 2000 <= year <= 2100:
                raise ValidationFailed("month", code="PERIOD_INVALID")
            document = reports.monthly_report(db(), user, year=year, month=month)
    except DomainError as exc:
        return _render_reports(message_for(_code(exc)), _status(exc))
    return _file(document, fmt)

