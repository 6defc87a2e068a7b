"""The migrations build exactly the models, and the database enforces the invariants."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from dispensing import audit, schema
from dispensing.models import Base, DoseKind, DoseState, MovementKind, Role, StockMovement
from tests import factories


def test_models_and_migrations_agree(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_database_is_at_the_migration_head(engine):
    with engine.connect() as connection:
        assert schema.current_revision(connection) == schema.head_revision()


@pytest.fixture
def world(session):
    clinic = factories.clinic(session)
    physician = factories.user(session, clinic, Role.PHYSICIAN)
    nurse = factories.user(session, clinic, Role.NURSE)
    product, lot, safe, pump = factories.methadone(session, clinic)
    patient = factories.patient(session, clinic)
    order = factories.signed_order(session, clinic, patient, physician)
    return locals()


def _movement(world, **values):
    return StockMovement(
        clinic_id=world["clinic"].id, business_date=date(2026, 1, 5), occurred_at=datetime(2026, 1, 5, 1, tzinfo=UTC),
        kind=values.pop("kind", MovementKind.RECEIPT), product_id=world["product"].id, lot_id=world["lot"].id,
        to_location_id=values.pop("to_location_id", world["safe"].id), quantity=values.pop("quantity", Decimal("1000")),
        recorded_by_id=world["nurse"].id, **values,
    )


def _refused(session, sql, **params):
    """Run ``sql`` in a savepoint and return True when the database refuses it."""
    try:
        with session.begin_nested():
            session.execute(text(sql), params)
    except (DBAPIError, IntegrityError) as exc:
        return "append-only" in str(exc.orig) or "refused" in str(exc.orig)
    return False


def test_second_regular_dose_same_patient_part_day_fails_at_the_database(session, world):
    args = (session, world["clinic"], world["patient"], world["order"], world["product"], world["nurse"])
    factories.dose(*args)
    with pytest.raises(IntegrityError), session.begin_nested():
        factories.dose(*args)


def test_take_home_for_a_dosed_day_also_fails_but_other_parts_and_days_pass(session, world):
    args = (session, world["clinic"], world["patient"], world["order"], world["product"], world["nurse"])
    factories.dose(*args)
    factories.dose(*args, part_no=2)
    factories.dose(*args, business_date=date(2026, 1, 6))
    with pytest.raises(IntegrityError), session.begin_nested():
        factories.dose(*args, kind=DoseKind.TAKE_HOME)


def test_replacement_dose_does_not_take_the_regular_slot(session, world):
    args = (session, world["clinic"], world["patient"], world["order"], world["product"], world["nurse"])
    original = factories.dose(*args)
    factories.dose(*args, kind=DoseKind.REPLACEMENT, linked_dose_id=original.id)


def test_negative_volume_fails_at_the_database(session, world):
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(_movement(world, quantity=Decimal("-1")))
        session.flush()


def test_foreign_keys_are_enforced(session, world):
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(_movement(world, to_location_id=999_999))
        session.flush()


def test_ledger_rows_refuse_update_and_delete_at_the_sql_level(session, world):
    line = _movement(world)
    session.add(line)
    session.flush()
    assert _refused(session, "UPDATE stock_movement SET quantity_milli = 1 WHERE id = :id", id=line.id)
    assert _refused(session, "DELETE FROM stock_movement WHERE id = :id", id=line.id)
    assert session.get(StockMovement, line.id).quantity == Decimal("1000.000")


def test_audit_rows_refuse_update_and_delete_at_the_sql_level(session, world):
    event = audit.record(session, "test.event", actor_id=world["nurse"].id, data={"n": 1})
    assert _refused(session, "UPDATE audit_event SET action = 'forged' WHERE id = :id", id=event.id)
    assert _refused(session, "DELETE FROM audit_event WHERE id = :id", id=event.id)


def test_dose_rows_are_never_deleted_and_frozen_once_final(session, world):
    args = (session, world["clinic"], world["patient"], world["order"], world["product"], world["nurse"])
    running = factories.dose(*args, state=DoseState.RUNNING)
    assert not _refused(session, "UPDATE dose SET state = 'completed' WHERE id = :id", id=running.id)
    assert _refused(session, "UPDATE dose SET delivered_ul = 1 WHERE id = :id", id=running.id)
    assert _refused(session, "DELETE FROM dose WHERE id = :id", id=running.id)


def test_closed_reconciliation_is_locked(session, world):
    from dispensing.models import Reconciliation, ReconciliationStatus

    rec = Reconciliation(clinic_id=world["clinic"].id, location_id=world["safe"].id, product_id=world["product"].id,
                         business_date=date(2026, 1, 5), status=ReconciliationStatus.CLOSED)
    session.add(rec)
    session.flush()
    assert _refused(session, "UPDATE reconciliation SET loss_milli = 5 WHERE id = :id", id=rec.id)
    assert _refused(session, "DELETE FROM reconciliation WHERE id = :id", id=rec.id)


def test_downgrade_and_upgrade_again(fresh_database_url):
    from dispensing.db import make_engine

    engine = make_engine(fresh_database_url)
    with engine.begin() as connection:
        from alembic import command

        command.downgrade(schema.alembic_config(connection=connection), "base")
    with engine.connect() as connection:
        assert schema.current_revision(connection) is None
    schema.upgrade(engine)
    with engine.connect() as connection:
        assert schema.current_revision(connection) == schema.head_revision()
    engine.dispose()
