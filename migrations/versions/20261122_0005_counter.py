"""the dose at the counter: unit-dose medication orders, dose voids, take-home returns; doses may
belong to a medication order, keep the device's reading, and the regular slot includes the product
and a failed dose leaves it

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-22 14:00:00

``dose.order_id`` becomes nullable (a unit-dose dose has a medication order instead), which on
SQLite rebuilds the dose table in batch mode: its append-only triggers go with the old table and
are installed again here. The partial unique index is dropped before the rebuild and created
after it, so its WHERE clause never depends on reflection.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import append_only

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REGULAR = sa.text("kind IN ('observed', 'take_home')")
# A failed dose (nothing given) no longer holds the slot, so the nurse can try again.
REGULAR_SLOT = sa.text("kind IN ('observed', 'take_home') AND state <> 'failed'")


def upgrade() -> None:
    op.create_table(
        "medication_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("units_per_administration_milli", sa.BigInteger(), nullable=False),
        sa.Column("administrations_per_day", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("signed_by_id", sa.Integer(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_on", sa.Date(), nullable=True),
        sa.Column("stopped_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "units_per_administration_milli > 0", name=op.f("ck_medication_order_units_positive")
        ),
        sa.CheckConstraint(
            "administrations_per_day BETWEEN 1 AND 3", name=op.f("ck_medication_order_administrations_range")
        ),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until >= valid_from", name=op.f("ck_medication_order_window_ordered")
        ),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_medication_order_clinic_id_clinic")),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], name=op.f("fk_medication_order_patient_id_patient")),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"], name=op.f("fk_medication_order_product_id_product")),
        sa.ForeignKeyConstraint(
            ["signed_by_id"], ["user_account.id"], name=op.f("fk_medication_order_signed_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["stopped_by_id"], ["user_account.id"], name=op.f("fk_medication_order_stopped_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_medication_order")),
    )
    with op.batch_alter_table("medication_order", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_medication_order_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_medication_order_patient_id"), ["patient_id"], unique=False)

    op.drop_index("uq_dose_regular_slot", table_name="dose")
    with op.batch_alter_table("dose", schema=None) as batch_op:
        batch_op.alter_column("order_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("medication_order_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("device_reading_ul", sa.BigInteger(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_dose_medication_order_id_medication_order"), "medication_order",
            ["medication_order_id"], ["id"],
        )
        batch_op.create_check_constraint(
            "has_an_order", "order_id IS NOT NULL OR medication_order_id IS NOT NULL"
        )
        batch_op.create_check_constraint(
            "device_reading_nonnegative", "device_reading_ul IS NULL OR device_reading_ul >= 0"
        )
        batch_op.create_index(batch_op.f("ix_dose_medication_order_id"), ["medication_order_id"], unique=False)
        batch_op.create_index("ix_dose_counter_state", ["counter_id", "state"], unique=False)
    op.create_index(
        "uq_dose_regular_slot", "dose", ["patient_id", "product_id", "part_no", "business_date"], unique=True,
        sqlite_where=REGULAR_SLOT, postgresql_where=REGULAR_SLOT,
    )
    if op.get_bind().dialect.name == "sqlite":
        append_only.drop("dose")
        append_only.install("dose")

    op.create_table(
        "dose_void",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("dose_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_by_id", sa.Integer(), nullable=False),
        sa.Column("witness_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_dose_void_clinic_id_clinic")),
        sa.ForeignKeyConstraint(["dose_id"], ["dose.id"], name=op.f("fk_dose_void_dose_id_dose")),
        sa.ForeignKeyConstraint(
            ["voided_by_id"], ["user_account.id"], name=op.f("fk_dose_void_voided_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(["witness_id"], ["user_account.id"], name=op.f("fk_dose_void_witness_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dose_void")),
        sa.UniqueConstraint("dose_id", name=op.f("uq_dose_void_dose_id")),
    )
    with op.batch_alter_table("dose_void", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dose_void_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "take_home_return",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("dose_id", sa.Integer(), nullable=False),
        sa.Column("returned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("empty", sa.Boolean(), nullable=False),
        sa.Column("remaining_ul", sa.BigInteger(), nullable=True),
        sa.Column("witness_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "remaining_ul IS NULL OR remaining_ul >= 0", name=op.f("ck_take_home_return_remaining_nonnegative")
        ),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_take_home_return_clinic_id_clinic")),
        sa.ForeignKeyConstraint(["dose_id"], ["dose.id"], name=op.f("fk_take_home_return_dose_id_dose")),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["user_account.id"], name=op.f("fk_take_home_return_recorded_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["witness_id"], ["user_account.id"], name=op.f("fk_take_home_return_witness_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_take_home_return")),
        sa.UniqueConstraint("dose_id", name=op.f("uq_take_home_return_dose_id")),
    )
    with op.batch_alter_table("take_home_return", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_take_home_return_clinic_id"), ["clinic_id"], unique=False)

    for table in append_only.APPEND_ONLY_LATER:
        append_only.install(table)


def downgrade() -> None:
    for table in append_only.APPEND_ONLY_LATER:
        append_only.drop(table)
    with op.batch_alter_table("take_home_return", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_take_home_return_clinic_id"))
    op.drop_table("take_home_return")
    with op.batch_alter_table("dose_void", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dose_void_clinic_id"))
    op.drop_table("dose_void")

    # Unit-dose doses have no methadone order; they cannot survive the NOT NULL coming back. The
    # dose table refuses DELETE, so a database holding any cannot be downgraded past here.
    op.drop_index("uq_dose_regular_slot", table_name="dose")
    with op.batch_alter_table("dose", schema=None) as batch_op:
        batch_op.drop_index("ix_dose_counter_state")
        batch_op.drop_index(batch_op.f("ix_dose_medication_order_id"))
        batch_op.drop_constraint(batch_op.f("ck_dose_device_reading_nonnegative"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_dose_has_an_order"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_dose_medication_order_id_medication_order"), type_="foreignkey")
        batch_op.drop_column("device_reading_ul")
        batch_op.drop_column("medication_order_id")
        batch_op.alter_column("order_id", existing_type=sa.Integer(), nullable=False)
    op.create_index(
        "uq_dose_regular_slot", "dose", ["patient_id", "part_no", "business_date"], unique=True,
        sqlite_where=REGULAR, postgresql_where=REGULAR,
    )
    if op.get_bind().dialect.name == "sqlite":
        append_only.drop("dose")
        append_only.install("dose")

    with op.batch_alter_table("medication_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_medication_order_patient_id"))
        batch_op.drop_index(batch_op.f("ix_medication_order_clinic_id"))
    op.drop_table("medication_order")
