"""The record loader against the database (SQLite and PostgreSQL): ``dose_records_by_patient`` with a
window returns exactly ``rules.windowed`` of the whole history (the window, or the last day dosed
before it) for random rows — completed, partial (mg from the lot), failed, unknown, completions
that gave nothing, take-home doses ahead of today, vomited and voided doses — and the counter's
evaluation for every shipped rule selection is the same from the windowed rows and plain order
rows (the worklist's loading) as from the whole history and ORM orders (before this change)."""

from __future__ import annotations

import uuid
from collections import Counter as Multiset
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dispensing import rules
from dispensing.counter_rules import evaluate_loaded
from dispensing.history import (
    build_history,
    dose_records_by_patient,
    signed_order_rows,
    signed_orders,
)
from dispensing.models import Dose, DoseKind, DoseState, DoseVoid, Lot, Phase, VomitEvent
from tests import factories
from tests.unit.rules.test_dose_history_window import SELECTIONS, rule_set_for

STATES = [DoseState.COMPLETED, DoseState.COMPLETED, DoseState.PARTIAL, DoseState.FAILED, DoseState.UNKNOWN]
dose_rows = st.lists(st.tuples(
    st.integers(-150, 3),  # day offset from today (take-home doses are booked ahead)
    st.sampled_from([DoseKind.OBSERVED, DoseKind.TAKE_HOME, DoseKind.REPLACEMENT, DoseKind.COMPLETION]),
    st.sampled_from(STATES),
    st.sampled_from([None, Decimal("0"), Decimal("2.35"), Decimal("6.00")]),  # delivered ml
    st.booleans(),  # vomited
    st.integers(0, 5),  # 0: voided
), max_size=60)
order_rows = st.lists(st.tuples(st.sampled_from(Phase), st.integers(-120, 2), st.integers(1, 40),
                                st.integers(20, 120)), max_size=4)


def add_patient(world, lot, orders, doses):
    session = world.session
    patient = factories.patient(session, world.clinic, treatment_start_date=world.today - timedelta(days=200),
                                take_home_commitment_on=world.today - timedelta(days=100))
    made = [factories.signed_order(session, world.clinic, patient, world.physician, mg=str(mg), phase=phase,
                                   valid_from=world.today + timedelta(days=start),
                                   valid_until=world.today + timedelta(days=start + length - 1))
            for phase, start, length, mg in orders] or [
        factories.signed_order(session, world.clinic, patient, world.physician)]
    slots = set()
    for offset, kind, state, delivered, vomited, void in doses:
        day = world.today + timedelta(days=offset)
        regular = kind in (DoseKind.OBSERVED, DoseKind.TAKE_HOME) and state is not DoseState.FAILED
        if regular and day in slots:
            continue  # one regular dose per slot (the database refuses a second)
        if regular:
            slots.add(day)
        dose = Dose(clinic_id=world.clinic.id, patient_id=patient.id, order_id=made[0].id, part_no=1,
                    business_date=day, kind=kind, state=state, idempotency_key=uuid.uuid4().hex,
                    product_id=lot.product_id, lot_id=lot.id, planned_mg=Decimal("60"), planned_ml=Decimal("6.00"),
                    delivered_ml=delivered, nurse_id=world.nurse.id, requested_at=world.now)
        session.add(dose)
        session.flush()
        if vomited:
            session.add(VomitEvent(dose_id=dose.id, observed_at=world.now, recorded_by_id=world.nurse.id))
        if void == 0:
            session.add(DoseVoid(clinic_id=world.clinic.id, dose_id=dose.id, reason="wrong patient",
                                 voided_at=world.now, voided_by_id=world.nurse.id, witness_id=world.witness.id))
    session.flush()
    return patient


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(histories=st.lists(st.tuples(order_rows, dose_rows), min_size=1, max_size=3),
       window=st.integers(0, 60))
def test_the_loader_returns_the_window_or_the_last_day_dosed(world, histories, window):
    session = world.session
    lot = session.scalar(select(Lot).where(Lot.concentration_mg_per_ml.is_not(None)).order_by(Lot.id).limit(1))
    savepoint = session.begin_nested()
    try:
        patients = [add_patient(world, lot, orders, doses) for orders, doses in histories]
        ids = [p.id for p in patients]
        today = world.today
        full = dose_records_by_patient(session, ids, today)
        assert full == {p.id: tuple(rules.windowed(full[p.id], today, None)) for p in patients}
        rule_sets = [rule_set_for(selection) for selection in SELECTIONS]
        windows = {window} | {rs.dose_history_days for rs in rule_sets} | {
            rs.take_home_dose_history_days for rs in rule_sets}
        loaded = {days: dose_records_by_patient(session, ids, today, days=days) for days in windows}
        for days, found in loaded.items():
            for patient_id in ids:
                assert Multiset(found[patient_id]) == Multiset(rules.windowed(full[patient_id], today, days)), days

        rows = signed_order_rows(session, world.clinic.id)
        for patient in patients:
            orm_orders = signed_orders(session, patient.id)
            for rule_set in rule_sets:
                for take_home in (None, rules.TakeHomeRequest(today, 2)):
                    days = rule_set.dose_history_days if take_home is None else rule_set.take_home_dose_history_days
                    before = evaluate_loaded(rule_set, build_history(patient, orm_orders, full[patient.id], ()),
                                             orm_orders, today, world.now, take_home=take_home)[0]
                    after = evaluate_loaded(rule_set, build_history(patient, rows[patient.id],
                                                                    loaded[days][patient.id], ()),
                                            rows[patient.id], today, world.now, take_home=take_home)[0]
                    assert before == after, (rule_set.version, take_home)
    finally:
        savepoint.rollback()


def test_a_completion_that_gave_nothing_is_not_the_last_day_dosed(world):
    """Before the window: a dose on day −20, then a completion of −10 that delivered nothing. The
    last day dosed is −20 (the missed-day count must see 19 days, not 9)."""
    session = world.session
    lot = session.scalar(select(Lot).where(Lot.concentration_mg_per_ml.is_not(None)).order_by(Lot.id).limit(1))
    patient = add_patient(world, lot, [], [(-20, DoseKind.OBSERVED, DoseState.COMPLETED, Decimal("6.00"), False, 1),
                                           (-10, DoseKind.COMPLETION, DoseState.PARTIAL, Decimal("0"), False, 1)])
    [record] = dose_records_by_patient(session, [patient.id], world.today, days=7)[patient.id]
    assert record.on == world.today - timedelta(days=20)
    assert rules.count_missed_days([record], world.today) == 19
