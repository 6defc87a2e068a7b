"""weighing requests: the pharmacist's "read balance" handed to the counter's device service

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 18:00:00

One row per request to read a balance (``weighing_request``): the web worker writes it, the device
service of the balance's counter (in-process or ``run.py agent``) takes it and reports the stable
weight or why there is none; an unfinished request expires. Never deleted, frozen once final
(``migrations.append_only``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import append_only

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "weighing_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("counter_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum("requested", "reading", "completed", "failed", "expired", name="weighing_state",
                    native_enum=False, create_constraint=True, length=9),
            nullable=False,
        ),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grams_ug", sa.BigInteger(), nullable=True),
        sa.Column("stable", sa.Boolean(), nullable=True),
        sa.Column("unit", sa.String(length=8), nullable=True),
        sa.Column("device_model", sa.String(length=128), nullable=True),
        sa.Column("device_serial", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.String(length=40), nullable=True),
        sa.Column("failure_detail", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state <> 'completed' OR (grams_ug IS NOT NULL AND stable)",
                           name=op.f("ck_weighing_request_completed_has_weight")),
        sa.CheckConstraint("state <> 'failed' OR failure_reason IS NOT NULL",
                           name=op.f("ck_weighing_request_failed_has_reason")),
        sa.CheckConstraint("expires_at > requested_at", name=op.f("ck_weighing_request_expiry_after_request")),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_weighing_request_clinic_id_clinic")),
        sa.ForeignKeyConstraint(["counter_id"], ["counter.id"], name=op.f("fk_weighing_request_counter_id_counter")),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f("fk_weighing_request_device_id_device")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"],
                                name=op.f("fk_weighing_request_location_id_location")),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"], name=op.f("fk_weighing_request_product_id_product")),
        sa.ForeignKeyConstraint(["requested_by_id"], ["user_account.id"],
                                name=op.f("fk_weighing_request_requested_by_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weighing_request")),
    )
    with op.batch_alter_table("weighing_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_weighing_request_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_weighing_request_device_id"), ["device_id"], unique=False)
        batch_op.create_index("ix_weighing_request_counter_state", ["counter_id", "state"], unique=False)
    append_only.install("weighing_request")


def downgrade() -> None:
    append_only.drop("weighing_request")
    with op.batch_alter_table("weighing_request", schema=None) as batch_op:
        batch_op.drop_index("ix_weighing_request_counter_state")
        batch_op.drop_index(batch_op.f("ix_weighing_request_device_id"))
        batch_op.drop_index(batch_op.f("ix_weighing_request_clinic_id"))
    op.drop_table("weighing_request")
