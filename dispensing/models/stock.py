"""Products, lots, containers, the controlled-drug ledger and daily reconciliations."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.types import Factor, GramsPerMl, MgPerMl, Quantity, UTCDateTime

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


class DiscrepancyReason(enum.StrEnum):
    """Why a variance lies outside tolerance: the discrepancy entry a close then needs."""

    UNRECORDED_SPILL = "unrecorded_spill"
    MEASUREMENT_ERROR = "measurement_error"
    DEVICE_ERROR = "device_error"
    RECORDING_ERROR = "recording_error"
    SUSPECTED_DIVERSION = "suspected_diversion"
    UNKNOWN = "unknown"


class Reconciliation(CreatedAt, Base):
    """End-of-day reconciliation (chốt sổ) of one product at one location.

    expected_close = opening + received + transferred_in − transferred_out − issued − waste
    − other_out + adjusted (CLINICAL_RULES §12); every figure is a sum of ledger lines of the day,
    corrections counted in the column of the line they correct.
    """

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
    # Added by the stock issue (migration 0003): the other terms of the §12 formula, the variance
    # and how the close was measured.
    transferred_in: Mapped[Decimal] = mapped_column("transferred_in_milli", Quantity, default=Decimal(0))
    transferred_out: Mapped[Decimal] = mapped_column("transferred_out_milli", Quantity, default=Decimal(0))
    # Witnessed spill, priming and calibration liquid.
    waste: Mapped[Decimal] = mapped_column("waste_milli", Quantity, default=Decimal(0))
    # Returns to the supplier and destruction.
    other_out: Mapped[Decimal] = mapped_column("other_out_milli", Quantity, default=Decimal(0))
    # Net amendments of earlier closes booked on this day (surplus positive, loss negative).
    adjusted: Mapped[Decimal] = mapped_column("adjusted_milli", Quantity, default=Decimal(0))
    variance: Mapped[Decimal | None] = mapped_column("variance_milli", Quantity)
    variance_pct: Mapped[Decimal | None] = mapped_column("variance_pct_e6", Factor)
    within_tolerance: Mapped[bool | None] = mapped_column(Boolean)
    # The raw reading behind measured_close: weight, tare, density, quotient and rounding.
    measure_detail: Mapped[dict | None] = mapped_column(JSON)
    discrepancy_reason: Mapped[DiscrepancyReason | None] = mapped_column(
        enum_type(DiscrepancyReason, "discrepancy_reason")
    )


class Receipt(CreatedAt, Base):
    """A delivery of stock (phiếu nhập / biên bản giao nhận), signed by the receiver."""

    __tablename__ = "stock_receipt"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    business_date: Mapped[date] = mapped_column(Date, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    supplier: Mapped[str] = mapped_column(String(200))
    delivery_note_no: Mapped[str] = mapped_column(String(64))
    deliverer_name: Mapped[str] = mapped_column(String(200))
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"))
    received_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str | None] = mapped_column(Text)

    lines: Mapped[list[ReceiptLine]] = relationship(back_populates="receipt", order_by="ReceiptLine.id")
    anomalies: Mapped[list[ReceiptAnomaly]] = relationship(
        back_populates="receipt", order_by="ReceiptAnomaly.id"
    )


class ReceiptLine(Base):
    """One received lot or bottle, tied to the ledger line that booked it."""

    __tablename__ = "stock_receipt_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    receipt_id: Mapped[int] = mapped_column(ForeignKey("stock_receipt.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"))
    container_id: Mapped[int | None] = mapped_column(ForeignKey("container.id"), unique=True)
    movement_id: Mapped[int] = mapped_column(ForeignKey("stock_movement.id"), unique=True)
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)

    receipt: Mapped[Receipt] = relationship(back_populates="lines")
    lot: Mapped[Lot] = relationship()
    container: Mapped[Container | None] = relationship()
    movement: Mapped[StockMovement] = relationship()


class AnomalyKind(enum.StrEnum):
    BROKEN_SEAL = "broken_seal"  # niêm phong bị hỏng
    CRACKED_BOTTLE = "cracked_bottle"  # chai bị nứt, vỡ
    SHORT_VOLUME = "short_volume"  # thiếu thể tích
    WRONG_LABEL = "wrong_label"  # nhãn sai
    EXCESS = "excess"  # thừa so với phiếu giao
    SHORTAGE = "shortage"  # thiếu so với phiếu giao


class ReceiptAnomaly(CreatedAt, Base):
    """Anomaly record at receipt (biên bản bất thường), signed by the deliverer (by name, on
    paper), the receiver and the head of unit (both re-authenticated). A bottle named here is
    booked into quarantine and cannot be issued."""

    __tablename__ = "receipt_anomaly"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    receipt_id: Mapped[int] = mapped_column(ForeignKey("stock_receipt.id"), index=True)
    kind: Mapped[AnomalyKind] = mapped_column(enum_type(AnomalyKind, "anomaly_kind"))
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("lot.id"))
    container_id: Mapped[int | None] = mapped_column(ForeignKey("container.id"))
    description: Mapped[str] = mapped_column(Text)
    expected_quantity: Mapped[Decimal | None] = mapped_column("expected_milli", Quantity)
    found_quantity: Mapped[Decimal | None] = mapped_column("found_milli", Quantity)
    deliverer_name: Mapped[str] = mapped_column(String(200))
    # The deliverer is not a user: their organisation (the supplier unless another one delivered).
    deliverer_organisation: Mapped[str] = mapped_column(String(200))
    receiver_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    receiver_signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    unit_head_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    unit_head_signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    receipt: Mapped[Receipt] = relationship(back_populates="anomalies")

    @property
    def fully_signed(self) -> bool:
        return self.unit_head_id is not None


class QuarantineOutcome(enum.StrEnum):
    RELEASE = "release"  # back to stock: the bottle may be issued again
    RETURN_TO_SUPPLIER = "return_to_supplier"  # stays in quarantine until returned
    DESTRUCTION = "destruction"  # stays in quarantine until destroyed (biên bản hủy thuốc)


class QuarantineDecision(CreatedAt, Base):
    """What happens to one bottle (or a lot's loose stock) in quarantine (khu biệt trữ), signed by
    the pharmacist and the head of unit, both re-authenticated. Append-only: one decision per stay
    in quarantine (the ledger line that brought it there, ``entry_movement_id``). A release names
    the transfer line that took it back to a safe; whether stock is in quarantine is always read
    from the ledger, never from a flag."""

    __tablename__ = "quarantine_decision"
    __table_args__ = (
        CheckConstraint("quantity_milli > 0", name="quantity_positive"),
        CheckConstraint(
            "(outcome = 'release' AND release_movement_id IS NOT NULL)"
            " OR (outcome <> 'release' AND release_movement_id IS NULL)",
            name="release_has_movement",
        ),
        CheckConstraint("pharmacist_id <> unit_head_id", name="two_signers"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    business_date: Mapped[date] = mapped_column(Date)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[QuarantineOutcome] = mapped_column(enum_type(QuarantineOutcome, "quarantine_outcome"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"), index=True)
    container_id: Mapped[int | None] = mapped_column(ForeignKey("container.id"), index=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"))
    # What the ledger held in quarantine when the decision was signed.
    quantity: Mapped[Decimal] = mapped_column("quantity_milli", Quantity)
    entry_movement_id: Mapped[int] = mapped_column(ForeignKey("stock_movement.id"), unique=True)
    release_movement_id: Mapped[int | None] = mapped_column(ForeignKey("stock_movement.id"), unique=True)
    anomaly_id: Mapped[int | None] = mapped_column(ForeignKey("receipt_anomaly.id"))
    reason: Mapped[str] = mapped_column(Text)
    pharmacist_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    unit_head_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))

    container: Mapped[Container | None] = relationship()
    lot: Mapped[Lot] = relationship()


class DestructionRecord(CreatedAt, Base):
    """Destruction record (biên bản hủy thuốc): signed by the pharmacist and a witness."""

    __tablename__ = "destruction_record"
    __table_args__ = (UniqueConstraint("clinic_id", "record_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    record_no: Mapped[str] = mapped_column(String(64))
    business_date: Mapped[date] = mapped_column(Date)
    destroyed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    method: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    pharmacist_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    witness_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))

    lines: Mapped[list[DestructionLine]] = relationship(order_by="DestructionLine.id")


class DestructionLine(Base):
    __tablename__ = "destruction_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("destruction_record.id"), index=True)
    movement_id: Mapped[int] = mapped_column(ForeignKey("stock_movement.id"), unique=True)

    movement: Mapped[StockMovement] = relationship()


class ContainerAttachment(CreatedAt, Base):
    """A bottle open on a pump, from attach to detach. Partial unique indexes keep one open
    bottle per pump and a bottle on one pump at a time."""

    __tablename__ = "container_attachment"
    __table_args__ = (
        Index(
            "uq_container_attachment_open_location",
            "location_id",
            unique=True,
            sqlite_where=text("detached_at IS NULL"),
            postgresql_where=text("detached_at IS NULL"),
        ),
        Index(
            "uq_container_attachment_open_container",
            "container_id",
            unique=True,
            sqlite_where=text("detached_at IS NULL"),
            postgresql_where=text("detached_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    container_id: Mapped[int] = mapped_column(ForeignKey("container.id"), index=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"), index=True)
    attached_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attached_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    attach_movement_id: Mapped[int | None] = mapped_column(ForeignKey("stock_movement.id"))
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detached_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    detach_movement_id: Mapped[int | None] = mapped_column(ForeignKey("stock_movement.id"))
    # What was left in the bottle at detach, as measured (0: empty).
    remaining: Mapped[Decimal | None] = mapped_column("remaining_milli", Quantity)

    container: Mapped[Container] = relationship()


class StockSnapshot(Base):
    """Balance of one lot/bottle at one location at the end of a closed day. Written by the
    close, never changed: later lines are dated later, so a balance is the snapshot of the last
    closed day plus the lines after it."""

    __tablename__ = "stock_snapshot"
    __table_args__ = (
        Index("ix_stock_snapshot_location_day", "location_id", "product_id", "business_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    business_date: Mapped[date] = mapped_column(Date)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"), index=True)
    container_id: Mapped[int | None] = mapped_column(ForeignKey("container.id"), index=True)
    # May be negative: a dose is booked as delivered even when the ledger thought the bottle empty.
    balance: Mapped[Decimal] = mapped_column("balance_milli", Quantity)


class StockForecast(CreatedAt, Base):
    """The morning forecast for one pump or counter shelf: volume needed today, on hand, and the
    bottles to move from the safe (FEFO)."""

    __tablename__ = "stock_forecast"
    __table_args__ = (UniqueConstraint("location_id", "product_id", "business_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    counter_id: Mapped[int | None] = mapped_column(ForeignKey("counter.id"))
    business_date: Mapped[date] = mapped_column(Date)
    needed: Mapped[Decimal] = mapped_column("needed_milli", Quantity)
    on_hand: Mapped[Decimal] = mapped_column("on_hand_milli", Quantity)
    shortfall: Mapped[Decimal] = mapped_column("shortfall_milli", Quantity)
    # Label codes of the bottles to move, first-expiry first.
    bottles: Mapped[list] = mapped_column(JSON, default=list)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
