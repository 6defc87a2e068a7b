"""Products, lots, containers, the controlled-drug ledger and daily reconciliations."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.types import GramsPerMl, MgPerMl, Quantity, UTCDateTime

if TYPE_CHECKING:
    from dispensing.models.doses import Dose


class ProductKind(enum.StrEnum):
    LIQUID = "liquid"  # measured by volume (ml); concentration belongs to each lot
    UNIT_DOSE = "unit_dose"  # counted in units (tablets, capsules)


class Product(CreatedAt, Base):
    __tablename__ = "product"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ProductKind] = mapped_column(enum_type(ProductKind, "product_kind"))
    # Unit of the ledger quantity: "ml" for liquids, "tablet"/"capsule" for unit-dose medicines.
    unit: Mapped[str] = mapped_column(String(16))
    controlled: Mapped[bool] = mapped_column(Boolean, default=False)  # thuốc gây nghiện
    active_ingredient: Mapped[str] = mapped_column(String(120))
    strength: Mapped[str | None] = mapped_column(String(64))  # e.g. "8 mg" for a tablet
    gtin: Mapped[str | None] = mapped_column(String(14), unique=True)


class Lot(CreatedAt, Base):
    __tablename__ = "lot"
    __table_args__ = (
        UniqueConstraint("product_id", "lot_number"),
        CheckConstraint("concentration_milli IS NULL OR concentration_milli > 0", name="concentration_positive"),
        CheckConstraint("density_tenth_milli IS NULL OR density_tenth_milli > 0", name="density_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), index=True)
    lot_number: Mapped[str] = mapped_column(String(64))
    expiry_date: Mapped[date] = mapped_column(Date)
    manufacturer: Mapped[str | None] = mapped_column(String(200))
    gtin: Mapped[str | None] = mapped_column(String(14))
    # mg/ml for liquids; a lot without a verified concentration cannot be issued for dispensing.
    concentration_mg_per_ml: Mapped[Decimal | None] = mapped_column("concentration_milli", MgPerMl)
    concentration_verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    concentration_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # g/ml, for turning a balance reading into a volume.
    density_g_per_ml: Mapped[Decimal | None] = mapped_column("density_tenth_milli", GramsPerMl)

    product: Mapped[Product] = relationship()


class Container(CreatedAt, Base):
    """A bottle (chai thuốc) or pack with its own barcode label; where it is comes from the ledger."""

    __tablename__ = "container"
    __table_args__ = (CheckConstraint("nominal_milli > 0", name="nominal_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"), index=True)
    label_code: Mapped[str] = mapped_column(String(64), unique=True)
    nominal_quantity: Mapped[Decimal] = mapped_column("nominal_milli", Quantity)

    lot: Mapped[Lot] = relationship()


class MovementKind(enum.StrEnum):
    RECEIPT = "receipt"  # nhập
    TRANSFER = "transfer"  # safe ↔ pump / counter / quarantine
    DOSE = "dose"  # observed dose
    TAKE_HOME = "take_home"
    REPLACEMENT = "replacement"
    WASTE = "waste"  # witnessed spill
    PRIMING = "priming"
    CALIBRATION = "calibration"
    RETURN = "return"  # back to the supplier
    DESTRUCTION = "destruction"  # biên bản hủy thuốc
    CORRECTION = "correction"  # signed line referencing what it corrects
    ADJUSTMENT = "adjustment"  # reconciliation hao hụt / dư thừa


class StockMovement(CreatedAt, Base):
    """One line of the append-only ledger. Stock leaves ``from_location`` and enters ``to_location``;
    a missing side is outside the clinic (supplier, patient, drain). Never updated or deleted."""

    __tablename__ = "stock_movement"
    __table_args__ = (
        CheckConstraint("quantity_milli > 0", name="quantity_positive"),
        CheckConstraint(
            "from_location_id IS NOT NULL OR to_location_id IS NOT NULL", name="has_a_location"
        ),
        CheckConstraint(
            "from_location_id IS NULL OR to_location_id IS NULL OR from_location_id <> to_location_id",
            name="distinct_locations",
        ),
        Index("ix_stock_movement_from_day", "from_location_id", "business_date"),
        Index("ix_stock_movement_to_day", "to_location_id", "business_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    business_date: Mapped[date] = mapped_column(Date, index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[MovementKind] = mapped_column(enum_type(MovementKind, "movement_kind"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"), index=True)
    container_id: Mapped[int | None] = mapped_column(ForeignKey("container.id"), index=True)
    from_location_id: Mapped[int | None] = mapped_column(ForeignKey("location.id"))
    to_location_id: Mapped[int | None] = mapped_column(ForeignKey("location.id"))
    quantity: Mapped[Decimal] = mapped_column("quantity_milli", Quantity)
    dose_id: Mapped[int | None] = mapped_column(ForeignKey("dose.id"), index=True)
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("stock_movement.id"))
    # For amendment lines: the closed business day they correct.
    amends_date: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    dose: Mapped[Dose | None] = relationship()
    lot: Mapped[Lot] = relationship()


class ReconciliationStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class MeasureMethod(enum.StrEnum):
    BALANCE = "balance"  # weight ÷ lot density
    CYLINDER = "cylinder"  # graduated cylinder
    PUMP = "pump"  # pump reservoir reading
    COUNT = "count"  # unit-dose count


class Reconciliation(CreatedAt, Base):
    """End-of-day reconciliation (chốt sổ) of one product at one location."""

    __tablename__ = "reconciliation"
    __table_args__ = (UniqueConstraint("location_id", "product_id", "business_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    business_date: Mapped[date] = mapped_column(Date)
    status: Mapped[ReconciliationStatus] = mapped_column(
        enum_type(ReconciliationStatus, "reconciliation_status"), default=ReconciliationStatus.OPEN
    )
    opening: Mapped[Decimal] = mapped_column("opening_milli", Quantity, default=Decimal(0))
    received: Mapped[Decimal] = mapped_column("received_milli", Quantity, default=Decimal(0))
    issued: Mapped[Decimal] = mapped_column("issued_milli", Quantity, default=Decimal(0))
    expected_close: Mapped[Decimal | None] = mapped_column("expected_close_milli", Quantity)
    measured_close: Mapped[Decimal | None] = mapped_column("measured_close_milli", Quantity)
    measure_method: Mapped[MeasureMethod | None] = mapped_column(enum_type(MeasureMethod, "measure_method"))
    loss: Mapped[Decimal] = mapped_column("loss_milli", Quantity, default=Decimal(0))  # hao hụt
    surplus: Mapped[Decimal] = mapped_column("surplus_milli", Quantity, default=Decimal(0))  # dư thừa
    investigation_note: Mapped[str | None] = mapped_column(Text)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
