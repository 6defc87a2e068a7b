"""Never twice: eight counters authorising the same patient, part and day at the same moment, on
a database of the test's own with real commits (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
patient's row lock), leave exactly one dose."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from dispensing import counter
from dispensing.db import Database
from dispensing.models import Dose, User
from tests import counter_world

pytestmark = pytest.mark.committing

THREADS = 8


@pytest.fixture
def committed(fresh_database_url, settings):
    database = Database.from_url(fresh_database_url)
    session = database.session()
    world = counter_world.build(session, settings=settings)
    counter_world.add_counters(world, THREADS - len(world.counters))
    patient = world.patient()
    world.assess(patient)
    yield database, world, patient
    session.close()
    database.dispose()


def race(database, world, patient, keys):
    """Authorise from one thread per key (thread i at counter i), all released at once; return
    what each thread got (a DoseRequest or the exception)."""
    barrier = threading.Barrier(len(keys))

    def attempt(index: int):
        session = database.session()
        try:
            nurse = session.get(User, world.nurse.id)
            _ = nurse.roles
            session.commit()  # a write use case starts its own transaction
            barrier.wait(timeout=30)
            return counter.authorize(session, nurse, world.rule_set, patient_id=patient.id,
                                     counter_id=world.counters[index].id, part_no=1,
                                     idempotency_key=keys[index], now=world.now)
        except Exception as exc:
            return exc
        finally:
            session.close()

    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(attempt, range(len(keys))))


def doses_of(database, patient_id) -> int:
    with database.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(Dose).where(Dose.patient_id == patient_id))


def test_eight_counters_at_once_leave_exactly_one_dose(committed):
    database, world, patient = committed

    outcomes = race(database, world, patient, [f"counter-{i}-request" for i in range(THREADS)])

    created = [o for o in outcomes if isinstance(o, counter.DoseRequest)]
    refused = [o for o in outcomes if isinstance(o, counter.AlreadyDosed)]
    assert len(created) == 1 and created[0].created, outcomes
    assert len(refused) == THREADS - 1, outcomes
    assert {r.dose_id for r in refused} == {created[0].dose.id}
    assert doses_of(database, patient.id) == 1


def test_the_same_request_sent_eight_times_at_once_is_one_dose(committed):
    database, world, patient = committed

    outcomes = race(database, world, patient, ["the-very-same-request"] * THREADS)

    assert all(isinstance(o, counter.DoseRequest) for o in outcomes), outcomes
    assert len({o.dose.id for o in outcomes}) == 1
    assert sum(o.created for o in outcomes) == 1
    assert doses_of(database, patient.id) == 1
