"""Records of the counter besides the dose itself: unit-dose medication orders, voids of a
mistaken dose record, and take-home containers coming back."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt
from dispensing.models.stock import Product
from dispensing.models.types import Millilitres, Quantity, UTCDateTime


class MedicationOrder(CreatedAt, Base):
    """A physician's order for a unit-dose medicine given at the counter (e.g. TLD, isoniazid):
    so many units per administration, 1–3 administrations a day, for a window. Signed when
    written (re-authenticated) and never edited: a change is a new order; stopping early records
    the stop date and who signed it, nothing else changes.

    FHIR: MedicationRequest (dosageInstruction.doseAndRate.doseQuantity = units per administration,
    timing.repeat.frequency = administrations per day, dispenseRequest.validityPeriod = window).
    """

    __tablename__ = "medication_order"
    __table_args__ = (
        CheckConstraint("units_per_administration_milli > 0", name="units_positive"),
        CheckConstraint("administrations_per_day BETWEEN 1 AND 3", name="administrations_range"),
        CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="window_ordered"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    units_per_administration: Mapped[Decimal] = mapped_column("units_per_administration_milli", Quantity)
    administrations_per_day: Mapped[int] = mapped_column(Integer, default=1)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    instructions: Mapped[str | None] = mapped_column(Text)
    signed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_on: Mapped[date | None] = mapped_column(Date)
    stopped_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    product: Mapped[Product] = relationship()

    def covers(self, day: date) -> bool:
        """True when the order applies on ``day`` (inside its window and not stopped by then)."""
        if self.stopped_on is not None and day >= self.stopped_on:
            return False
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)


class DoseVoid(CreatedAt, Base):
    """A mistaken dose record declared void, with the reason and a witness. The dose row and its
    ledger line stay as they are (the liquid did leave the pump); the void only takes the dose out
    of the patient's history. Append-only, one per dose."""

    __tablename__ = "dose_void"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    dose_id: Mapped[int] = mapped_column(ForeignKey("dose.id"), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    voided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    voided_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    witness_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))


class TakeHomeReturn(CreatedAt, Base):
    """A take-home container brought back (vỏ chai trả lại): empty, or with what was left in it
    (measured, witnessed). Append-only, one per take-home dose."""

    __tablename__ = "take_home_return"
    __table_args__ = (
        CheckConstraint("remaining_ul IS NULL OR remaining_ul >= 0", name="remaining_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    dose_id: Mapped[int] = mapped_column(ForeignKey("dose.id"), unique=True)
    returned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    empty: Mapped[bool] = mapped_column(Boolean)
    remaining_ml: Mapped[Decimal | None] = mapped_column("remaining_ul", Millilitres)
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str | None] = mapped_column(Text)
