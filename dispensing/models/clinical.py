"""Orders (y lệnh), pre-dose assessments, ECG results and concomitant medications."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.types import Milligrams, UTCDateTime


class Phase(enum.StrEnum):
    INDUCTION = "induction"  # khởi liều / dò liều
    TITRATION = "titration"  # điều chỉnh liều
    MAINTENANCE = "maintenance"  # liều duy trì
    TAPER = "taper"  # giảm liều tiến tới ngừng


class OrderKind(enum.StrEnum):
    DOSING = "dosing"  # a daily dose regimen for a validity window
    STOP = "stop"  # treatment stopped from valid_from
    SUSPEND = "suspend"  # no dosing between valid_from and valid_until
    REPLACEMENT = "replacement"  # one replacement dose after a witnessed vomit
    ASSESSMENT_RELEASE = "assessment_release"  # lifts a pre-dose block, linked to the assessment


class OrderStatus(enum.StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    # Drafts that were abandoned; a signed order is never cancelled, only superseded or stopped.
    DISCARDED = "discarded"


class Order(CreatedAt, Base):
    """A physician's order. Once signed it never changes: changes are new orders superseding it."""

    __tablename__ = "dose_order"
    __table_args__ = (
        CheckConstraint("daily_total_ug >= 0", name="daily_total_nonnegative"),
        CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="window_ordered"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    kind: Mapped[OrderKind] = mapped_column(enum_type(OrderKind, "order_kind"), default=OrderKind.DOSING)
    status: Mapped[OrderStatus] = mapped_column(enum_type(OrderStatus, "order_status"), default=OrderStatus.DRAFT)
    phase: Mapped[Phase | None] = mapped_column(enum_type(Phase, "phase"))
    daily_total_mg: Mapped[Decimal] = mapped_column("daily_total_ug", Milligrams, default=Decimal(0))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    take_home_plan: Mapped[dict | None] = mapped_column(JSON)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("dose_order.id"), index=True)
    # For replacement and assessment-release orders: what they refer to.
    linked_dose_id: Mapped[int | None] = mapped_column(ForeignKey("dose.id", use_alter=True))
    linked_assessment_id: Mapped[int | None] = mapped_column(ForeignKey("assessment.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cosigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    cosigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rule_table_version: Mapped[str | None] = mapped_column(Text)
    # Decisions shown at signing, kept as evidence of what the physician saw.
    decisions: Mapped[list | None] = mapped_column(JSON)
    # Counter BLOCKs this signed order lifts: [{"code": ..., "subject": ...}] (e.g. a missed-dose
    # review for one absence, or a positive pre-dose check for one assessment).
    lifts: Mapped[list | None] = mapped_column(JSON)

    parts: Mapped[list[OrderPart]] = relationship(
        back_populates="order", order_by="OrderPart.part_no", cascade="all, delete-orphan", lazy="selectin"
    )
    acknowledgements: Mapped[list[OrderAcknowledgement]] = relationship(
        back_populates="order", cascade="all, delete-orphan"
    )


class OrderPart(Base):
    """One part of a split daily dose (chia liều); each part is its own observed administration."""

    __tablename__ = "order_part"
    __table_args__ = (
        UniqueConstraint("order_id", "part_no"),
        CheckConstraint("part_no BETWEEN 1 AND 3", name="part_no_range"),
        CheckConstraint("dose_ug > 0", name="dose_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("dose_order.id", ondelete="CASCADE"), index=True)
    part_no: Mapped[int] = mapped_column(Integer)
    dose_mg: Mapped[Decimal] = mapped_column("dose_ug", Milligrams)
    # Earliest local time of day the part may be given, e.g. "14:00" for an afternoon part.
    not_before: Mapped[str | None] = mapped_column(String(5))

    order: Mapped[Order] = relationship(back_populates="parts")


class OrderAcknowledgement(CreatedAt, Base):
    """A WARN decision the physician acknowledged before signing, with the written reason."""

    __tablename__ = "order_acknowledgement"
    __table_args__ = (UniqueConstraint("order_id", "reason_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("dose_order.id", ondelete="CASCADE"), index=True)
    reason_code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))

    order: Mapped[Order] = relationship(back_populates="acknowledgements")


class Assessment(CreatedAt, Base):
    """The pre-dose check (every dose) and, in induction, the COWS score."""

    __tablename__ = "assessment"
    __table_args__ = (CheckConstraint("cows IS NULL OR cows BETWEEN 0 AND 48", name="cows_range"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    business_date: Mapped[date] = mapped_column(Date, index=True)
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assessed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    drowsy: Mapped[bool] = mapped_column(Boolean, default=False)
    slurred_speech: Mapped[bool] = mapped_column(Boolean, default=False)
    pinpoint_pupils: Mapped[bool] = mapped_column(Boolean, default=False)
    alcohol_smell: Mapped[bool] = mapped_column(Boolean, default=False)
    unsteady_gait: Mapped[bool] = mapped_column(Boolean, default=False)
    cows: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)

    @property
    def positive(self) -> bool:
        """True when any intoxication sign was found (the dose is blocked)."""
        return any(
            (self.drowsy, self.slurred_speech, self.pinpoint_pupils, self.alcohol_smell, self.unsteady_gait)
        )


class EcgResult(CreatedAt, Base):
    __tablename__ = "ecg_result"
    __table_args__ = (CheckConstraint("qtc_ms BETWEEN 200 AND 800", name="qtc_range"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    taken_on: Mapped[date] = mapped_column(Date)
    qtc_ms: Mapped[int] = mapped_column(Integer)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str | None] = mapped_column(Text)


class ConcomitantMedication(CreatedAt, Base):
    """Another medicine the patient takes; inducers and inhibitors change methadone levels."""

    __tablename__ = "concomitant_medication"
    __table_args__ = (
        CheckConstraint("stopped_on IS NULL OR stopped_on >= started_on", name="dates_ordered"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    drug_name: Mapped[str] = mapped_column(String(120))
    started_on: Mapped[date] = mapped_column(Date)
    stopped_on: Mapped[date | None] = mapped_column(Date)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str | None] = mapped_column(Text)


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


class ClinicalTask(CreatedAt, Base):
    """A physician task raised by a rule (interaction started/stopped, missed-dose review,
    dosing-error alert, ECG due…). ``code`` is the rule's reason code; texts come from the rules."""

    __tablename__ = "clinical_task"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    due_on: Mapped[date] = mapped_column(Date)
    subject: Mapped[str | None] = mapped_column(String(64))
    message_vi: Mapped[str] = mapped_column(Text)
    message_en: Mapped[str] = mapped_column(Text)
    rule_table_version: Mapped[str] = mapped_column(String(255))
    status: Mapped[TaskStatus] = mapped_column(enum_type(TaskStatus, "task_status"), default=TaskStatus.OPEN)
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_note: Mapped[str | None] = mapped_column(Text)


class PatientFlag(CreatedAt, Base):
    """A time-limited flag shown with the patient (e.g. the 2-week watch after an inducer starts)."""

    __tablename__ = "patient_flag"
    __table_args__ = (CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="dates_ordered"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    subject: Mapped[str | None] = mapped_column(String(64))
    message_vi: Mapped[str] = mapped_column(Text)
    message_en: Mapped[str] = mapped_column(Text)
    rule_table_version: Mapped[str] = mapped_column(String(255))
