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

from dispensing import audit
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
    Role,
    Sex,
    StockMovement,
    User,
    UserRole,
)
from dispensing.names import search_key

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
]

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý"]
MIDDLE_M = ["Văn", "Đức", "Minh", "Quang", "Hữu", "Thanh", "Công", "Xuân"]
MIDDLE_F = ["Thị", "Ngọc", "Thu", "Thanh", "Kim"]
GIVEN_M = ["An", "Bình", "Cường", "Dũng", "Hùng", "Hải", "Long", "Nam", "Phong", "Quân", "Sơn", "Tuấn", "Việt", "Khoa", "Lộc", "Thắng"]
GIVEN_F = ["Hoa", "Lan", "Mai", "Hương", "Linh", "Trang", "Yến", "Thảo"]

ML_PER_MG = Decimal("0.1")  # 10 mg/ml lots


@dataclass
class _Pump:
    counter: Counter
    device: Device
    location: Location
    nurse: User
    balance: Decimal = Decimal(0)
    container: Container | None = None
    attached_at: datetime | None = None


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
) -> str:
    """Load the demo clinic into an empty database (flushed, not committed) and return a summary."""
    rng = random.Random(seed_value)
    tz_name = settings.clinic_timezone if settings else "Asia/Ho_Chi_Minh"
    tz = ZoneInfo(tz_name)
    now = utcnow()
    today = today or now.astimezone(tz).date()
    start = today - timedelta(days=days)

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

    movements: list[StockMovement] = []

    def move(kind, day, at, lot, quantity, *, container=None, src=None, dst=None, dose_id=None, reason=None,
             witness=None, product=methadone, by=pharmacist):
        movements.append(dict(
            clinic_id=clinic.id, business_date=day, occurred_at=at, kind=kind, product_id=product.id,
            lot_id=lot.id, container_id=container.id if container else None,
            from_location_id=src.id if src else None, to_location_id=dst.id if dst else None,
            quantity=quantity, dose_id=dose_id, reason=reason, recorded_by_id=by.id,
            witness_id=witness.id if witness else None, created_at=now))

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
            clinic_id=clinic.id, code=f"HNDD-{i + 1:05d}", card_barcode=f"P{i + 1:06d}", full_name=name,
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
    for patient, _plan, _pump in patient_rows[5:8]:
        meds.append(ConcomitantMedication(patient_id=patient.id, drug_name=rng.choice(["efavirenz", "rifampicin"]),
                                          started_on=today - timedelta(days=rng.randint(2, 9)),
                                          recorded_by_id=physicians[1].id))
    session.add_all(ecgs + meds)

    # Recent runs of missed days for some maintenance patients: 3, 4, 5 and 31 days.
    missed_runs: dict[int, set[date]] = {}
    maintenance_rows = [row for row in patient_rows if row[1].days and row[0].treatment_start_date < start]
    for (patient, _plan, _pump), run in zip(maintenance_rows[10:18], [3, 3, 4, 4, 5, 6, 31, 2], strict=False):
        missed_runs[patient.id] = {today - timedelta(days=k) for k in range(1, run + 1)}

    # Dose history up to yesterday; each morning the pharmacist calibrates and fills the pumps.
    next_id = {
        model: (session.scalar(select(func.max(model.id))) or 0) + 1 for model in (Assessment, Dose)
    }
    doses = 0
    for day_offset in range(days):
        day = start + timedelta(days=day_offset)
        for pump in pumps:
            _calibrate(session, pump, day, tz, pharmacist, move, lots, rng)
            if pump.balance < Decimal(600):
                bottle = next(next_bottle)
                pump.container = bottle
                pump.attached_at = _local(day, time(6, 10), tz)
                move(MovementKind.TRANSFER, day, pump.attached_at, lot_by_id[bottle.lot_id],
                     Decimal("1000"), container=bottle, src=safe, dst=pump.location, reason="Cấp ra bơm")
                pump.balance += Decimal(1000)
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
                    lot_id=pump.container.lot_id, container_id=pump.container.id, counter_id=pump.counter.id,
                    device_id=pump.device.id, planned_mg=mg, planned_ml=ml, delivered_ml=ml,
                    nurse_id=pump.nurse.id, requested_at=at, finished_at=at + timedelta(seconds=35),
                    created_at=now))
                dose_pumps.append(pump)
                pump.balance -= ml
        if dose_rows:
            # Explicit ids keep these inserts batched (RETURNING would go row by row on SQLite);
            # PostgreSQL sequences are moved past them at the end.
            for row, assessment in zip(dose_rows, assessments, strict=True):
                assessment["id"] = row["assessment_id"] = next_id[Assessment]
                row["id"] = next_id[Dose]
                next_id[Assessment] += 1
                next_id[Dose] += 1
            session.execute(insert(Assessment), assessments)
            session.execute(insert(Dose), dose_rows)
            dose_ids = [row["id"] for row in dose_rows]
            events = []
            for row, dose_id, pump in zip(dose_rows, dose_ids, dose_pumps, strict=True):
                finished = row["finished_at"]
                events.append(dict(dose_id=dose_id, state=DoseState.REQUESTED, occurred_at=row["requested_at"],
                                   user_id=row["nurse_id"], detail=None, created_at=now))
                events.append(dict(dose_id=dose_id, state=DoseState.COMPLETED, occurred_at=finished,
                                   user_id=row["nurse_id"], detail={"measured_ml": str(row["delivered_ml"])},
                                   created_at=now))
                move(MovementKind.DOSE, day, finished, lot_by_id[row["lot_id"]], row["delivered_ml"],
                     container=pump.container, src=pump.location, dose_id=dose_id, by=pump.nurse)
            session.execute(insert(DoseEvent), events)
            doses += len(dose_rows)
        flush_movements()
    # Calibrate the pumps for today as well, so the counters can work this morning, and open the
    # bottle each pump is using (a pump dispenses from its one open bottle).
    for pump in pumps:
        _calibrate(session, pump, today, tz, pharmacist, move, lots, rng)
        if pump.container is None:
            bottle = next(next_bottle)
            pump.container, pump.attached_at = bottle, _local(today, time(6, 10), tz)
            move(MovementKind.TRANSFER, today, pump.attached_at, lot_by_id[bottle.lot_id], Decimal("1000"),
                 container=bottle, src=safe, dst=pump.location, reason="Cấp ra bơm")
        session.add(ContainerAttachment(clinic_id=clinic.id, container_id=pump.container.id,
                                        location_id=pump.location.id, attached_at=pump.attached_at,
                                        attached_by_id=pharmacist.id))
    flush_movements()
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        for table in ("assessment", "dose"):
            sql = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 - constant table names
            session.execute(text(sql))

    audit.record(session, "demo.seeded", actor_id=None, clinic_id=clinic.id, entity=clinic,
                 data={"patients": patients, "days": days, "doses": doses})
    return (f"demo clinic {clinic.code}: {len(users)} users, {len(pumps)} counters, {patients} patients, "
            f"{len(orders)} orders, {doses} doses over {days} days; password for every demo user: {DEMO_PASSWORD}")


def _calibrate(session, pump: _Pump, day: date, tz, pharmacist, move, lots, rng) -> None:
    """Record the morning gravimetric calibration of a pump and book its liquid as waste."""
    at = _local(day, time(6, 0), tz)
    replicates = []
    for nominal in (Decimal("5.00"), Decimal("10.00"), Decimal("20.00")):
        measured = nominal * (Decimal(1) + Decimal(rng.randint(-8, 8)) / Decimal(1000))
        replicates.append({"nominal_ml": str(nominal), "measured_ml": str(measured.quantize(Decimal("0.01")))})
    session.add(Calibration(
        device_id=pump.device.id, method=CalibrationMethod.GRAVIMETRIC, performed_at=at,
        performed_by_id=pharmacist.id, factor=Decimal("1.000000"), mean_error_pct=Decimal("0.2"),
        cv_pct=Decimal("0.4"), passed=True, valid_until=_local(day + timedelta(days=1), time(0), tz),
        liquid_used_ml=Decimal("35.00"), replicates=replicates,
    ))
    if pump.container is not None and pump.balance >= Decimal(35):
        lot = next(lot for lot in lots if lot.id == pump.container.lot_id)
        move(MovementKind.CALIBRATION, day, at, lot, Decimal("35.00"), container=pump.container,
             src=pump.location, reason="Dịch hiệu chuẩn bơm")
        pump.balance -= Decimal(35)
