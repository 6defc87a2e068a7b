"""Scheduled jobs: end-of-day preparation, morning forecast, order, lot-expiry and ECG reminders.

Each job is a function ``(session, JobContext) -> dict`` that writes without committing;
``run_job`` runs it once per clinic and business date, ``scheduler`` decides when.
"""

from dispensing.jobs.runs import JobContext, Outcome, run_job

__all__ = ["JobContext", "Outcome", "run_job"]
