"""The SQLite recipe (foreign keys, WAL, real BEGIN, IMMEDIATE writers) and sessions on both."""

import threading
import time

import pytest
from sqlalchemy import text

from dispensing.db import Database, begin_write, ping
from dispensing.models import Clinic


@pytest.fixture
def fresh(fresh_database_url):
    database = Database.from_url(fresh_database_url, busy_timeout_ms=5000)
    yield database
    database.dispose()


def test_ping(fresh):
    with fresh.unit_of_work() as session:
        assert ping(session)


def test_sqlite_pragmas_are_on(fresh):
    if fresh.engine.dialect.name != "sqlite":
        pytest.skip("SQLite recipe only")
    with fresh.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_savepoint_rolls_back_only_its_part(fresh):
    with fresh.unit_of_work() as session:
        session.add(Clinic(code="A", name="A"))
        session.flush()
        nested = session.begin_nested()
        session.add(Clinic(code="B", name="B"))
        session.flush()
        nested.rollback()
        session.commit()
    with fresh.unit_of_work() as session:
        assert [c.code for c in session.query(Clinic).order_by(Clinic.code)] == ["A"]


def test_uncommitted_unit_of_work_is_rolled_back(fresh):
    with fresh.unit_of_work() as session:
        session.add(Clinic(code="GHOST", name="never committed"))
        session.flush()
    with fresh.unit_of_work() as session:
        assert session.query(Clinic).count() == 0


def test_write_transactions_serialise(fresh):
    """Two writers that read-then-write the same counter never lose an update: the second waits
    (SQLite: BEGIN IMMEDIATE; PostgreSQL: the row lock) instead of both reading the old value."""
    with fresh.unit_of_work() as session:
        session.add(Clinic(code="C", name="0"))
        session.commit()
    postgres = fresh.engine.dialect.name == "postgresql"
    barrier = threading.Barrier(4)
    errors = []

    def increment():
        try:
            barrier.wait()
            for _ in range(5):
                with fresh.unit_of_work() as session:
                    begin_write(session)
                    query = "SELECT name FROM clinic WHERE code = 'C'" + (" FOR UPDATE" if postgres else "")
                    value = int(session.execute(text(query)).scalar_one())
                    time.sleep(0.002)  # widen the race window
                    session.execute(text("UPDATE clinic SET name = :v WHERE code = 'C'"), {"v": str(value + 1)})
                    session.commit()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with fresh.unit_of_work() as session:
        assert session.execute(text("SELECT name FROM clinic WHERE code = 'C'")).scalar_one() == "20"


def test_begin_write_after_a_read_restarts_as_a_writer(fresh):
    """A view reads (the signed-in user) before the service begins writing: the read-only
    transaction is ended and the write transaction begins IMMEDIATE."""
    with fresh.unit_of_work() as session:
        session.execute(text("SELECT 1"))
        begin_write(session)
        session.add(Clinic(code="W", name="W"))
        session.commit()
    with fresh.unit_of_work() as session:
        assert session.query(Clinic).filter_by(code="W").count() == 1


def test_begin_write_refuses_to_adopt_uncommitted_writes(fresh):
    with fresh.unit_of_work() as session:
        session.add(Clinic(code="X", name="X"))
        session.flush()
        with pytest.raises(RuntimeError, match="uncommitted changes"):
            begin_write(session)


def test_a_pooled_connection_dropped_while_idle_is_replaced(fresh, fresh_database_url):
    from dispensing import db

    if fresh.engine.dialect.name != "postgresql":
        pytest.skip("the idle ping is PostgreSQL's (SQLite has no server to drop a connection)")
    with fresh.engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = db.make_engine(fresh_database_url)
    try:
        with killer.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    finally:
        killer.dispose()
    for record in list(fresh.engine.pool._pool.queue):  # as if it had been idle past the ping window
        record.info[db._CHECKED_IN_AT] -= db.PING_AFTER_IDLE_S + 1
    with fresh.engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != backend
