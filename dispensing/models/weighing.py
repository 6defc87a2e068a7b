"""A request to read one stable weight from a balance, handed to the device service of the
balance's counter (in-process in single-PC mode, ``run.py agent`` on a counter PC), and its result.

The web worker never opens a serial port: the pharmacist's "read balance" writes a REQUESTED row,
the counter's device service takes it (READING), reads the balance and reports COMPLETED (stable
grams, the balance's identity) or FAILED (why). A request nobody finished by ``expires_at`` is
EXPIRED and never handed out again. Rows are never deleted and are frozen once final (triggers
from ``migrations.append_only``)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.clinic import Device
from dispensing.models.types import ScaledDecimal, UTCDateTime

# Net grams to the microgram: exact for any MT-SICS readability down to 0.000001 g.
Grams = ScaledDecimal(6)


class WeighingState(enum.StrEnum):
    REQUESTED = "requested"
    READING = "reading"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


OPEN_WEIGHING_STATES = (WeighingState.REQUESTED, WeighingState.READING)


class WeighingRequest(CreatedAt, Base):
    __tablename__ = "weighing_request"
    __table_args__ = (
        CheckConstraint("state <> 'completed' OR (grams_ug IS NOT NULL AND stable)", name="completed_has_weight"),
        CheckConstraint("state <> 'failed' OR failure_reason IS NOT NULL", name="failed_has_reason"),
        CheckConstraint("expires_at > requested_at", name="expiry_after_request"),
        Index("ix_weighing_request_counter_state", "counter_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id"), index=True)
    # The counter whose device service reads the balance (the balance's counter when requested).
    counter_id: Mapped[int] = mapped_column(ForeignKey("counter.id"))
    # What was being weighed (the reconciliation worksheet), when known.
    location_id: Mapped[int | None] = mapped_column(ForeignKey("location.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[WeighingState] = mapped_column(enum_type(WeighingState, "weighing_state"),
                                                 default=WeighingState.REQUESTED)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grams: Mapped[Decimal | None] = mapped_column("grams_ug", Grams)
    stable: Mapped[bool | None] = mapped_column(Boolean)
    unit: Mapped[str | None] = mapped_column(String(8))
    # What the balance said about itself (MT-SICS I2 / I4) when it was read.
    device_model: Mapped[str | None] = mapped_column(String(128))
    device_serial: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    failure_detail: Mapped[str | None] = mapped_column(String(200))

    device: Mapped[Device] = relationship()

    @property
    def open(self) -> bool:
        return self.state in OPEN_WEIGHING_STATES
