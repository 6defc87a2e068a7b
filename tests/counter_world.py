"""A clinic ready to dispense, for the counter tests: the stock world (people, methadone, a safe, a
counter shelf, two counters with a pump each) with a bottle open on each pump, today's
calibration, a second nurse to witness, and helpers that take a patient through the counter.

Time is fixed at ``T0`` (08:00 in Hà Nội on Monday 2 March 2026) and passed to every service, so
the tests never depend on the day they run; tests that go through a running server (which reads
the real clock) build the world at ``now=utcnow()`` instead — every date below follows ``now``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from dispensing import counter, rules, stock
from dispensing.models import (
    Calibration,
    CalibrationMethod,
    Counter,
    Device,
    DeviceKind,
    Location,
    LocationKind,
    Order,
    OrderPart,
    Patient,
    Phase,
    Role,
    User,
)
from dispensing.rulebook import RuleBook
from dispensing.settings import load_settings
from tests import factories, stock_world

T0 = stock_world.T0
PASSWORD = factories.PASSWORD


@dataclass
class CounterWorld:
    stock: stock_world.World
    rule_set: rules.RuleSet
    rulebook: RuleBook
    witness: User

    def __getattr__(self, name):  # clinic, nurse, physician, pumps, counters, devices, …
        return getattr(self.stock, name)

    @property
    def session(self) -> Session:
        return self.stock.session

    @property
    def now(self):
        return self.stock.now

    @property
    def today(self) -> date:
        return self.stock.today

    def witness_signature(self, user: User | None = None) -> stock.Cosigner:
        return stock.Cosigner((user or self.witness).username, PASSWORD)

    def patient(self, mg: str = "60", *, parts: tuple[str, ...] | None = None, phase: Phase = Phase.MAINTENANCE,
                valid_from: date | None = None, valid_until: date | None = None, **values) -> Patient:
        """A patient with a signed dosing order in force today (one part of ``mg`` unless
        ``parts`` splits it; by default from 10 days ago to 18 days ahead)."""
        valid_from = valid_from or self.today - timedelta(days=10)
        valid_until = valid_until or self.today + timedelta(days=18)
        patient = factories.patient(self.session, self.clinic, **values)
        parts = parts or (mg,)
        order = factories.signed_order(
            self.session, self.clinic, patient, self.physician, mg=str(sum(Decimal(p) for p in parts)), phase=phase,
            valid_from=valid_from, valid_until=valid_until)
        if len(parts) > 1:
            order.parts.clear()
            self.session.flush()
            order.parts.extend(OrderPart(part_no=n, dose_mg=Decimal(p)) for n, p in enumerate(parts, start=1))
        self.session.flush()
        self.stock.patients.append(patient)
        self.stock.orders[patient.id] = order
        self.session.commit()
        return patient

    def order(self, patient: Patient) -> Order:
        return self.stock.orders[patient.id]

    def assess(self, patient: Patient, **signs):
        assessment, _decisions = counter.record_assessment(
            self.session, self.nurse, self.rule_set, patient.id, counter.AssessmentAnswers(**signs), now=self.now)
        return assessment

    def authorize(self, patient: Patient, *, counter_index: int = 0, part_no: int = 1, key: str | None = None,
                  acks: dict | None = None, user: User | None = None):
        return counter.authorize(
            self.session, user or self.nurse, self.rule_set, patient_id=patient.id,
            counter_id=self.counters[counter_index].id, part_no=part_no, idempotency_key=key or uuid.uuid4().hex,
            acknowledgements=acks, now=self.now)

    def pump_balance(self, index: int = 0) -> Decimal:
        return stock.balance(self.session, location_id=self.pumps[index].id)


def add_counters(world: CounterWorld, count: int) -> None:
    """Give the world ``count`` more counters, each with a calibrated pump and an open bottle."""
    session = world.session
    received = world.stock.receive(*(["1000"] * count), lot_number="DNP-02", now=world.now - timedelta(days=1),
                                   expiry=world.today + timedelta(days=480))
    for index, bottle in enumerate(received.containers, start=len(world.counters) + 1):
        counter_row = Counter(clinic_id=world.clinic.id, code=f"Q{index}", name=f"Quầy {index}")
        session.add(counter_row)
        session.flush()
        device = Device(clinic_id=world.clinic.id, counter_id=counter_row.id, code=f"PUMP-{index}",
                        kind=DeviceKind.PUMP, driver="ne1000", port_url="sim://ne1000")
        session.add(device)
        session.flush()
        pump = Location(clinic_id=world.clinic.id, code=f"BOM-{index}", name=f"Bơm {index}", kind=LocationKind.PUMP,
                        device_id=device.id, capacity=Decimal("1000"))
        session.add(pump)
        session.flush()
        world.counters.append(counter_row)
        world.devices.append(device)
        world.pumps.append(pump)
        session.commit()
        stock.attach_container(session, world.pharmacist, location_id=pump.id, container_id=bottle.id,
                               now=world.now - timedelta(hours=1))
        calibrate(session, device.id, world.pharmacist, at=world.now - timedelta(hours=2))
        session.commit()


def calibrate(session: Session, device_id: int, by: User, *, at: datetime = T0 - timedelta(hours=2), hours: int = 14,
              passed: bool = True, factor: str = "1.000000") -> Calibration:
    calibration = Calibration(
        device_id=device_id, method=CalibrationMethod.GRAVIMETRIC, performed_at=at, performed_by_id=by.id,
        factor=Decimal(factor), mean_error_pct=Decimal("0.1"), cv_pct=Decimal("0.3"), passed=passed,
        valid_until=at + timedelta(hours=hours), liquid_used_ml=Decimal("0"), replicates=[],
    )
    session.add(calibration)
    session.flush()
    return calibration


def build(session: Session, *, settings=None, now: datetime = T0) -> CounterWorld:
    """The stock world with one 1000 ml bottle open on each pump, both pumps calibrated (from
    2 h before ``now`` for 14 h)."""
    settings = settings or load_settings(environ={}, overrides={"env": "testing", "secret_key": "x" * 40})
    world = stock_world.build(session)
    world.now = now
    witness = factories.user(session, world.clinic, Role.NURSE)
    session.commit()  # each service below begins its own write transaction
    received = world.receive("1000", "1000", "1000", now=now - timedelta(days=1),
                             expiry=world.today + timedelta(days=480))
    for index, pump in enumerate(world.pumps):
        stock.attach_container(session, world.pharmacist, location_id=pump.id,
                               container_id=received.containers[index].id, now=now - timedelta(hours=1))
        calibrate(session, world.devices[index].id, world.pharmacist, at=now - timedelta(hours=2))
        session.commit()
    rulebook = RuleBook(settings.rules_dir)
    return CounterWorld(world, rulebook.for_clinic(world.clinic), rulebook, witness)
