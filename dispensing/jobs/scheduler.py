"""The scheduler: one APScheduler 3.x process runs every job for every clinic at its local time.

A single interval job ticks every minute; each tick runs, per clinic, the jobs whose local time
has passed today and that have no run for today's business date yet (the end-of-day job also
catches up yesterday). So a scheduler started late, restarted, or started twice by mistake still
runs each job exactly once per clinic and business date: ``run_job`` claims the JobRun row.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import select

from dispensing.clock import business_date, utcnow
from dispensing.db import Database
from dispensing.jobs.end_of_day import prepare_end_of_day
from dispensing.jobs.forecast import morning_forecast
from dispensing.jobs.reminders import ecg_due_reminders, lot_expiry_reminders, order_reminders
from dispensing.jobs.runs import JobFunction, Outcome, run_job
from dispensing.models import Clinic, JobRun

log = structlog.get_logger("dispensing.scheduler")
TICK_SECONDS = 60


@dataclass(frozen=True)
class Job:
    name: str
    function: JobFunction
    at: time  # clinic-local time of day
    catch_up_days: int = 0  # earlier business dates still run when they were missed


JOBS = (
    Job("morning_forecast", morning_forecast, time(5, 30)),
    Job("order_reminders", order_reminders, time(6, 0)),
    Job("lot_expiry", lot_expiry_reminders, time(6, 0)),
    Job("ecg_due", ecg_due_reminders, time(6, 0)),
    Job("end_of_day", prepare_end_of_day, time(19, 0), catch_up_days=1),
)
JOBS_BY_NAME = {job.name: job for job in JOBS}


def due_runs(job: Job, now: datetime, timezone: str) -> list:
    """Return the business dates ``job`` should have run for at ``now`` (oldest first)."""
    local = now.astimezone(ZoneInfo(timezone))
    today = business_date(now, timezone)
    days = [today - timedelta(days=n) for n in range(job.catch_up_days, 0, -1)]
    if local.time() >= job.at:
        days.append(today)
    return days


def run_due_jobs(database: Database, *, now: datetime | None = None, rules_dir: Path | None = None,
                 jobs: tuple[Job, ...] = JOBS) -> dict[tuple[str, int, str], Outcome]:
    """Run every job that is due and has not run, for every clinic; return what each did."""
    now = now or utcnow()
    with database.unit_of_work() as session:
        clinics = [(clinic.id, clinic.timezone) for clinic in session.scalars(select(Clinic).order_by(Clinic.id))]
        done = {tuple(row) for row in session.execute(
            select(JobRun.job, JobRun.clinic_id, JobRun.business_date).where(
                JobRun.status == "done", JobRun.business_date >= business_date(now, "UTC") - timedelta(days=3))
        )}
    outcomes = {}
    for clinic_id, timezone in clinics:
        for job in jobs:
            for day in due_runs(job, now, timezone):
                if (job.name, clinic_id, day) in done:
                    continue
                outcomes[(job.name, clinic_id, day.isoformat())] = run_job(
                    database, job.name, job.function, clinic_id, day, now=now, rules_dir=rules_dir)
    return outcomes


def build_scheduler(database: Database, *, background: bool, rules_dir: Path | None = None) -> BaseScheduler:
    """Return a scheduler (not started) whose single job ticks now and then every minute."""
    scheduler = BackgroundScheduler(timezone="UTC") if background else BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        run_due_jobs, "interval", seconds=TICK_SECONDS, kwargs={"database": database, "rules_dir": rules_dir},
        id="run_due_jobs", max_instances=1, coalesce=True, next_run_time=utcnow(), misfire_grace_time=TICK_SECONDS,
    )
    return scheduler


_started_lock = threading.Lock()
_started: BaseScheduler | None = None


def start_background_scheduler(database: Database, *, rules_dir: Path | None = None) -> BaseScheduler:
    """Start the scheduler in a background thread of this process, once: a second call returns
    the running one (single-PC mode, where ``run.py`` serves and schedules in one process)."""
    global _started
    with _started_lock:
        if _started is None:
            _started = build_scheduler(database, background=True, rules_dir=rules_dir)
            _started.start()
            log.info("scheduler_started", mode="background")
        return _started


def stop_background_scheduler() -> None:
    """Stop the background scheduler this process started (shutdown, tests)."""
    global _started
    with _started_lock:
        if _started is not None:
            _started.shutdown(wait=True)
            _started = None
