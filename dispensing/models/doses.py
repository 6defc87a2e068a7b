"""Doses given at the counter, their state transitions, and vomit events."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.types import Milligrams, Millilitres, Quantity, UTCDateTime

if TYPE_CHECKING:
    from dispensing.models.clinical import Assessment


class DoseKind(enum.StrEnum):
    OBSERVED = "observed"  # uống tại chỗ (có giám sát)
    TAKE_HOME = "take_home"  # cấp thuốc nhiều ngày / mang về
    REPLACEMENT = "replacement"  # liều bù, only on a physician order
    COMPLETION = "completion"  # the remainder of a partial delivery, linked to it


class DoseState(enum.StrEnum):
    REQUESTED = "requested"
    PROGRAMMED = "programmed"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    UNKNOWN = "unknown"  # left in flight by a crash; a nurse and a witness resolve it


# Kinds that take an order part's daily slot: at most one per patient, part and business date.
REGULAR_KINDS = (DoseKind.OBSERVED, DoseKind.TAKE_HOME)
# The doses that hold a slot (the partial unique index's condition): regular kinds, unless failed.
REGULAR_SLOT_WHERE = "kind IN ('observed', 'take_home') AND state <> 'failed'"


class Dose(CreatedAt, Base):
    """A dispense line. Rows are never deleted; every state change is also a DoseEvent."""

    __tablename__ = "dose"
    __table_args__ = (
        CheckConstraint("part_no IS NULL OR part_no BETWEEN 1 AND 3", name="part_no_range"),
        CheckConstraint("planned_ug >= 0", name="planned_mg_nonnegative"),
        CheckConstraint("planned_ul IS NULL OR planned_ul >= 0", name="planned_ml_nonnegative"),
        CheckConstraint("delivered_ul IS NULL OR delivered_ul >= 0", name="delivered_ml_nonnegative"),
        CheckConstraint("planned_units_milli IS NULL OR planned_units_milli >= 0", name="planned_units_nonnegative"),
        CheckConstraint(
            "delivered_units_milli IS NULL OR delivered_units_milli >= 0", name="delivered_units_nonnegative"
        ),
        CheckConstraint(
            "order_id IS NOT NULL OR medication_order_id IS NOT NULL", name="has_an_order"
        ),
        CheckConstraint(
            "device_reading_ul IS NULL OR device_reading_ul >= 0", name="device_reading_nonnegative"
        ),
        # One regular dose per patient, product, order part (or administration) and business date;
        # the product is part of the slot so a methadone part and a tablet never collide. A FAILED
        # dose (nothing given) leaves the slot, so the nurse can try again.
        Index(
            "uq_dose_regular_slot",
            "patient_id",
            "product_id",
            "part_no",
            "business_date",
            unique=True,
            sqlite_where=text(REGULAR_SLOT_WHERE),
            postgresql_where=text(REGULAR_SLOT_WHERE),
        ),
        Index("ix_dose_patient_day", "patient_id", "business_date"),
        Index("ix_dose_clinic_day", "clinic_id", "business_date"),
        # The device service asks for its counter's doses in flight.
        Index("ix_dose_counter_state", "counter_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    # The methadone order (dose_order) or, for a unit-dose medicine, its medication order.
    order_id: Mapped[int | None] = mapped_column(ForeignKey("dose_order.id"), index=True)
    medication_order_id: Mapped[int | None] = mapped_column(ForeignKey("medication_order.id"), index=True)
    part_no: Mapped[int | None] = mapped_column(Integer)
    business_date: Mapped[date] = mapped_column(Date)
    kind: Mapped[DoseKind] = mapped_column(enum_type(DoseKind, "dose_kind"))
    state: Mapped[DoseState] = mapped_column(enum_type(DoseState, "dose_state"), default=DoseState.REQUESTED)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("lot.id"))
    container_id: Mapped[int | None] = mapped_column(ForeignKey("container.id"))
    counter_id: Mapped[int | None] = mapped_column(ForeignKey("counter.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id"))
    assessment_id: Mapped[int | None] = mapped_column(ForeignKey("assessment.id"))
    linked_dose_id: Mapped[int | None] = mapped_column(ForeignKey("dose.id"))
    planned_mg: Mapped[Decimal] = mapped_column("planned_ug", Milligrams)
    planned_ml: Mapped[Decimal | None] = mapped_column("planned_ul", Millilitres)
    delivered_ml: Mapped[Decimal | None] = mapped_column("delivered_ul", Millilitres)
    # What the pump measured (calibrated ml). Equals delivered_ml for a finished dispense; for an
    # UNKNOWN dose it is the last counter value seen (a lower bound) the resolution starts from.
    device_reading_ml: Mapped[Decimal | None] = mapped_column("device_reading_ul", Millilitres)
    planned_units: Mapped[Decimal | None] = mapped_column("planned_units_milli", Quantity)
    delivered_units: Mapped[Decimal | None] = mapped_column("delivered_units_milli", Quantity)
    nurse_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    # Raw tx/rx bytes of the dispense (hex), kept as evidence.
    transcript: Mapped[list | None] = mapped_column(JSON)

    events: Mapped[list[DoseEvent]] = relationship(back_populates="dose", order_by="DoseEvent.id")
    assessment: Mapped[Assessment | None] = relationship()


class DoseEvent(CreatedAt, Base):
    """Append-only history of a dose's states (the Dose row holds only the latest)."""

    __tablename__ = "dose_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    dose_id: Mapped[int] = mapped_column(ForeignKey("dose.id"), index=True)
    state: Mapped[DoseState] = mapped_column(enum_type(DoseState, "dose_state"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    detail: Mapped[dict | None] = mapped_column(JSON)

    dose: Mapped[Dose] = relationship(back_populates="events")


class VomitEvent(CreatedAt, Base):
    """Witnessed vomiting after a dose (nôn sau uống)."""

    __tablename__ = "vomit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    dose_id: Mapped[int] = mapped_column(ForeignKey("dose.id"), index=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str | None] = mapped_column(Text)
