"""A small clinic with controlled stock for the stock tests: people for every role (a head of unit too), methadone
(liquid, with a GTIN) and buprenorphine (unit-dose), a safe, quarantine, a counter shelf and two
counters with a pump each. Helpers receive bottles and book doses the way the services do."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from dispensing import stock
from dispensing.clock import business_date
from dispensing.models import (
    Clinic,
    Counter,
    Device,
    DeviceKind,
    Dose,
    DoseKind,
    DoseState,
    Location,
    LocationKind,
    Order,
    Patient,
    Product,
    ProductKind,
    Role,
    User,
)
from tests import factories

PASSWORD = factories.PASSWORD
# 08:00 in Hà Nội on Monday 2 March 2026.
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
METHADONE_GTIN = "08936014580028"
_seq = itertools.count(1)


@dataclass
class World:
    session: Session
    clinic: Clinic
    pharmacist: User
    pharmacist2: User
    nurse: User
    physician: User
    admin: User
    methadone: Product
    bup: Product
    safe: Location
    quarantine: Location
    shelf: Location
    pumps: list[Location]
    devices: list[Device]
    counters: list[Counter]
    # Head of unit (trưởng đơn vị): countersigns anomaly records and quarantine decisions.
    unit_head: User
    patients: list[Patient] = field(default_factory=list)
    orders: dict[int, Order] = field(default_factory=dict)
    now: datetime = T0

    @property
    def today(self) -> date:
        return business_date(self.now, self.clinic.timezone)

    @property
    def default_expiry(self) -> date:
        """One expiry per lot number whatever the day it is received (also on the real clock)."""
        return date(2027, 6, 30) if self.today < date(2027, 1, 1) else date(self.today.year + 1, 12, 31)

    def witness(self, user: User | None = None) -> stock.Cosigner:
        return stock.Cosigner((user or self.pharmacist2).username, PASSWORD)

    def receive(self, *bottles: Decimal | str, lot_number: str = "DNP-01", expiry: date | None = None,
                verified: bool = True, anomaly: stock.AnomalyIn | None = None, density: str = "1.0400",
                now: datetime | None = None) -> stock.ReceiptResult:
        """Receive liquid methadone bottles of the given volumes into the safe."""
        lot = stock.LotIn(
            product_id=self.methadone.id, lot_number=lot_number, expiry_date=expiry or self.default_expiry,
            bottles=tuple(stock.BottleIn(quantity=Decimal(b), anomaly=anomaly) for b in bottles),
            concentration_mg_per_ml=Decimal("10"), density_g_per_ml=Decimal(density), gtin=METHADONE_GTIN,
            manufacturer="Danapha", concentration_verified=verified,
        )
        delivery = stock.DeliveryIn(location_id=self.safe.id, supplier="CTCP Dược Danapha",
                                    delivery_note_no=f"PN-{next(_seq):04d}", deliverer_name="Nguyễn Văn Giao",
                                    lots=(lot,))
        return stock.receive_delivery(self.session, self.pharmacist, delivery, password=PASSWORD,
                                      now=now or self.now)

    def patient(self) -> Patient:
        patient = factories.patient(self.session, self.clinic)
        order = factories.signed_order(self.session, self.clinic, patient, self.physician,
                                       valid_from=min(date(2026, 1, 1), self.today - timedelta(days=60)),
                                       valid_until=max(date(2026, 12, 31), self.today + timedelta(days=60)))
        self.patients.append(patient)
        self.orders[patient.id] = order
        return patient

    def dose(self, pump_index: int, ml: Decimal | str, *, patient: Patient | None = None,
             kind: DoseKind = DoseKind.OBSERVED, day: date | None = None, state: DoseState = DoseState.COMPLETED,
             finished_at: datetime | None = None) -> Dose:
        """Write a finished dose at a pump and book it (the dose path's last step), then commit."""
        patient = patient or self.patient()
        day = day or self.today
        source = stock.dispensing_source(self.session, clinic_id=self.clinic.id, product_id=self.methadone.id,
                                         business_date=day, device_id=self.devices[pump_index].id)
        ml = Decimal(ml)
        dose = Dose(
            clinic_id=self.clinic.id, patient_id=patient.id, order_id=self.orders[patient.id].id,
            part_no=1 if kind in (DoseKind.OBSERVED, DoseKind.TAKE_HOME) else None, business_date=day, kind=kind,
            state=state, idempotency_key=uuid.uuid4().hex, product_id=self.methadone.id, lot_id=source.lot.id,
            container_id=source.container.id, counter_id=self.counters[pump_index].id,
            device_id=self.devices[pump_index].id, planned_mg=ml * 10, planned_ml=ml, delivered_ml=ml,
            nurse_id=self.nurse.id, requested_at=finished_at or self.now,
            finished_at=finished_at or self.now + timedelta(seconds=40),
        )
        self.session.add(dose)
        self.session.flush()
        stock.book_dose(self.session, dose)
        self.session.commit()
        return dose


def build(session: Session) -> World:
    clinic = factories.clinic(session)
    users = {role: factories.user(session, clinic, role) for role in Role}
    pharmacist2 = factories.user(session, clinic, Role.PHARMACIST)
    n = next(_seq)
    methadone = Product(code=f"MET-{n}", name="Methadone 10 mg/ml dung dịch uống", kind=ProductKind.LIQUID,
                        unit="ml", controlled=True, active_ingredient="methadone hydrochloride",
                        strength="10 mg/ml", gtin=METHADONE_GTIN)
    bup = Product(code=f"BUP-{n}", name="Buprenorphine 8 mg", kind=ProductKind.UNIT_DOSE, unit="tablet",
                  controlled=True, active_ingredient="buprenorphine", strength="8 mg")
    session.add_all([methadone, bup])
    session.flush()
    safe = Location(clinic_id=clinic.id, code="KET", name="Két thuốc gây nghiện", kind=LocationKind.SAFE)
    quarantine = Location(clinic_id=clinic.id, code="BIET-TRU", name="Khu biệt trữ", kind=LocationKind.QUARANTINE)
    shelf = Location(clinic_id=clinic.id, code="QUAY", name="Tủ thuốc tại quầy", kind=LocationKind.COUNTER)
    session.add_all([safe, quarantine, shelf])
    counters, devices, pumps = [], [], []
    for i in (1, 2):
        counter = Counter(clinic_id=clinic.id, code=f"Q{i}", name=f"Quầy {i}")
        session.add(counter)
        session.flush()
        device = Device(clinic_id=clinic.id, counter_id=counter.id, code=f"PUMP-{i}", kind=DeviceKind.PUMP,
                        driver="ne1000", port_url="sim://ne1000")
        session.add(device)
        session.flush()
        pump = Location(clinic_id=clinic.id, code=f"BOM-{i}", name=f"Bình chứa bơm quầy {i}",
                        kind=LocationKind.PUMP, device_id=device.id, capacity=Decimal("1000"))
        session.add(pump)
        counters.append(counter)
        devices.append(device)
        pumps.append(pump)
    session.flush()
    session.commit()
    return World(session, clinic, users[Role.PHARMACIST], pharmacist2, users[Role.NURSE], users[Role.PHYSICIAN],
                 users[Role.ADMIN], methadone, bup, safe, quarantine, shelf, pumps, devices, counters,
                 users[Role.UNIT_HEAD])
