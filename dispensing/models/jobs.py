"""What the scheduled jobs leave behind: missed-dose marks and reminders for staff."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.people import Role
from dispensing.models.types import UTCDateTime


class MissedDose(CreatedAt, Base):
    """A regular dose an active order planned for the day and nobody took (bỏ liều), marked by
    the end-of-day job."""

    __tablename__ = "missed_dose"
    __table_args__ = (UniqueConstraint("patient_id", "part_no", "business_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("dose_order.id"))
    part_no: Mapped[int] = mapped_column(Integer)
    business_date: Mapped[date] = mapped_column(Date)


class ReminderKind(enum.StrEnum):
    ORDER_EXPIRING = "order_expiring"  # y lệnh sắp hết hạn, no follow-up order yet
    ORDER_REVIEW = "order_review"  # missed doses need a physician review
    LOT_EXPIRING = "lot_expiring"
    LOT_EXPIRED = "lot_expired"
    ECG_DUE = "ecg_due"
    STOCK_DISCREPANCY = "stock_discrepancy"  # a close outside tolerance (pharmacist, head of unit)
    ANOMALY_TO_SIGN = "anomaly_to_sign"  # a receipt anomaly waits for the head of unit


class Reminder(CreatedAt, Base):
    """Something a role should act on. ``code`` and ``params`` make the message (translated at
    the edge); the unique key keeps a job from repeating a reminder for the same day."""

    __tablename__ = "reminder"
    __table_args__ = (UniqueConstraint("kind", "subject_type", "subject_id", "for_role", "business_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    business_date: Mapped[date] = mapped_column(Date, index=True)
    kind: Mapped[ReminderKind] = mapped_column(enum_type(ReminderKind, "reminder_kind"))
    for_role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date | None] = mapped_column(Date)
    code: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismissed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
