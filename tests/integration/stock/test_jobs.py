"""Scheduled jobs: end-of-day preparation, morning forecast, reminders; once per clinic and
business date, also with two schedulers started at once."""

import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dispensing import stock
from dispensing.db import Database
from dispensing.jobs import scheduler
from dispensing.jobs.end_of_day import prepare_end_of_day
from dispensing.jobs.forecast import morning_forecast
from dispensing.jobs.reminders import ecg_due_reminders, lot_expiry_reminders, order_reminders
from dispensing.jobs.runs import Outcome, run_job
from dispensing.models import (
    EcgResult,
    JobRun,
    MissedDose,
    PatientStatus,
    Reconciliation,
    ReconciliationStatus,
    Reminder,
    ReminderKind,
    StockForecast,
)
from tests import factories, stock_world

D = Decimal


def _run(database, world, name, function, day=None, now=None):
    return run_job(database, name, function, world.clinic.id, day or world.today, now=now or world.now)


@pytest.fixture
def clinic_day(world):
    """Two pumps with bottles; three patients dosed today at pump 1, two more with orders but no dose."""
    bottles = world.receive("1000", "1000", "1000").containers
    for pump in (0, 1):
        stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[pump].id,
                               container_id=bottles[pump].id, now=world.now)
    dosed = [world.dose(0, "8.00") for _ in range(3)]
    absent = [world.patient(), world.patient()]
    return dosed, absent


def test_end_of_day_marks_missed_doses_and_opens_worksheets_once(database, world, clinic_day):
    _dosed, absent = clinic_day
    assert _run(database, world, "end_of_day", prepare_end_of_day) is Outcome.RAN
    missed = world.session.scalars(select(MissedDose.patient_id).where(MissedDose.business_date == world.today))
    assert sorted(missed) == sorted(p.id for p in absent)
    sheets = world.session.scalars(select(Reconciliation).where(Reconciliation.business_date == world.today)).all()
    assert {s.location_id for s in sheets} == {world.safe.id, world.pumps[0].id, world.pumps[1].id}
    assert all(s.status is ReconciliationStatus.OPEN for s in sheets)
    pump = next(s for s in sheets if s.location_id == world.pumps[0].id)
    assert pump.expected_close == D("976")
    run = world.session.scalar(select(JobRun).where(JobRun.job == "end_of_day"))
    assert (run.status, run.clinic_id, run.business_date) == ("done", world.clinic.id, world.today)
    assert '"missed_doses": 2' in run.detail
    assert _run(database, world, "end_of_day", prepare_end_of_day) is Outcome.SKIPPED
    assert world.session.scalar(select(func.count()).select_from(MissedDose)) == 2


def test_a_failed_job_is_recorded_and_taken_again_later(database, world):
    calls = []

    def broken(session, ctx):
        calls.append(ctx.business_date)
        raise RuntimeError("disk full")

    assert _run(database, world, "broken", broken) is Outcome.FAILED
    run = world.session.scalar(select(JobRun).where(JobRun.job == "broken"))
    assert run.status == "failed" and "disk full" in run.detail
    assert _run(database, world, "broken", broken, now=world.now + timedelta(minutes=1)) is Outcome.SKIPPED
    assert _run(database, world, "broken", lambda s, c: {"ok": True},
                now=world.now + timedelta(minutes=20)) is Outcome.RAN
    world.session.refresh(run)
    assert run.status == "done" and len(calls) == 1


def test_morning_forecast_splits_todays_orders_by_pump_history_and_picks_bottles(database, world, clinic_day):
    # Yesterday pump 1 dispensed three times what pump 2 did.
    yesterday = world.now - timedelta(days=1)
    saved = world.now
    world.now = yesterday
    world.dose(0, "30.00")
    world.dose(1, "10.00")
    world.now = saved
    assert _run(database, world, "morning_forecast", morning_forecast) is Outcome.RAN
    rows = {row.location_id: row for row in world.session.scalars(select(StockForecast))}
    planned = D(len(world.patients)) * D("60") / D("10")  # every order is 60 mg/day at 10 mg/ml
    first, second = rows[world.pumps[0].id], rows[world.pumps[1].id]
    assert first.detail["planned_ml_clinic"] == f"{planned:.2f}"
    assert first.needed == (planned * D("0.75")).quantize(D("0.01"))
    assert second.needed == (planned * D("0.25")).quantize(D("0.01"))
    assert first.on_hand == D("1000") - D("30") - D("24") and first.shortfall == D("0")
    assert first.counter_id == world.counters[0].id


def test_forecast_suggests_bottles_for_a_shortfall(database, world):
    bottles = world.receive("100", "1000", "1000").containers
    stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[0].id,
                           container_id=bottles[0].id, now=world.now)
    for _ in range(30):
        world.patient()
    assert _run(database, world, "morning_forecast", morning_forecast) is Outcome.RAN
    row = world.session.scalar(select(StockForecast).where(StockForecast.location_id == world.pumps[0].id))
    # 30 patients × 6 ml = 180 ml split evenly over two pumps: 90 ml; the pump holds 100.
    assert (row.needed, row.on_hand, row.shortfall, row.bottles) == (D("90.00"), D("100"), D("0"), [])
    other = world.session.scalar(select(StockForecast).where(StockForecast.location_id == world.pumps[1].id))
    assert other.shortfall == D("90.00") and other.bottles == [bottles[1].label_code]


def test_order_reminders_for_expiry_and_missed_day_reviews(database, world):
    expiring = factories.patient(world.session, world.clinic)
    factories.signed_order(world.session, world.clinic, expiring, world.physician, valid_from=date(2026, 2, 20),
                           valid_until=date(2026, 3, 4))
    absent = world.patient()
    for days_ago in (1, 2, 3):
        world.session.add(MissedDose(clinic_id=world.clinic.id, patient_id=absent.id,
                                     order_id=world.orders[absent.id].id, part_no=1,
                                     business_date=world.today - timedelta(days=days_ago)))
    world.session.commit()
    assert _run(database, world, "order_reminders", order_reminders) is Outcome.RAN
    reminders = world.session.scalars(select(Reminder).order_by(Reminder.kind)).all()
    assert [(r.kind, r.patient_id) for r in reminders] == [
        (ReminderKind.ORDER_EXPIRING, expiring.id), (ReminderKind.ORDER_REVIEW, absent.id)]
    assert reminders[1].params == {"missed_days": 3}


def test_lot_expiry_and_ecg_reminders(database, world):
    world.receive("1000", lot_number="SOON", expiry=date(2026, 4, 15))
    world.receive("1000", lot_number="LATER", expiry=date(2027, 4, 15))
    assert _run(database, world, "lot_expiry", lot_expiry_reminders) is Outcome.RAN
    lots = world.session.scalars(select(Reminder.params).where(Reminder.kind == ReminderKind.LOT_EXPIRING)).all()
    assert [params["lot_number"] for params in lots] == ["SOON"]
    fresh = world.patient()
    fresh.treatment_start_date = date(2026, 2, 1)
    recent = world.patient()
    recent.treatment_start_date = date(2026, 1, 1)
    world.session.add_all([EcgResult(patient_id=recent.id, taken_on=date(2026, 1, 1), qtc_ms=420,
                                     recorded_by_id=world.physician.id),
                           EcgResult(patient_id=recent.id, taken_on=date(2026, 2, 1), qtc_ms=425,
                                     recorded_by_id=world.physician.id)])
    stopped = world.patient()
    stopped.status = PatientStatus.STOPPED
    world.session.commit()
    assert _run(database, world, "ecg_due", ecg_due_reminders) is Outcome.RAN
    due = world.session.scalars(select(Reminder).where(Reminder.kind == ReminderKind.ECG_DUE)).all()
    assert [r.patient_id for r in due] == [fresh.id]
    assert "ECG_BASELINE_DUE" in due[0].params["codes"]


# ---------------------------------------------------------------------------------------------
# Two schedulers at once (real commits on a database of the test's own)


@pytest.fixture
def committed_clinic(fresh_database_url):
    database = Database.from_url(fresh_database_url)
    with database.unit_of_work() as session:
        world = stock_world.build(session)
        world.receive("1000")
        world.patient()
        session.commit()
        clinic_id = world.clinic.id
    database.dispose()
    return fresh_database_url, clinic_id


def test_two_schedulers_started_at_once_run_each_job_once_per_business_date(committed_clinic):
    url, clinic_id = committed_clinic
    calls = []
    lock = threading.Lock()

    def counted(name):
        def job(session, ctx):
            with lock:
                calls.append((name, ctx.clinic.id, ctx.business_date))
            time.sleep(0.05)  # widen the window in which the other scheduler tries
            return {}
        return job

    jobs = (*scheduler.JOBS, *(scheduler.Job(f"counted_{n}", counted(f"counted_{n}"), scheduler.time(0, 0),
                                             catch_up_days=1) for n in range(3)))
    now = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 20:00 in Hà Nội: every job is due
    databases = [Database.from_url(url) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes, errors = [], []

    def start(database):
        try:
            barrier.wait()
            outcomes.append(scheduler.run_due_jobs(database, now=now, jobs=jobs))
        except Exception as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(database,)) for database in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 6  # 3 jobs × (yesterday, today)
    ran = [key for result in outcomes for key, outcome in result.items() if outcome is Outcome.RAN]
    assert len(ran) == len(set(ran)) == len(jobs) + sum(job.catch_up_days for job in jobs)
    with databases[0].unit_of_work() as session:
        runs = session.execute(select(JobRun.job, JobRun.business_date, JobRun.status, func.count())
                               .group_by(JobRun.job, JobRun.business_date, JobRun.status)).all()
        assert all(count == 1 and status == "done" for _job, _day, status, count in runs)
        assert {(job, day) for job, day, _s, _c in runs} >= {("end_of_day", date(2026, 3, 1)),
                                                           ("end_of_day", date(2026, 3, 2)),
                                                           ("morning_forecast", date(2026, 3, 2))}
    # A restart later the same day runs nothing again.
    again = scheduler.run_due_jobs(databases[1], now=now + timedelta(hours=1), jobs=jobs)
    assert again == {}
    for database in databases:
        database.dispose()


def test_two_apscheduler_processes_tick_at_once_without_running_a_job_twice(committed_clinic):
    url, clinic_id = committed_clinic
    databases = [Database.from_url(url) for _ in range(2)]
    instances = [scheduler.build_scheduler(database, background=True) for database in databases]
    for instance in instances:
        instance.start()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            with databases[0].unit_of_work() as session:
                done = session.scalar(select(func.count()).select_from(JobRun).where(
                    JobRun.job == "end_of_day", JobRun.status == "done"))
            if done >= 1 and all(not i.get_job("run_due_jobs").pending for i in instances):
                time.sleep(1.0)  # let the second tick finish its (empty) pass
                break
            time.sleep(0.1)
    finally:
        for instance in instances:
            instance.shutdown(wait=True)
    with databases[0].unit_of_work() as session:
        counts = session.execute(select(JobRun.job, JobRun.business_date, func.count())
                                 .group_by(JobRun.job, JobRun.business_date)).all()
    assert counts and all(count == 1 for _job, _day, count in counts)
    assert ("end_of_day",) in {(job,) for job, _day, _count in counts}  # yesterday's catch-up is always due
    for database in databases:
        database.dispose()


def test_single_pc_mode_starts_one_background_scheduler(fresh_database_url):
    database = Database.from_url(fresh_database_url)
    try:
        first = scheduler.start_background_scheduler(database)
        second = scheduler.start_background_scheduler(database)
        assert first is second and first.running
    finally:
        scheduler.stop_background_scheduler()
        database.dispose()
