"""The demo clinic is internally consistent: what later screens show is real data."""

import json
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from dispensing import accounts, audit, demo, stock
from dispensing.errors import Conflict
from dispensing.models import (
    AuditEvent,
    Calibration,
    ClinicalTask,
    ConcomitantMedication,
    Container,
    ContainerAttachment,
    Dose,
    Location,
    LocationKind,
    Lot,
    MeasureMethod,
    MovementKind,
    Order,
    Patient,
    PatientFlag,
    Phase,
    Product,
    Reconciliation,
    ReconciliationStatus,
    Role,
    StockMovement,
    StockSnapshot,
    User,
)
from dispensing.stock.ledger import last_closed_day, require_open_day
from dispensing.stock.reconciliation import Measurement

TODAY = date(2026, 11, 20)


@pytest.fixture
def seeded(session):
    demo.seed(session, days=8, patients=24, today=TODAY, photos=False)
    return session


def test_every_role_and_phase_is_present(seeded):
    roles = {role.value for user in seeded.scalars(select(User)) for role in user.roles}
    assert roles == {"nurse", "pharmacist", "physician", "admin", "unit_head"}
    head = seeded.scalar(select(User).where(User.username == "truongdonvi"))
    assert head.roles == {Role.UNIT_HEAD}
    assert accounts.authenticate(seeded, "truongdonvi", demo.DEMO_PASSWORD).id == head.id
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


def test_interacting_drugs_raise_their_task_and_watch_flag(seeded):
    started = seeded.scalars(select(ConcomitantMedication).where(
        ConcomitantMedication.drug_name.in_(["efavirenz", "rifampicin"]))).all()
    assert started
    flagged = {flag.patient_id for flag in seeded.scalars(select(PatientFlag))}
    tasked = {task.patient_id for task in seeded.scalars(select(ClinicalTask))}
    assert {m.patient_id for m in started} <= flagged & tasked


def test_patient_codes_follow_the_registration_format(seeded):
    codes = [p.code for p in seeded.scalars(select(Patient).order_by(Patient.id))]
    assert codes[0] == "HN-DD-00001"
    assert all(code.startswith("HN-DD-") for code in codes)


def test_every_past_day_is_closed_locked_and_snapshotted_and_today_is_open(seeded):
    rows = seeded.scalars(select(Reconciliation)).all()
    first_line = min(seeded.scalars(select(StockMovement.business_date)))
    days = {row.business_date for row in rows}
    assert days == {first_line + timedelta(days=k) for k in range((TODAY - first_line).days)}
    assert all(row.status is ReconciliationStatus.CLOSED for row in rows)
    pharmacist = seeded.scalar(select(User).where(User.username == "duocsi1"))
    assert {row.closed_by_id for row in rows} == {pharmacist.id}
    assert all(row.within_tolerance for row in rows)
    exact = [row for row in rows if row.variance == 0]
    assert len(exact) > len(rows) * 0.8
    assert any(row.loss > 0 for row in rows) and any(row.surplus > 0 for row in rows)
    signed = seeded.scalars(select(AuditEvent).where(AuditEvent.action == "stock.reconciliation.signed")).all()
    assert sorted(int(event.entity_id) for event in signed) == sorted(row.id for row in rows)
    assert audit.verify_chain(seeded).ok
    # Each close's snapshot is what the ledger holds at the end of that day, adjustments included.
    for row in rows:
        snapshot = {(s.lot_id, s.container_id): s.balance for s in seeded.scalars(select(StockSnapshot).where(
            StockSnapshot.location_id == row.location_id, StockSnapshot.product_id == row.product_id,
            StockSnapshot.business_date == row.business_date))}
        held = defaultdict(Decimal)
        for line in seeded.scalars(select(StockMovement).where(
                StockMovement.product_id == row.product_id, StockMovement.business_date <= row.business_date)):
            if line.to_location_id == row.location_id:
                held[(line.lot_id, line.container_id)] += line.quantity
            if line.from_location_id == row.location_id:
                held[(line.lot_id, line.container_id)] -= line.quantity
        assert snapshot == {item: value for item, value in held.items() if value}
        assert sum(snapshot.values(), Decimal(0)) == row.measured_close == row.expected_close + row.variance
    # Today is open: the pharmacist closes it in the demo; yesterday is locked.
    safe = seeded.scalar(select(Location).where(Location.kind == LocationKind.SAFE))
    methadone = seeded.scalar(select(Product).where(Product.code == "MET10"))
    assert last_closed_day(seeded, safe.id, methadone.id) == TODAY - timedelta(days=1)
    require_open_day(seeded, safe.id, methadone.id, TODAY)
    with pytest.raises(Conflict):
        require_open_day(seeded, safe.id, methadone.id, TODAY - timedelta(days=1))


def test_a_pump_holds_only_its_one_open_bottle(session):
    """A bottle taken off a pump goes back to the safe with what is left in it (as
    stock.detach_container does); no second bottle is left at a pump."""
    demo.seed(session, days=14, patients=60, today=TODAY, photos=False)  # long enough to change bottles
    seeded = session
    pumps = seeded.scalars(select(Location).where(Location.kind == LocationKind.PUMP)).all()
    attachments = seeded.scalars(select(ContainerAttachment).order_by(ContainerAttachment.attached_at)).all()
    assert {a.location_id for a in attachments if a.detached_at is None} == {p.id for p in pumps}
    assert len([a for a in attachments if a.detached_at is None]) == len(pumps)
    assert any(a.detached_at is not None for a in attachments)  # the demo changes bottles
    for attachment in attachments:
        attach = seeded.get(StockMovement, attachment.attach_movement_id)
        assert (attach.kind, attach.to_location_id, attach.container_id) == (
            MovementKind.TRANSFER, attachment.location_id, attachment.container_id)
        if attachment.detached_at is not None and attachment.remaining:
            detach = seeded.get(StockMovement, attachment.detach_movement_id)
            assert detach.from_location_id == attachment.location_id
            assert seeded.get(Location, detach.to_location_id).kind is LocationKind.SAFE
            assert detach.quantity == attachment.remaining
    for pump in pumps:
        windows = [(a.attached_at, a.detached_at, a.container_id) for a in attachments if a.location_id == pump.id]
        for (_a, end, _c), (start, _e, _c2) in zip(windows, windows[1:], strict=False):
            assert end is not None and end <= start
        # Every line at the pump is of the bottle open on it at that moment.
        for line in seeded.scalars(select(StockMovement).where(
                (StockMovement.from_location_id == pump.id) | (StockMovement.to_location_id == pump.id))):
            open_then = [c for start, end, c in windows if start <= line.occurred_at and (end is None or line.occurred_at <= end)]
            assert line.container_id in open_then
        # And at every close the pump held one bottle at most.
        per_day = defaultdict(set)
        for snap in seeded.scalars(select(StockSnapshot).where(StockSnapshot.location_id == pump.id)):
            per_day[snap.business_date].add(snap.container_id)
        assert per_day and all(len(bottles) == 1 for bottles in per_day.values())


FIELDS = ("status", "opening", "received", "transferred_in", "transferred_out", "issued", "waste", "other_out",
          "adjusted", "expected_close", "measured_close", "measure_method", "measure_detail", "variance",
          "variance_pct", "within_tolerance", "loss", "surplus", "discrepancy_reason", "investigation_note",
          "closed_at")


def _closes_of(session, day: date) -> dict:
    """The closes of ``day`` by (location code, product code): the record, its adjustment lines,
    its snapshot and its signature, named by codes so two loads of the demo compare."""
    location = {loc.id: loc.code for loc in session.scalars(select(Location))}
    lot = {row.id: row.lot_number for row in session.scalars(select(Lot))}
    label = {row.id: row.label_code for row in session.scalars(select(Container))}
    product = {row.id: row.code for row in session.scalars(select(Product))}
    result = {}
    for row in session.scalars(select(Reconciliation).where(Reconciliation.business_date == day)):
        adjustments = sorted(
            (line.kind, lot[line.lot_id], label.get(line.container_id), location.get(line.from_location_id),
             location.get(line.to_location_id), line.quantity, line.business_date, line.occurred_at)
            for line in session.scalars(select(StockMovement).where(StockMovement.reason == f"reconciliation {row.id}"))
        )
        snapshot = sorted(
            (lot[snap.lot_id], label.get(snap.container_id), snap.balance)
            for snap in session.scalars(select(StockSnapshot).where(
                StockSnapshot.location_id == row.location_id, StockSnapshot.product_id == row.product_id,
                StockSnapshot.business_date == day))
        )
        signatures = [
            (event.action, session.get(User, event.actor_id).username, event.occurred_at, json.loads(event.payload))
            for event in session.scalars(select(AuditEvent).where(
                AuditEvent.entity_type == "Reconciliation", AuditEvent.entity_id == str(row.id)))
        ]
        for _action, _actor, _at, payload in signatures:
            payload["location_id"] = location[payload["location_id"]]
        fields = {name: getattr(row, name) for name in FIELDS}
        fields["signed_by"] = [session.get(User, i).username if i else None for i in (row.closed_by_id, row.witness_id)]
        if fields["measure_detail"] and "lot_ids" in fields["measure_detail"]:
            fields["measure_detail"] = {**fields["measure_detail"],
                                        "lot_ids": [lot[i] for i in fields["measure_detail"]["lot_ids"]]}
        result[(location[row.location_id], product[row.product_id])] = (fields, adjustments, snapshot, signatures)
    return result


def _measurement(row: Reconciliation) -> Measurement:
    detail = row.measure_detail
    if row.measure_method is MeasureMethod.BALANCE:
        return Measurement(MeasureMethod.BALANCE, weight_g=Decimal(detail["weight_g"]))
    return Measurement(row.measure_method, value=Decimal(detail["value"]))


def test_a_demo_closed_day_is_what_the_close_service_records(session):
    """The demo writes its closes in bulk; closing the same day with stock.close_day and the same
    readings records the same worksheet, variance, adjustment lines, snapshot and signature."""
    demo.seed(session, days=8, patients=24, today=TODAY, photos=False)
    open_bottles = set(session.scalars(select(ContainerAttachment.container_id).where(
        ContainerAttachment.detached_at.is_(None))))
    # A day with hao hụt or dư thừa at a pump whose bottle is still the open one (a close run
    # later gives a surplus to the bottle open then).
    candidates = [
        row.business_date for row in session.scalars(select(Reconciliation).where(Reconciliation.variance != 0))
        if {line.container_id for line in session.scalars(select(StockMovement).where(
            StockMovement.reason == f"reconciliation {row.id}"))} <= open_bottles
    ]
    assert candidates
    day = max(candidates)
    demo_closes = _closes_of(session, day)
    assert any(fields["variance"] for fields, *_ in demo_closes.values())
    assert {fields["measure_method"] for fields, *_ in demo_closes.values()} == {
        MeasureMethod.BALANCE, MeasureMethod.CYLINDER, MeasureMethod.COUNT}
    rows = sorted(session.scalars(select(Reconciliation).where(Reconciliation.business_date == day)),
                  key=lambda row: row.closed_at)
    plan = [(session.get(Location, row.location_id).code, session.get(Product, row.product_id).code,
             _measurement(row), row.closed_at) for row in rows]
    session.rollback()

    demo.seed(session, days=8, patients=24, today=TODAY, photos=False, closed_until=day - timedelta(days=1))
    assert not session.scalars(select(Reconciliation).where(Reconciliation.business_date >= day)).all()
    pharmacist = session.scalar(select(User).where(User.username == "duocsi1"))
    for location_code, product_code, measurement, closed_at in plan:
        stock.close_day(
            session, pharmacist, day=day, measurement=measurement, password=demo.DEMO_PASSWORD, now=closed_at,
            location_id=session.scalar(select(Location.id).where(Location.code == location_code)),
            product_id=session.scalar(select(Product.id).where(Product.code == product_code)),
        )
    service_closes = _closes_of(session, day)
    assert service_closes.keys() == demo_closes.keys()
    for key, (fields, adjustments, snapshot, signatures) in demo_closes.items():
        assert service_closes[key][0] == fields, key
        assert service_closes[key][1] == adjustments, key
        assert service_closes[key][2] == snapshot, key
        assert service_closes[key][3] == signatures, key
