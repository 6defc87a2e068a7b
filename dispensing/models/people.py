"""Users with their roles, and patients."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispensing.models.base import Base, CreatedAt, enum_type
from dispensing.models.types import UTCDateTime


class Role(enum.StrEnum):
    NURSE = "nurse"
    PHARMACIST = "pharmacist"
    PHYSICIAN = "physician"
    ADMIN = "admin"
    # Head of unit (trưởng đơn vị / trưởng khoa): countersigns anomaly records at receipt and
    # decides what happens to quarantined stock.
    UNIT_HEAD = "unit_head"


class User(CreatedAt, Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str | None] = mapped_column(String(8))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Prescriber profile (TT 14/2015: ≥ 18 months of practice and an MMT training certificate).
    practice_start_date: Mapped[date | None] = mapped_column(Date)
    mmt_certificate_no: Mapped[str | None] = mapped_column(String(64))

    role_rows: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(row.role for row in self.role_rows)

    def has_role(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))


class UserRole(Base):
    __tablename__ = "user_role"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))

    user: Mapped[User] = relationship(back_populates="role_rows")


class Sex(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"


class PatientStatus(enum.StrEnum):
    ACTIVE = "active"  # in treatment
    STOPPED = "stopped"  # treatment ended
    TRANSFERRED = "transferred"


class Patient(CreatedAt, Base):
    """A person in treatment (người bệnh). The phase comes from the active order."""

    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("clinic_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    # The value printed on the card's Code128 barcode: letter-prefixed, unique everywhere.
    card_barcode: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    # Unaccented, lower-case copy of the name so search works without typing diacritics.
    search_name: Mapped[str] = mapped_column(String(200), index=True)
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[Sex | None] = mapped_column(enum_type(Sex, "sex"))
    national_id: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(300))
    treatment_start_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[PatientStatus] = mapped_column(enum_type(PatientStatus, "patient_status"), default=PatientStatus.ACTIVE)
    pregnant: Mapped[bool] = mapped_column(Boolean, default=False)
    hiv: Mapped[bool] = mapped_column(Boolean, default=False)
    tb: Mapped[bool] = mapped_column(Boolean, default=False)
    # Signed take-home commitment (cam kết), required for multi-day dispensing.
    take_home_commitment_on: Mapped[date | None] = mapped_column(Date)

    photo: Mapped[PatientPhoto | None] = relationship(back_populates="patient", uselist=False)


class PatientPhoto(CreatedAt, Base):
    __tablename__ = "patient_photo"
    __table_args__ = (CheckConstraint("length(data) > 0", name="data_nonempty"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), unique=True)
    media_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)

    patient: Mapped[Patient] = relationship(back_populates="photo")
