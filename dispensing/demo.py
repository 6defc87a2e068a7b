"""The demo clinic: users for every role, three counters with simulated devices, products, lots
and bottles, about 200 patients across the four phases with signed orders and 60 days of dose
history booked through the stock ledger. Deterministic (fixed random seed) so screenshots and
benchmarks are repeatable.

Demo passwords are documented in the README; never load the demo into a production database.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from dispensing import audit, rules
from dispensing.accounts import hash_password
from dispensing.clock import utcnow
from dispensing.models import (
    Assessment,
    Calibration,
    CalibrationMethod,
    Clinic,
    ConcomitantMedication,
    Container,
    ContainerAttachment,
    Counter,
    Device,
    DeviceKind,
    Dose,
    DoseEvent,
    DoseKind,
    DoseState,
    EcgResult,
    Location,
    LocationKind,
    Lot,
    MeasureMethod,
    MedicationOrder,
    MovementKind,
    Order,
    OrderKind,
    OrderPart,
    OrderStatus,
    Patient,
    PatientPhoto,
    Phase,
    Product,
    ProductKind,
    Reconciliation,
    ReconciliationStatus,
    Role,
    Sex,
    StockMovement,
    StockSnapshot,
    User,
    UserRole,
)
from dispensing.names import search_key
from dispensing.patients import raise_interaction_follow_ups
from dispensing.rulebook import RuleBook
from dispensing.settings import PROJECT_ROOT
from dispensing.stock.ledger import LEDGER_QUANTUM, ZERO, Item, Term, Terms, term_for
from dispensing.stock.reconciliation import (
    Tolerance,
    Worksheet,
    allocate_variance,
    variance_percent,
    volume_from_weight,
    within_tolerance,
)

DEMO_PASSWORD = "MMT-demo-2026"
DEMO_USERS = [
    ("admin", "Trần Quản Trị", {Role.ADMIN}),
    ("bacsi1", "BS. Nguyễn Thị Hồng", {Role.PHYSICIAN}),
    ("bacsi2", "BS. Lê Văn Đức", {Role.PHYSICIAN}),
    ("dieuduong1", "Phạm Thị Lan", {Role.NURSE}),
    ("dieuduong2", "Võ Minh Tuấn", {Role.NURSE}),
    ("dieuduong3", "Đặng Thu Hà", {Role.NURSE}),
    ("duocsi1", "DS. Hoàng Văn Nam", {Role.PHARMACIST}),
    ("duocsi2", "DS. Bùi Thị Mai", {Role.PHARMACIST}),
    # Head of unit (trưởng đơn vị): countersigns anomaly records and quarantine decisions.
    ("truongdonvi", "BS. Trịnh Quốc Khánh", {Role.UNIT_HEAD}),
]

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý"]
MIDDLE_M = ["Văn", "Đức", "Minh", "Quang", "Hữu", "Thanh", "Công", "Xuân"]
MIDDLE_F = ["Thị", "Ngọc", "Thu", "Thanh", "Kim"]
GIVEN_M = ["An", "Bình", "Cường", "Dũng", "Hùng", "Hải", "Long", "Nam", "Phong", "Quân", "Sơn", "Tuấn", "Việt", "Khoa", "Lộc", "Thắng"]
GIVEN_F = ["Hoa", "Lan", "Mai", "Hương", "Linh", "Trang", "Yến", "Thảo"]

ML_PER_MG = Decimal("0.1")  # 10 mg/ml lots
CALIBRATION_ML = Decimal("35.00")
# Pump closes that find a small hao hụt (−) or dư thừa (+): drips, evaporation, a pump's last
# hundredths. Only those within the clinic's tolerance are used; the others close exact.
CLOSE_VARIANCES_ML = [Decimal(v) for v in ("-1.25", "-0.80", "-0.45", "-0.20", "0.30", "0.65")]
CLOSE_VARIANCE_SHARE = 0.1


@dataclass
class _Pump:
    counter: Counter
    device: Device
    location: Location
    nurse: User
    container: Container | None = None
    attachment: dict | None = None  # the ContainerAttachment row of the open bottle


class _Books:
    """The demo's running account of the lines it writes: what each location holds by lot/bottle
    and the §12 terms of each location, product and day, so it can close its days as the
    reconciliation service would (same terms, same worksheet) without reading the ledger back."""

    def __init__(self) -> None:
        self.held: dict[tuple[int, int], dict[Item, Decimal]] = {}
        self.terms: dict[tuple[int, int, date], Terms] = {}

    def book(self, line: dict) -> None:
        item = (line["lot_id"], line["container_id"])
        quantity, kind = line["quantity"], line["kind"]
        for location_id, enters in ((line["to_location_id"], True), (line["from_location_id"], False)):
            if location_id is None:
                continue
            key = (location_id, line["product_id"])
            held = self.held.setdefault(key, {})
            held[item] = held.get(item, ZERO) + (quantity if enters else -quantity)
            self.terms.setdefault((*key, line["business_date"]), Terms()).add(term_for(kind, enters), quantity, kind)

    def items(self, location_id: int, product_id: int) -> dict[Item, Decimal]:
        """Non-zero balances by lot/bottle now (what ``item_balances`` would return)."""
        return {item: value for item, value in self.held.get((location_id, product_id), {}).items() if value != 0}


@dataclass
class _Plan:
    """Daily doses of one patient: date → list of (order, part_no, mg)."""

    days: dict[date, list[tuple[Order, int, Decimal]]] = field(default_factory=dict)


def has_data(session: Session) -> bool:
    """Return True when the database already holds a clinic."""
    return bool(session.scalar(select(func.count()).select_from(Clinic)))


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _photo(name: str, rng: random.Random) -> bytes:
    """A plain placeholder portrait: a coloured background with the person's initials."""
    from PIL import Image, ImageDraw, ImageFont

    colour = tuple(rng.randint(90, 200) for _ in range(3))
    image = Image.new("RGB", (120, 150), colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((35, 20, 85, 70), fill=(240, 240, 240))
    draw.rectangle((25, 80, 95, 150), fill=(240, 240, 240))
    initials = "".join(part[0] for part in name.split()[-2:])
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", 20)
    except OSError:
        font = ImageFont.load_default()
    draw.text((60, 112), initials, fill=(40, 40, 40), anchor="mm", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def seed(
    session: Session,
    *,
    settings=None,
    days: int = 60,
    patients: int = 200,
    today: date | None = None,
    seed_value: int = 20261122,
    photos: bool = True,
    closed_until: date | None = None,
) -> str:
    """Load the demo clinic into an empty database (flushed, not committed) and return a summary.

    Every day up to ``closed_until`` (default yesterday) is closed at every location that held
    stock, as a clinic closes each evening; today stays open.
    """
    rng = random.Random(seed_value)
    tz_name = settings.clinic_timezone if settings else "Asia/Ho_Chi_Minh"
    tz = ZoneInfo(tz_name)
    now = utcnow()
    today = today or now.astimezone(tz).date()
    start = today - timedelta(days=days)
    closed_until = min(closed_until or today - timedelta(days=1), today - timedelta(days=1))

    clinic = Clinic(code="HN-DD", name="Cơ sở điều trị Methadone Đống Đa", timezone=tz_name)
    session.add(clinic)
    session.flush()

    password_hash = hash_password(DEMO_PASSWORD)
    users: dict[str, User] = {}
    for username, full_name, roles in DEMO_USERS:
        user = User(
            clinic_id=clinic.id,
            username=username,
            full_name=full_name,
            password_hash=password_hash,
            role_rows=[UserRole(role=role) for role in roles],
        )
        if Role.PHYSICIAN in roles:
            user.practice_start_date = date(2012, 9, 1)
            user.mmt_certificate_no = f"CC-MMT-{rng.randint(1000, 9999)}"
        users[username] = user
        session.add(user)
    session.flush()
    physicians = [users["bacsi1"], users["bacsi2"]]
    pharmacist = users["duocsi1"]

    # Products, lots and bottles.
    methadone = Product(code="MET10", name="Methadone 10 mg/ml dung dịch uống", kind=ProductKind.LIQUID,
                        unit="ml", controlled=True, active_ingredient="methadone hydrochloride", strength="10 mg/ml")
    unit_products = [
        Product(code="BUP8", name="Buprenorphine 8 mg viên ngậm dưới lưỡi", kind=ProductKind.UNIT_DOSE, unit="tablet",
                controlled=True, active_ingredient="buprenorphine", strength="8 mg", gtin="08936014580011"),
        Product(code="TLD", name="TLD (Tenofovir/Lamivudine/Dolutegravir) viên", kind=ProductKind.UNIT_DOSE,
                unit="tablet", active_ingredient="tenofovir/lamivudine/dolutegravir", strength="300/300/50 mg",
                gtin="08904159100012"),
        Product(code="INH300", name="Isoniazid 300 mg viên", kind=ProductKind.UNIT_DOSE, unit="tablet",
                active_ingredient="isoniazid", strength="300 mg", gtin="08936036020014"),
        Product(code="CEDEMEX", name="Cedemex viên nang", kind=ProductKind.UNIT_DOSE, unit="capsule",
                active_ingredient="herbal (Cedemex)", strength="1 capsule", gtin="08935206010015"),
    ]
    session.add_all([methadone, *unit_products])
    session.flush()
    verified_at = _local(start - timedelta(days=1), time(9), tz)
    lots = [
        Lot(product_id=methadone.id, lot_number="DNP-2611", expiry_date=date(today.year + 2, 3, 31),
            manufacturer="Danapha", concentration_mg_per_ml=Decimal("10.000"), density_g_per_ml=Decimal("1.0400"),
            concentration_verified_by_id=pharmacist.id, concentration_verified_at=verified_at),
        Lot(product_id=methadone.id, lot_number="HT-2609", expiry_date=date(today.year + 1, 9, 30),
            manufacturer="Hà Tây", concentration_mg_per_ml=Decimal("10.000"), density_g_per_ml=Decimal("1.0380"),
            concentration_verified_by_id=pharmacist.id, concentration_verified_at=verified_at),
    ]
    unit_lots = [
        Lot(product_id=product.id, lot_number=f"{product.code}-L{rng.randint(100, 999)}",
            expiry_date=date(today.year + 1, 12, 31), gtin=product.gtin, manufacturer="—")
        for product in unit_products
    ]
    session.add_all([*lots, *unit_lots])
    session.flush()

    safe = Location(clinic_id=clinic.id, code="KET-1", name="Két thuốc gây nghiện", kind=LocationKind.SAFE)
    quarantine = Location(clinic_id=clinic.id, code="BIET-TRU", name="Khu biệt trữ", kind=LocationKind.QUARANTINE)
    session.add_all([safe, quarantine])

    nurses = [users["dieuduong1"], users["dieuduong2"], users["dieuduong3"]]
    pumps: list[_Pump] = []
    for n in range(1, 4):
        counter = Counter(clinic_id=clinic.id, code=f"Q{n}", name=f"Quầy {n}")
        session.add(counter)
        session.flush()
        pump = Device(clinic_id=clinic.id, counter_id=counter.id, code=f"PUMP-{n}", kind=DeviceKind.PUMP,
                      driver="ne1000", port_url="sim://ne1000", serial_number=f"NE1K-{7000 + n}",
                      settings={"address": 0, "safe_mode_timeout_s": 10, "rate_ml_min": "120",
                                "ceiling_ml": "25.00"})
        balance = Device(clinic_id=clinic.id, counter_id=counter.id, code=f"BAL-{n}", kind=DeviceKind.BALANCE,
                         driver="mt-sics", port_url="sim://mt-sics", serial_number=f"MT-{8800 + n}")
        scanner = Device(clinic_id=clinic.id, counter_id=counter.id, code=f"SCAN-{n}", kind=DeviceKind.SCANNER,
                         driver="keyboard-wedge", port_url="hid://keyboard")
        session.add_all([pump, balance, scanner])
        session.flush()
        reservoir = Location(clinic_id=clinic.id, code=f"BOM-{n}", name=f"Bình chứa bơm quầy {n}",
                             kind=LocationKind.PUMP, device_id=pump.id, capacity=Decimal("1000"))
        session.add(reservoir)
        pumps.append(_Pump(counter, pump, reservoir, nurses[n - 1]))
    counter_shelf = Location(clinic_id=clinic.id, code="QUAY-THUOC", name="Tủ thuốc tại quầy", kind=LocationKind.COUNTER)
    session.add(counter_shelf)
    session.flush()

    movements: list[dict] = []
    books = _Books()
    # Explicit ids keep the bulk inserts batched (RETURNING would go row by row on SQLite) and let
    # attachments and closes name their lines; PostgreSQL sequences are moved past them at the end.
    next_id = {
        model: (session.scalar(select(func.max(model.id))) or 0) + 1
        for model in (Assessment, Dose, StockMovement, Reconciliation, ContainerAttachment)
    }

    def new_id(model) -> int:
        next_id[model] += 1
        return next_id[model] - 1

    def move(kind, day, at, lot, quantity, *, container=None, src=None, dst=None, dose_id=None, reason=None,
             witness=None, product=methadone, by=pharmacist) -> int:
        line = dict(
            id=new_id(StockMovement), clinic_id=clinic.id, business_date=day, occurred_at=at, kind=kind,
            product_id=product.id, lot_id=lot.id, container_id=container.id if container else None,
            from_location_id=src.id if src else None, to_location_id=dst.id if dst else None,
            quantity=Decimal(quantity).quantize(LEDGER_QUANTUM), dose_id=dose_id, reason=reason,
            recorded_by_id=by.id, witness_id=witness.id if witness else None, created_at=now)
        movements.append(line)
        books.book(line)
        return line["id"]

    def flush_movements():
        if movements:
            session.execute(insert(StockMovement), movements)
            movements.clear()

    # Receipt of bottles into the safe the day before the history starts.
    receipt_day = start - timedelta(days=1)
    receipt_at = _local(receipt_day, time(14), tz)
    bottles: list[Container] = []
    bottle_count = max(8, (patients * 85 * (days + 10)) // 10_000 + 6)
    for i in range(bottle_count):
        lot = lots[0] if i % 3 else lots[1]
        bottles.append(Container(clinic_id=clinic.id, lot_id=lot.id, label_code=f"C{100001 + i}",
                                 nominal_quantity=Decimal("1000")))
    session.add_all(bottles)
    session.flush()
    # FEFO: the lot expiring first leaves the safe first.
    lot_by_id = {lot.id: lot for lot in lots}
    bottles.sort(key=lambda b: (lot_by_id[b.lot_id].expiry_date, b.label_code))
    for bottle in bottles:
        move(MovementKind.RECEIPT, receipt_day, receipt_at, lot_by_id[bottle.lot_id], Decimal("1000"),
             container=bottle, dst=safe, reason="Phiếu nhập demo")
    for lot in unit_lots:
        product = next(p for p in unit_products if p.id == lot.product_id)
        move(MovementKind.RECEIPT, receipt_day, receipt_at, lot, Decimal("500"), dst=safe, product=product,
             reason="Phiếu nhập demo")
        move(MovementKind.TRANSFER, receipt_day, receipt_at + timedelta(minutes=30), lot, Decimal("200"),
             src=safe, dst=counter_shelf, product=product)
    next_bottle = iter(bottles)
    locations = [safe, quarantine, *(pump.location for pump in pumps), counter_shelf]
    all_products = [methadone, *unit_products]
    reconciliations: list[dict] = []
    snapshots: list[dict] = []
    attachments: list[dict] = []
    opened: set[int] = set()  # bottles that have been open on a pump
    close_rng = random.Random(seed_value + 1)  # closes draw apart, so the dose history stays the same
    tolerance = Tolerance(pct=clinic.reconcile_tolerance_pct, absolute=clinic.reconcile_tolerance_ml)

    def bottle_left(pump: _Pump) -> Decimal:
        if pump.container is None:
            return ZERO
        return books.items(pump.location.id, methadone.id).get((pump.container.lot_id, pump.container.id), ZERO)

    def swap_bottle(pump: _Pump, day: date, at: datetime) -> None:
        """Take the pump's open bottle off, what is left in it back to the safe (as
        ``stock.detach_container``), and open the next sealed bottle on it, its whole content moved
        from the safe (as ``stock.attach_container``): a pump has one open bottle."""
        if pump.container is not None:
            old, remaining = pump.container, bottle_left(pump)
            line_id = None
            if remaining > 0:
                line_id = move(MovementKind.TRANSFER, day, at, lot_by_id[old.lot_id], remaining, container=old,
                               src=pump.location, dst=safe, reason="detach")
            pump.attachment.update(detached_at=at, detached_by_id=pharmacist.id, remaining=remaining,
                                   detach_movement_id=line_id)
            audit.record(session, "stock.container.detached", actor_id=pharmacist.id, clinic_id=clinic.id,
                         entity_type="ContainerAttachment", entity_id=pump.attachment["id"], at=at,
                         data={"label_code": old.label_code, "remaining": remaining})
            at += timedelta(minutes=1)
        bottle = next(next_bottle)
        in_safe = [container_id for (_lot, container_id), amount in books.items(safe.id, methadone.id).items()
                   if container_id is not None and amount > 0]
        by_id = {b.id: b for b in bottles}
        fefo = min(in_safe, key=lambda c: (lot_by_id[by_id[c].lot_id].expiry_date, c not in opened,
                                           by_id[c].label_code))
        quantity = books.items(safe.id, methadone.id)[(bottle.lot_id, bottle.id)]
        line_id = move(MovementKind.TRANSFER, day, at, lot_by_id[bottle.lot_id], quantity, container=bottle,
                       src=safe, dst=pump.location, reason="attach")
        pump.container = bottle
        pump.attachment = dict(
            id=new_id(ContainerAttachment), clinic_id=clinic.id, container_id=bottle.id,
            location_id=pump.location.id, attached_at=at, attached_by_id=pharmacist.id, attach_movement_id=line_id,
            detached_at=None, detached_by_id=None, remaining=None, detach_movement_id=None, created_at=now)
        attachments.append(pump.attachment)
        opened.add(bottle.id)
        audit.record(session, "stock.container.attached", actor_id=pharmacist.id, clinic_id=clinic.id,
                     entity_type="ContainerAttachment", entity_id=pump.attachment["id"], at=at,
                     data={"label_code": bottle.label_code, "location_id": pump.location.id, "quantity": quantity,
                           "fefo_first": fefo == bottle.id})

    def morning(pump: _Pump, day: date) -> None:
        """The pharmacist's morning at a pump: a bottle that cannot give the calibration liquid is
        changed, then the pump is calibrated gravimetrically and the liquid booked as waste."""
        if bottle_left(pump) < CALIBRATION_ML:
            swap_bottle(pump, day, _local(day, time(5, 50), tz))
        at = _calibrate(session, pump, day, tz, pharmacist, rng)
        move(MovementKind.CALIBRATION, day, at, lot_by_id[pump.container.lot_id], CALIBRATION_ML,
             container=pump.container, src=pump.location, reason="Dịch hiệu chuẩn bơm")

    def close_books(day: date) -> None:
        """Close ``day`` at every location and product that held or moved stock, as the
        pharmacist does each evening with ``stock.close_day``: worksheet, measured close (pumps
        weighed on the balance, the safe's liquid by volume, tablets counted), the variance as
        hao hụt / dư thừa adjustment lines, a snapshot of every lot/bottle, locked and signed."""
        if day > closed_until:
            return
        at = _local(day, time(17, 30), tz)
        for location in sorted(locations, key=lambda loc: loc.id):
            for product in sorted(all_products, key=lambda prod: prod.id):
                terms = books.terms.get((location.id, product.id, day), Terms())
                items = books.items(location.id, product.id)
                sheet = Worksheet(
                    location_id=location.id, product_id=product.id, business_date=day,
                    opening=sum(items.values(), ZERO) - terms.net, received=terms[Term.RECEIVED],
                    transferred_in=terms[Term.TRANSFERRED_IN], transferred_out=terms[Term.TRANSFERRED_OUT],
                    issued=terms[Term.ISSUED], waste=terms[Term.WASTE], other_out=terms[Term.OTHER_OUT],
                    adjusted=terms.adjusted, issued_by_kind={})
                if not sheet.active:
                    continue
                at += timedelta(minutes=2)
                _close(location, product, day, at, sheet, items)

    def _close(location, product, day, at, sheet, items) -> None:
        expected = sheet.expected_close
        pump = next((p for p in pumps if p.location is location), None)
        lots_held = sorted({lot_id for (lot_id, _c), amount in items.items() if amount > 0})
        densities = {lot_by_id[lot_id].density_g_per_ml for lot_id in lots_held if lot_id in lot_by_id}
        variance = ZERO
        if pump is not None and close_rng.random() < CLOSE_VARIANCE_SHARE:
            candidate = close_rng.choice(CLOSE_VARIANCES_ML)
            if within_tolerance(candidate, sheet.base, tolerance) and expected + candidate >= 0:
                variance = candidate
        measured = expected + variance
        if product.kind is ProductKind.UNIT_DOSE:
            method = MeasureMethod.COUNT
        elif pump is not None and len(densities) == 1 and len(lots_held) == len(densities):
            method = MeasureMethod.BALANCE
        else:
            method = MeasureMethod.CYLINDER
        if method is MeasureMethod.BALANCE:
            # The bottle on the balance: its net weight to the balance's 0.01 g, back to ml by the
            # lot's density exactly as the service does (density > 1 g/ml, so no ml is lost).
            density = densities.pop()
            measured, detail = volume_from_weight((measured * density).quantize(Decimal("0.01")), density)
            detail["method"] = method.value
            detail["lot_ids"] = lots_held
        else:
            detail = {"method": method.value, "value": str(measured)}
        variance = measured - expected
        within = within_tolerance(variance, sheet.base, tolerance)
        if not within:  # pragma: no cover - only variances within tolerance are drawn
            raise AssertionError("demo close outside tolerance")
        row_id = new_id(Reconciliation)
        attached = (pump.container.lot_id, pump.container.id) if pump is not None and pump.container else None
        after = dict(items)
        for (lot_id, container_id), amount in allocate_variance(
            variance, items, attached=attached, fallback=None,
            expiry={lot.id: lot.expiry_date for lot in [*lots, *unit_lots]},
        ):
            lot = next(lot for lot in [*lots, *unit_lots] if lot.id == lot_id)
            move(MovementKind.ADJUSTMENT, day, at, lot, abs(amount), product=product,
                 container=next((b for b in bottles if b.id == container_id), None),
                 src=location if amount < 0 else None, dst=location if amount > 0 else None,
                 reason=f"reconciliation {row_id}")
            after[(lot_id, container_id)] = after.get((lot_id, container_id), ZERO) + amount
        reconciliations.append(dict(
            id=row_id, clinic_id=clinic.id, location_id=location.id, product_id=product.id, business_date=day,
            status=ReconciliationStatus.CLOSED, opening=sheet.opening, received=sheet.received,
            transferred_in=sheet.transferred_in, transferred_out=sheet.transferred_out, issued=sheet.issued,
            waste=sheet.waste, other_out=sheet.other_out, adjusted=sheet.adjusted, expected_close=expected,
            measured_close=measured, measure_method=method, measure_detail=detail, variance=variance,
            variance_pct=variance_percent(variance, sheet.base), within_tolerance=within,
            loss=-variance if variance < 0 else ZERO, surplus=variance if variance > 0 else ZERO,
            discrepancy_reason=None, investigation_note=None, closed_by_id=pharmacist.id, witness_id=None,
            closed_at=at, created_at=now))
        snapshots.extend(
            dict(clinic_id=clinic.id, location_id=location.id, product_id=product.id, business_date=day,
                 lot_id=lot_id, container_id=container_id, balance=value)
            for (lot_id, container_id), value in sorted(after.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
            if value != 0
        )
        audit.record(session, "stock.reconciliation.signed", actor_id=pharmacist.id, clinic_id=clinic.id,
                     entity_type="Reconciliation", entity_id=row_id, at=at,
                     data={"role": "pharmacist", "business_date": day, "location_id": location.id,
                           "expected_close": expected, "measured_close": measured, "variance": variance,
                           "within_tolerance": within})

    close_books(receipt_day)

    # Patients and their plans.
    phases = ([Phase.INDUCTION] * max(1, patients * 6 // 100) + [Phase.TITRATION] * max(1, patients * 15 // 100)
              + [Phase.TAPER] * max(1, patients * 9 // 100))
    phases += [Phase.MAINTENANCE] * (patients - len(phases))
    rng.shuffle(phases)
    patient_rows: list[tuple[Patient, _Plan, _Pump]] = []
    ecgs: list[EcgResult] = []
    meds: list[ConcomitantMedication] = []
    orders: list[Order] = []

    def new_order(patient, phase, valid_from, valid_until, parts_mg, supersedes=None, physician=None):
        physician = physician or rng.choice(physicians)
        order = Order(
            clinic_id=clinic.id, patient_id=patient.id, kind=OrderKind.DOSING, status=OrderStatus.SIGNED,
            phase=phase, daily_total_mg=sum(parts_mg, Decimal(0)), valid_from=valid_from, valid_until=valid_until,
            supersedes_id=supersedes.id if supersedes else None, created_by_id=physician.id,
            signed_by_id=physician.id, signed_at=_local(valid_from - timedelta(days=1), time(15), tz),
            rule_table_version="vn-3140@2010.1",
            parts=[OrderPart(part_no=i + 1, dose_mg=mg) for i, mg in enumerate(parts_mg)],
        )
        session.add(order)
        session.flush()
        orders.append(order)
        return order

    def cover(plan, order, first, last):
        day = max(first, start)
        while day <= min(last, today):
            plan.days[day] = [(order, part.part_no, part.dose_mg) for part in order.parts]
            day += timedelta(days=1)

    for i in range(patients):
        female = rng.random() < 0.12
        name = " ".join([rng.choice(FAMILY), rng.choice(MIDDLE_F if female else MIDDLE_M),
                         rng.choice(GIVEN_F if female else GIVEN_M)])
        phase = phases[i]
        if phase == Phase.INDUCTION:
            treatment_start = today - timedelta(days=rng.randint(0, 2))
        elif phase == Phase.TITRATION:
            treatment_start = today - timedelta(days=rng.randint(14, 40))
        elif phase == Phase.TAPER:
            treatment_start = today - timedelta(days=rng.randint(420, 2200))
        else:
            treatment_start = today - timedelta(days=rng.randint(90, 2500))
        patient = Patient(
            clinic_id=clinic.id, code=f"{clinic.code}-{i + 1:05d}", card_barcode=f"P{i + 1:06d}", full_name=name,
            search_name=search_key(name), sex=Sex.FEMALE if female else Sex.MALE,
            date_of_birth=date(rng.randint(1965, 2000), rng.randint(1, 12), rng.randint(1, 28)),
            treatment_start_date=treatment_start, hiv=rng.random() < 0.15, tb=rng.random() < 0.04,
            pregnant=female and rng.random() < 0.1,
        )
        session.add(patient)
        session.flush()
        if photos:
            session.add(PatientPhoto(patient_id=patient.id, media_type="image/png", data=_photo(name, rng)))
        plan = _Plan()
        pump = pumps[i % len(pumps)]
        if phase in (Phase.INDUCTION, Phase.TITRATION):
            induction_doses = [Decimal(20), Decimal(20), Decimal(25)]
            previous = None
            for d, mg in enumerate(induction_doses):
                day = treatment_start + timedelta(days=d)
                if day > today:
                    break
                previous = new_order(patient, Phase.INDUCTION, day, day, [mg], previous)
                cover(plan, previous, day, day)
            if phase == Phase.TITRATION:
                mg = Decimal(25)
                target = Decimal(rng.choice([50, 60, 70, 80]))
                day = treatment_start + timedelta(days=3)
                while day <= today:
                    mg = min(target, mg + rng.choice([5, 10]))
                    window = 4 if mg < target else 5
                    valid_until = day + timedelta(days=window - 1)
                    previous = new_order(patient, Phase.TITRATION, day, valid_until, [mg], previous)
                    cover(plan, previous, day, valid_until)
                    day = valid_until + timedelta(days=1)
        else:
            mg = Decimal(rng.choice([45, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140]))
            split = phase == Phase.MAINTENANCE and rng.random() < 0.04
            taper_start = today - timedelta(days=rng.randint(20, 45)) if phase == Phase.TAPER else None
            day = start - timedelta(days=rng.randint(0, 29))
            previous = None
            while day <= today:
                if taper_start and day >= taper_start:
                    mg = (mg * Decimal("0.9")).quantize(Decimal(1))
                    valid_until = day + timedelta(days=13)
                    previous = new_order(patient, Phase.TAPER, day, valid_until, [mg], previous)
                else:
                    valid_until = day + timedelta(days=29)
                    if taper_start and valid_until >= taper_start:
                        valid_until = taper_start - timedelta(days=1)
                    parts = [mg * Decimal("0.6"), mg * Decimal("0.4")] if split else [mg]
                    previous = new_order(patient, Phase.MAINTENANCE, day, valid_until, parts, previous)
                cover(plan, previous, day, valid_until)
                day = valid_until + timedelta(days=1)
            if mg > 100:
                ecgs.append(EcgResult(patient_id=patient.id, taken_on=today - timedelta(days=rng.randint(3, 25)),
                                      qtc_ms=rng.choice([418, 432, 446, 458, 471]), recorded_by_id=physicians[0].id))
        ecgs.append(EcgResult(patient_id=patient.id, taken_on=treatment_start, qtc_ms=rng.randint(395, 440),
                              recorded_by_id=physicians[0].id, note="ECG ban đầu"))
        if patient.hiv:
            meds.append(ConcomitantMedication(patient_id=patient.id, drug_name="TLD",
                                              started_on=treatment_start, recorded_by_id=physicians[0].id))
        patient_rows.append((patient, plan, pump))

    # A few patients who have just started an interacting drug, so watch flags show up.
    # The rules raise their physician task and watch flag, as when a physician records the drug.
    rule_set = RuleBook(settings.rules_dir if settings else PROJECT_ROOT / "config" / "rules").for_clinic(clinic)
    for patient, _plan, _pump in patient_rows[5:8]:
        drug, started_on = rng.choice(["efavirenz", "rifampicin"]), today - timedelta(days=rng.randint(2, 9))
        meds.append(ConcomitantMedication(patient_id=patient.id, drug_name=drug, started_on=started_on,
                                          recorded_by_id=physicians[1].id))
        raise_interaction_follow_ups(session, patient, rules.evaluate_medication_change(
            rule_set, rules.MedicationChange(drug, rules.MedicationChangeKind.STARTED, started_on)))
    # Unit-dose medicines given at the counter: TLD for patients living with HIV (at least two, so
    # the counter always has some to show), isoniazid preventive therapy for those with TB.
    units_by_code = {p.code: p for p in unit_products}
    if sum(1 for row in patient_rows if row[0].hiv) < 2:
        for patient, _plan, _pump in patient_rows[-2:]:
            if not patient.hiv:
                patient.hiv = True
                meds.append(ConcomitantMedication(patient_id=patient.id, drug_name="TLD",
                                                  started_on=patient.treatment_start_date,
                                                  recorded_by_id=physicians[0].id))
    for patient, _plan, _pump in patient_rows:
        for wanted, code in ((patient.hiv, "TLD"), (patient.tb, "INH300")):
            if wanted:
                session.add(MedicationOrder(
                    clinic_id=clinic.id, patient_id=patient.id, product_id=units_by_code[code].id,
                    units_per_administration=Decimal("1"), administrations_per_day=1,
                    valid_from=max(patient.treatment_start_date, start), valid_until=today + timedelta(days=27),
                    instructions="Uống 1 viên tại quầy, có giám sát", signed_by_id=physicians[0].id,
                    signed_at=_local(start - timedelta(days=1), time(15), tz)))
    session.add_all(ecgs + meds)

    # Recent runs of missed days for some maintenance patients: 3, 4, 5 and 31 days.
    missed_runs: dict[int, set[date]] = {}
    maintenance_rows = [row for row in patient_rows if row[1].days and row[0].treatment_start_date < start]
    for (patient, _plan, _pump), run in zip(maintenance_rows[10:18], [3, 3, 4, 4, 5, 6, 31, 2], strict=False):
        missed_runs[patient.id] = {today - timedelta(days=k) for k in range(1, run + 1)}

    # Dose history up to yesterday; each morning the pharmacist calibrates the pumps, and each
    # evening closes the day (chốt sổ). Today stays open for the demo pharmacist to close.
    doses = 0
    for day_offset in range(days):
        day = start + timedelta(days=day_offset)
        for pump in pumps:
            morning(pump, day)
        assessments, dose_rows, dose_pumps = [], [], []
        for patient, plan, pump in patient_rows:
            if day not in plan.days or day in missed_runs.get(patient.id, ()) or rng.random() < 0.02:
                continue
            for order, part_no, mg in plan.days[day]:
                ml = (mg * ML_PER_MG).quantize(Decimal("0.01"))
                hour = 13 if part_no == 2 else 6
                at = _local(day, time(hour, 30), tz) + timedelta(seconds=rng.randint(0, 4 * 3600))
                assessments.append(dict(
                    clinic_id=clinic.id, patient_id=patient.id, business_date=day, assessed_at=at,
                    assessed_by_id=pump.nurse.id, created_at=now,
                    cows=rng.randint(5, 16) if order.phase == Phase.INDUCTION else None))
                dose_rows.append(dict(
                    clinic_id=clinic.id, patient_id=patient.id, order_id=order.id, part_no=part_no,
                    business_date=day, kind=DoseKind.OBSERVED, state=DoseState.COMPLETED,
                    idempotency_key=f"demo-{patient.id}-{day.isoformat()}-{part_no}", product_id=methadone.id,
                    lot_id=None, container_id=None, counter_id=pump.counter.id,
                    device_id=pump.device.id, planned_mg=mg, planned_ml=ml, delivered_ml=ml,
                    nurse_id=pump.nurse.id, requested_at=at, finished_at=at + timedelta(seconds=35),
                    created_at=now))
                dose_pumps.append(pump)
        if dose_rows:
            for row, assessment in zip(dose_rows, assessments, strict=True):
                assessment["id"] = row["assessment_id"] = new_id(Assessment)
                row["id"] = new_id(Dose)
            # Each pump gives its doses in time order from its open bottle; when the bottle cannot
            # give the next dose, it is changed just before it.
            for pump in pumps:
                previous_end = None
                for row in sorted((r for r, p in zip(dose_rows, dose_pumps, strict=True) if p is pump),
                                  key=lambda r: (r["requested_at"], r["id"])):
                    if bottle_left(pump) < row["delivered_ml"]:
                        swap_at = row["requested_at"] - timedelta(minutes=2)
                        swap_bottle(pump, day, max(swap_at, previous_end) if previous_end else swap_at)
                    row["lot_id"], row["container_id"] = pump.container.lot_id, pump.container.id
                    move(MovementKind.DOSE, day, row["finished_at"], lot_by_id[row["lot_id"]], row["delivered_ml"],
                         container=pump.container, src=pump.location, dose_id=row["id"], by=pump.nurse)
                    previous_end = row["finished_at"]
            session.execute(insert(Assessment), assessments)
            session.execute(insert(Dose), dose_rows)
            events = []
            for row in dose_rows:
                events.append(dict(dose_id=row["id"], state=DoseState.REQUESTED, occurred_at=row["requested_at"],
                                   user_id=row["nurse_id"], detail=None, created_at=now))
                events.append(dict(dose_id=row["id"], state=DoseState.COMPLETED, occurred_at=row["finished_at"],
                                   user_id=row["nurse_id"], detail={"measured_ml": str(row["delivered_ml"])},
                                   created_at=now))
            session.execute(insert(DoseEvent), events)
            doses += len(dose_rows)
        close_books(day)
        flush_movements()
    # Calibrate the pumps for today as well, so the counters can work this morning; each pump has
    # its one open bottle. Today is not closed.
    for pump in pumps:
        morning(pump, today)
    flush_movements()
    session.flush()
    # After the lines they name: attachments (attach/detach lines), closes and their snapshots.
    for model, rows in ((ContainerAttachment, attachments), (Reconciliation, reconciliations),
                        (StockSnapshot, snapshots)):
        if rows:
            session.execute(insert(model), rows)
    if session.get_bind().dialect.name == "postgresql":
        for table in ("assessment", "dose", "stock_movement", "reconciliation", "container_attachment"):
            sql = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 - constant table names
            session.execute(text(sql))

    audit.record(session, "demo.seeded", actor_id=None, clinic_id=clinic.id, entity=clinic,
                 data={"patients": patients, "days": days, "doses": doses})
    return (f"demo clinic {clinic.code}: {len(users)} users, {len(pumps)} counters, {patients} patients, "
            f"{len(orders)} orders, {doses} doses over {days} days; password for every demo user: {DEMO_PASSWORD}")


def _calibrate(session, pump: _Pump, day: date, tz, pharmacist, rng) -> datetime:
    """Record the morning gravimetric calibration of a pump and return when it was done (its
    liquid is booked as waste by the caller)."""
    at = _local(day, time(6, 0), tz)
    replicates = []
    for nominal in (Decimal("5.00"), Decimal("10.00"), Decimal("20.00")):
        measured = nominal * (Decimal(1) + Decimal(rng.randint(-8, 8)) / Decimal(1000))
        replicates.append({"nominal_ml": str(nominal), "measured_ml": str(measured.quantize(Decimal("0.01")))})
    session.add(Calibration(
        device_id=pump.device.id, method=CalibrationMethod.GRAVIMETRIC, performed_at=at,
        performed_by_id=pharmacist.id, factor=Decimal("1.000000"), mean_error_pct=Decimal("0.2"),
        cv_pct=Decimal("0.4"), passed=True, valid_until=_local(day + timedelta(days=1), time(0), tz),
        liquid_used_ml=CALIBRATION_ML, replicates=replicates,
    ))
    return at
