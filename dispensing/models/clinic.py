"""Clinics, their counters, devices, calibrations and stock locations."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.types import Factor, Millilitres, Quantity, UTCDateTime


class ClinicKind(enum.StrEnum):
    TREATMENT = "treatment"  # cơ sở điều trị
    DISPENSING = "dispensing"  # cơ sở cấp phát thuốc (satellite)


class Clinic(CreatedAt, Base):
    __tablename__ = "clinic"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ClinicKind] = mapped_column(enum_type(ClinicKind, "clinic_kind"), default=ClinicKind.TREATMENT)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Ho_Chi_Minh")
    # Rule tables the clinic uses (see config/rules/); orders record the version they were checked with.
    rules_core: Mapped[str] = mapped_column(String(64), default="vn-3140")
    rules_missed_dose: Mapped[str] = mapped_column(String(64), default="australia-2003")
    rules_take_home: Mapped[str] = mapped_column(String(64), default="disabled")
    rules_interactions: Mapped[str] = mapped_column(String(64), default="default")
    rules_titration_cap: Mapped[str] = mapped_column(String(64), default="vn-3140")
    take_home_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Reconciliation tolerance: a variance within both limits is recorded as hao hụt / dư thừa.
    reconcile_tolerance_pct: Mapped[Decimal] = mapped_column("reconcile_tolerance_pct_e6", Factor, default=Decimal("0.5"))
    reconcile_tolerance_ml: Mapped[Decimal] = mapped_column("reconcile_tolerance_ul", Millilitres, default=Decimal("2"))

    counters: Mapped[list[Counter]] = relationship(back_populates="clinic", order_by="Counter.code")


class Counter(CreatedAt, Base):
    """A dispensing counter (quầy cấp phát): one nurse station with its devices."""

    __tablename__ = "counter"
    __table_args__ = (UniqueConstraint("clinic_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    # The counter agent authenticates with a token; only its argon2 hash is stored.
    agent_token_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    clinic: Mapped[Clinic] = relationship(back_populates="counters")
    devices: Mapped[list[Device]] = relationship(back_populates="counter", order_by="Device.id")


class DeviceKind(enum.StrEnum):
    PUMP = "pump"
    BALANCE = "balance"
    SCANNER = "scanner"
    PRINTER = "printer"


class Device(CreatedAt, Base):
    __tablename__ = "device"
    __table_args__ = (UniqueConstraint("clinic_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    counter_id: Mapped[int | None] = mapped_column(ForeignKey("counter.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[DeviceKind] = mapped_column(enum_type(DeviceKind, "device_kind"))
    driver: Mapped[str] = mapped_column(String(64))
    port_url: Mapped[str] = mapped_column(String(255))
    serial_number: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    counter: Mapped[Counter | None] = relationship(back_populates="devices")


class CalibrationMethod(enum.StrEnum):
    GRAVIMETRIC = "gravimetric"
    VOLUMETRIC = "volumetric"


class Calibration(CreatedAt, Base):
    """One calibration of a pump (hiệu chuẩn bơm): replicates, factor and acceptance."""

    __tablename__ = "calibration"
    __table_args__ = (
        CheckConstraint("factor_e6 > 0", name="factor_positive"),
        CheckConstraint("liquid_used_ul >= 0", name="liquid_used_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id"), index=True)
    method: Mapped[CalibrationMethod] = mapped_column(enum_type(CalibrationMethod, "calibration_method"))
    performed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    performed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    factor: Mapped[Decimal] = mapped_column("factor_e6", Factor)
    mean_error_pct: Mapped[Decimal] = mapped_column("mean_error_pct_e6", Factor)
    cv_pct: Mapped[Decimal] = mapped_column("cv_pct_e6", Factor)
    passed: Mapped[bool] = mapped_column(Boolean)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    liquid_used_ml: Mapped[Decimal] = mapped_column("liquid_used_ul", Millilitres)
    replicates: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)


class LocationKind(enum.StrEnum):
    SAFE = "safe"  # tủ/két thuốc
    PUMP = "pump"  # bình chứa của bơm
    COUNTER = "counter"  # unit-dose shelf at a counter
    QUARANTINE = "quarantine"


class Location(CreatedAt, Base):
    __tablename__ = "location"
    __table_args__ = (UniqueConstraint("clinic_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[LocationKind] = mapped_column(enum_type(LocationKind, "location_kind"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id"), unique=True)
    # Reservoir capacity, where the location has one (pump).
    capacity: Mapped[Decimal | None] = mapped_column("capacity_milli", Quantity)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    device: Mapped[Device | None] = relationship()
