"""Running a job once per clinic and business date.

The JobRun row and the job's own writes are one transaction: the row is inserted first (its unique
key (job, clinic, business date) makes a second scheduler wait for the first and then find the row,
or fail its insert and give up), then the job writes, then everything commits. A crash rolls the
row back with the work, so the job runs again on restart. A failure is recorded as a ``failed``
row in a transaction of its own; a failed run may be taken again.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from dispensing.clock import utcnow
from dispensing.db import Database, begin_write
from dispensing.models import Clinic, JobRun

log = structlog.get_logger("dispensing.jobs")
# A failed run is taken again by a later tick, but not at once (the cause may need a person).
RETRY_FAILED_AFTER = timedelta(minutes=15)


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Outcome(enum.StrEnum):
    RAN = "ran"
    SKIPPED = "skipped"  # another run (or another scheduler) has it
    FAILED = "failed"


@dataclass(frozen=True)
class JobContext:
    clinic: Clinic
    business_date: date
    now: datetime
    rules_dir: Path | None = None


JobFunction = Callable[[Session, JobContext], dict]


def _claim(session: Session, job: str, clinic_id: int, day: date, now: datetime) -> JobRun | None:
    """Return this process's JobRun row for the run, or None when the run is taken or done."""
    row = session.scalar(
        select(JobRun).where(JobRun.job == job, JobRun.clinic_id == clinic_id, JobRun.business_date == day)
        .with_for_update()
    )
    if row is not None:
        if row.status != RunStatus.FAILED or (row.finished_at and now - row.finished_at < RETRY_FAILED_AFTER):
            return None
        row.status = RunStatus.RUNNING
        row.started_at = now
        row.finished_at = None
        row.detail = None
        session.flush()
        return row
    row = JobRun(job=job, clinic_id=clinic_id, business_date=day, started_at=now, status=RunStatus.RUNNING)
    session.add(row)
    session.flush()  # the unique key: a concurrent insert waits here, then one of the two fails
    return row


def run_job(
    database: Database, job: str, function: JobFunction, clinic_id: int, day: date, *,
    now: datetime | None = None, rules_dir: Path | None = None,
) -> Outcome:
    """Run ``function`` for ``clinic_id`` and business ``day`` unless it already ran; return what
    happened. Never raises for the job's own failure (it is logged and recorded)."""
    now = now or utcnow()
    with database.unit_of_work() as session:
        try:
            begin_write(session)
            row = _claim(session, job, clinic_id, day, now)
        except (IntegrityError, OperationalError) as exc:
            # Another scheduler inserted the same run first (or holds the write lock too long).
            log.info("job_taken", job=job, clinic_id=clinic_id, business_date=str(day), error=type(exc).__name__)
            return Outcome.SKIPPED
        if row is None:
            return Outcome.SKIPPED
        try:
            clinic = session.get(Clinic, clinic_id)
            detail = function(session, JobContext(clinic, day, now, rules_dir))
            row.status = RunStatus.DONE
            row.finished_at = utcnow()
            row.detail = json.dumps(detail, default=str, sort_keys=True, ensure_ascii=False)
            session.commit()
        except Exception as exc:  # recorded below; the scheduler must keep running
            session.rollback()
            log.exception("job_failed", job=job, clinic_id=clinic_id, business_date=str(day))
            _record_failure(database, job, clinic_id, day, now, exc)
            return Outcome.FAILED
    log.info("job_ran", job=job, clinic_id=clinic_id, business_date=str(day))
    return Outcome.RAN


def _record_failure(database: Database, job: str, clinic_id: int, day: date, now: datetime,
                    exc: Exception) -> None:
    with database.unit_of_work() as session:
        try:
            begin_write(session)
            row = session.scalar(
                select(JobRun).where(JobRun.job == job, JobRun.clinic_id == clinic_id, JobRun.business_date == day)
            )
            if row is None:
                row = JobRun(job=job, clinic_id=clinic_id, business_date=day, started_at=now)
                session.add(row)
            if row.status == RunStatus.DONE:
                return
            row.status = RunStatus.FAILED
            row.finished_at = now  # the run's clock, which the retry delay is measured on
            row.detail = f"{type(exc).__name__}: {exc}"[:2000]
            session.commit()
        except (IntegrityError, OperationalError):  # pragma: no cover - another process recorded it
            session.rollback()
