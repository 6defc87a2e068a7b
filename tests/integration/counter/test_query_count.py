"""The dose path must not grow with history: the same number of SQL statements per dose for a
patient with 10 days of doses as for one with 200 (identify, assessment, authorise, PROGRAMMED,
RUNNING, result with the ledger line)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import event

from dispensing import counter
from dispensing.models import Dose, DoseKind, DoseState, Role


def with_history(world, days: int):
    patient = world.patient(valid_from=world.today - timedelta(days=days), valid_until=world.today + timedelta(days=5))
    order = world.order(patient)
    for back in range(1, days + 1):
        world.session.add(Dose(
            clinic_id=world.clinic.id, patient_id=patient.id, order_id=order.id, part_no=1,
            business_date=world.today - timedelta(days=back), kind=DoseKind.OBSERVED, state=DoseState.COMPLETED,
            idempotency_key=uuid.uuid4().hex, product_id=world.methadone.id, lot_id=None,
            planned_mg=Decimal("60"), planned_ml=Decimal("6.00"), delivered_ml=Decimal("6.00"),
            nurse_id=world.nurse.id, requested_at=world.now - timedelta(days=back),
            finished_at=world.now - timedelta(days=back)))
    world.session.commit()
    return patient


def one_dose(world, patient) -> None:
    """Everything the server does for one dose at the counter."""
    counter_id = world.counters[0].id
    counter.patient_panel(world.session, world.nurse, world.rule_set, patient.id, counter_id=counter_id,
                          now=world.now)
    world.session.commit()
    world.assess(patient)
    dose = world.authorize(patient).dose
    counter.next_job(world.session, counter_id, now=world.now)
    counter.record_progress(world.session, counter_id, dose.id, "programmed", now=world.now)
    counter.record_progress(world.session, counter_id, dose.id, "running", now=world.now)
    result = counter.DeviceOutcome.from_dict({"outcome": "COMPLETED", "target_ml": "6.00", "measured_ml": "6.00",
                                              "reason": None, "uncertain": False})
    counter.record_result(world.session, counter_id, dose.id, result, world.rulebook.for_clinic, now=world.now)


def statements(engine, world, patient) -> int:
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    world.session.expire_all()
    event.listen(engine, "before_cursor_execute", count)
    try:
        one_dose(world, patient)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len([s for s in seen if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))])


def test_statements_per_dose_do_not_grow_with_history(engine, world):
    warm = with_history(world, 3)
    statements(engine, world, warm)  # first use loads what every later dose reuses

    short = statements(engine, world, with_history(world, 10))
    long = statements(engine, world, with_history(world, 200))

    assert short == long
    # The whole dose, from scan to ledger line: 43 statements on SQLite, 48 on PostgreSQL (the audit
    # chain's lock, once per audited transaction). More means a new round trip on the dose path.
    assert long <= 48, long



def test_the_signed_in_user_and_roles_load_in_one_statement(engine, world):
    """Every request loads the signed-in user first (web.auth's user loader): one statement, the
    roles joined, not a second one for them."""
    from dispensing import accounts

    nurse_id = world.nurse.id
    world.session.expunge_all()
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        user = accounts.load_user(world.session, nurse_id)
        roles = user.roles
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert user.id == nurse_id
    assert Role.NURSE in roles
    assert len([s for s in seen if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]) == 1, seen
