"""The demo clinic is internally consistent: what later screens show is real data."""

from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from dispensing import demo
from dispensing.models import (
    Calibration,
    Dose,
    Location,
    LocationKind,
    MovementKind,
    Order,
    Patient,
    Phase,
    StockMovement,
    User,
)

TODAY = date(2026, 11, 20)


@pytest.fixture
def seeded(session):
    demo.seed(session, days=8, patients=24, today=TODAY, photos=False)
    return session


def test_every_role_and_phase_is_present(seeded):
    roles = {role.value for user in seeded.scalars(select(User)) for role in user.roles}
    assert roles == {"nurse", "pharmacist", "physician", "admin"}
    phases = {order.phase for order in seeded.scalars(select(Order))}
    assert phases == set(Phase)


def test_orders_parts_sum_to_daily_total_and_cover_their_doses(seeded):
    orders = {o.id: o for o in seeded.scalars(select(Order))}
    for order in orders.values():
        assert sum(p.dose_mg for p in order.parts) == order.daily_total_mg
    for dose in seeded.scalars(select(Dose)):
        order = orders[dose.order_id]
        assert order.valid_from <= dose.business_date <= order.valid_until
        assert dose.planned_ml == (dose.planned_mg / Decimal(10)).quantize(Decimal("0.01"))
        assert dose.business_date < TODAY  # history ends yesterday; today is for the counters


def test_every_dose_is_booked_once_in_the_ledger_and_pumps_never_go_negative(seeded):
    booked = defaultdict(Decimal)
    balance = defaultdict(Decimal)
    for line in seeded.scalars(select(StockMovement).order_by(StockMovement.occurred_at, StockMovement.id)):
        if line.dose_id:
            assert line.kind is MovementKind.DOSE
            booked[line.dose_id] += line.quantity
        if line.from_location_id:
            balance[line.from_location_id] -= line.quantity
            assert balance[line.from_location_id] >= 0
        if line.to_location_id:
            balance[line.to_location_id] += line.quantity
    for dose in seeded.scalars(select(Dose)):
        assert booked[dose.id] == dose.delivered_ml
    pumps = seeded.scalars(select(Location).where(Location.kind == LocationKind.PUMP)).all()
    assert len(pumps) == 3


def test_pumps_are_calibrated_for_today(seeded):
    calibrations = seeded.scalars(select(Calibration)).all()
    assert len({c.device_id for c in calibrations}) == 3
    latest = max(c.valid_until for c in calibrations)
    assert latest.date() >= TODAY


def test_names_are_vietnamese_and_searchable(seeded):
    patient = seeded.scalars(select(Patient)).first()
    assert patient.card_barcode.startswith("P")
    assert patient.search_name.isascii()
