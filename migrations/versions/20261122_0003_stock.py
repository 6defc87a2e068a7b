"""controlled-drug stock: receipts, anomalies, destruction, pump attachments, snapshots,
forecasts, reconciliation terms; missed-dose marks and reminders from the scheduled jobs

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22 12:00:00

The ledger (stock_movement) itself is not altered: receipt and destruction lines point at it.
reconciliation gains the remaining terms of the §12 formula; on SQLite its triggers are
reinstalled after the batch operation in case the batch recreated the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import append_only

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DISCREPANCY_REASONS = (
    "unrecorded_spill",
    "measurement_error",
    "device_error",
    "recording_error",
    "suspected_diversion",
    "unknown",
)
RECONCILIATION_TERMS = (
    "transferred_in_milli",
    "transferred_out_milli",
    "waste_milli",
    "other_out_milli",
    "adjusted_milli",
)


def _reinstall_reconciliation_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        append_only.drop("reconciliation")
        append_only.install("reconciliation")


def upgrade() -> None:
    op.create_table(
        "destruction_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("record_no", sa.String(length=64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("pharmacist_id", sa.Integer(), nullable=False),
        sa.Column("witness_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_destruction_record_clinic_id_clinic")),
        sa.ForeignKeyConstraint(
            ["pharmacist_id"], ["user_account.id"], name=op.f("fk_destruction_record_pharmacist_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["witness_id"], ["user_account.id"], name=op.f("fk_destruction_record_witness_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destruction_record")),
        sa.UniqueConstraint("clinic_id", "record_no", name=op.f("uq_destruction_record_clinic_id_record_no")),
    )
    with op.batch_alter_table("destruction_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_destruction_record_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "order_expiring",
                "order_review",
                "lot_expiring",
                "lot_expired",
                "ecg_due",
                "stock_discrepancy",
                "anomaly_to_sign",
                name="reminder_kind",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "for_role",
            sa.Enum("nurse", "pharmacist", "physician", "admin", name="role", native_enum=False, create_constraint=True),
            nullable=False,
        ),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dismissed_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_reminder_clinic_id_clinic")),
        sa.ForeignKeyConstraint(
            ["dismissed_by_id"], ["user_account.id"], name=op.f("fk_reminder_dismissed_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], name=op.f("fk_reminder_patient_id_patient")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder")),
        sa.UniqueConstraint(
            "kind",
            "subject_type",
            "subject_id",
            "for_role",
            "business_date",
            name=op.f("uq_reminder_kind_subject_type_subject_id_for_role_business_date"),
        ),
    )
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_business_date"), ["business_date"], unique=False)
        batch_op.create_index(batch_op.f("ix_reminder_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reminder_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "missed_dose",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("part_no", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_missed_dose_clinic_id_clinic")),
        sa.ForeignKeyConstraint(["order_id"], ["dose_order.id"], name=op.f("fk_missed_dose_order_id_dose_order")),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], name=op.f("fk_missed_dose_patient_id_patient")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missed_dose")),
        sa.UniqueConstraint(
            "patient_id", "part_no", "business_date", name=op.f("uq_missed_dose_patient_id_part_no_business_date")
        ),
    )
    with op.batch_alter_table("missed_dose", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_missed_dose_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_missed_dose_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "stock_forecast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("counter_id", sa.Integer(), nullable=True),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("needed_milli", sa.BigInteger(), nullable=False),
        sa.Column("on_hand_milli", sa.BigInteger(), nullable=False),
        sa.Column("shortfall_milli", sa.BigInteger(), nullable=False),
        sa.Column("bottles", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_stock_forecast_clinic_id_clinic")),
        sa.ForeignKeyConstraint(["counter_id"], ["counter.id"], name=op.f("fk_stock_forecast_counter_id_counter")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_stock_forecast_location_id_location")),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"], name=op.f("fk_stock_forecast_product_id_product")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_forecast")),
        sa.UniqueConstraint(
            "location_id",
            "product_id",
            "business_date",
            name=op.f("uq_stock_forecast_location_id_product_id_business_date"),
        ),
    )
    with op.batch_alter_table("stock_forecast", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stock_forecast_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "stock_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supplier", sa.String(length=200), nullable=False),
        sa.Column("delivery_note_no", sa.String(length=64), nullable=False),
        sa.Column("deliverer_name", sa.String(length=200), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("received_by_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_stock_receipt_clinic_id_clinic")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_stock_receipt_location_id_location")),
        sa.ForeignKeyConstraint(
            ["received_by_id"], ["user_account.id"], name=op.f("fk_stock_receipt_received_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_receipt")),
    )
    with op.batch_alter_table("stock_receipt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stock_receipt_business_date"), ["business_date"], unique=False)
        batch_op.create_index(batch_op.f("ix_stock_receipt_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "stock_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=True),
        sa.Column("balance_milli", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_stock_snapshot_clinic_id_clinic")),
        sa.ForeignKeyConstraint(
            ["container_id"], ["container.id"], name=op.f("fk_stock_snapshot_container_id_container")
        ),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_stock_snapshot_location_id_location")),
        sa.ForeignKeyConstraint(["lot_id"], ["lot.id"], name=op.f("fk_stock_snapshot_lot_id_lot")),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"], name=op.f("fk_stock_snapshot_product_id_product")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_snapshot")),
    )
    with op.batch_alter_table("stock_snapshot", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stock_snapshot_container_id"), ["container_id"], unique=False)
        batch_op.create_index(
            "ix_stock_snapshot_location_day", ["location_id", "product_id", "business_date"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_stock_snapshot_lot_id"), ["lot_id"], unique=False)

    op.create_table(
        "receipt_anomaly",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("receipt_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "broken_seal",
                "cracked_bottle",
                "short_volume",
                "wrong_label",
                "excess",
                "shortage",
                name="anomaly_kind",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("lot_id", sa.Integer(), nullable=True),
        sa.Column("container_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("expected_milli", sa.BigInteger(), nullable=True),
        sa.Column("found_milli", sa.BigInteger(), nullable=True),
        sa.Column("deliverer_name", sa.String(length=200), nullable=False),
        sa.Column("receiver_id", sa.Integer(), nullable=False),
        sa.Column("receiver_signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unit_head_id", sa.Integer(), nullable=True),
        sa.Column("unit_head_signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_receipt_anomaly_clinic_id_clinic")),
        sa.ForeignKeyConstraint(
            ["container_id"], ["container.id"], name=op.f("fk_receipt_anomaly_container_id_container")
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["lot.id"], name=op.f("fk_receipt_anomaly_lot_id_lot")),
        sa.ForeignKeyConstraint(
            ["receipt_id"], ["stock_receipt.id"], name=op.f("fk_receipt_anomaly_receipt_id_stock_receipt")
        ),
        sa.ForeignKeyConstraint(
            ["receiver_id"], ["user_account.id"], name=op.f("fk_receipt_anomaly_receiver_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["unit_head_id"], ["user_account.id"], name=op.f("fk_receipt_anomaly_unit_head_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipt_anomaly")),
    )
    with op.batch_alter_table("receipt_anomaly", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipt_anomaly_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_receipt_anomaly_receipt_id"), ["receipt_id"], unique=False)

    op.create_table(
        "container_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attached_by_id", sa.Integer(), nullable=False),
        sa.Column("attach_movement_id", sa.Integer(), nullable=True),
        sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detached_by_id", sa.Integer(), nullable=True),
        sa.Column("detach_movement_id", sa.Integer(), nullable=True),
        sa.Column("remaining_milli", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attach_movement_id"],
            ["stock_movement.id"],
            name=op.f("fk_container_attachment_attach_movement_id_stock_movement"),
        ),
        sa.ForeignKeyConstraint(
            ["attached_by_id"], ["user_account.id"], name=op.f("fk_container_attachment_attached_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_container_attachment_clinic_id_clinic")),
        sa.ForeignKeyConstraint(
            ["container_id"], ["container.id"], name=op.f("fk_container_attachment_container_id_container")
        ),
        sa.ForeignKeyConstraint(
            ["detach_movement_id"],
            ["stock_movement.id"],
            name=op.f("fk_container_attachment_detach_movement_id_stock_movement"),
        ),
        sa.ForeignKeyConstraint(
            ["detached_by_id"], ["user_account.id"], name=op.f("fk_container_attachment_detached_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_container_attachment_location_id_location")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_container_attachment")),
    )
    with op.batch_alter_table("container_attachment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_container_attachment_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_container_attachment_container_id"), ["container_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_container_attachment_location_id"), ["location_id"], unique=False)
        batch_op.create_index(
            "uq_container_attachment_open_container",
            ["container_id"],
            unique=True,
            sqlite_where=sa.text("detached_at IS NULL"),
            postgresql_where=sa.text("detached_at IS NULL"),
        )
        batch_op.create_index(
            "uq_container_attachment_open_location",
            ["location_id"],
            unique=True,
            sqlite_where=sa.text("detached_at IS NULL"),
            postgresql_where=sa.text("detached_at IS NULL"),
        )

    op.create_table(
        "destruction_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("movement_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["movement_id"], ["stock_movement.id"], name=op.f("fk_destruction_line_movement_id_stock_movement")
        ),
        sa.ForeignKeyConstraint(
            ["record_id"], ["destruction_record.id"], name=op.f("fk_destruction_line_record_id_destruction_record")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destruction_line")),
        sa.UniqueConstraint("movement_id", name=op.f("uq_destruction_line_movement_id")),
    )
    with op.batch_alter_table("destruction_line", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_destruction_line_record_id"), ["record_id"], unique=False)

    op.create_table(
        "stock_receipt_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("receipt_id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=True),
        sa.Column("movement_id", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["container_id"], ["container.id"], name=op.f("fk_stock_receipt_line_container_id_container")
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["lot.id"], name=op.f("fk_stock_receipt_line_lot_id_lot")),
        sa.ForeignKeyConstraint(
            ["movement_id"], ["stock_movement.id"], name=op.f("fk_stock_receipt_line_movement_id_stock_movement")
        ),
        sa.ForeignKeyConstraint(
            ["receipt_id"], ["stock_receipt.id"], name=op.f("fk_stock_receipt_line_receipt_id_stock_receipt")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_receipt_line")),
        sa.UniqueConstraint("container_id", name=op.f("uq_stock_receipt_line_container_id")),
        sa.UniqueConstraint("movement_id", name=op.f("uq_stock_receipt_line_movement_id")),
    )
    with op.batch_alter_table("stock_receipt_line", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stock_receipt_line_receipt_id"), ["receipt_id"], unique=False)

    # Existing rows (open worksheets, closes before this revision) get 0 for the new terms.
    with op.batch_alter_table("reconciliation", schema=None) as batch_op:
        for name in RECONCILIATION_TERMS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("variance_milli", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("variance_pct_e6", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("within_tolerance", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("measure_detail", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("discrepancy_reason", sa.String(length=19), nullable=True))
        batch_op.create_check_constraint(
            "discrepancy_reason",
            "discrepancy_reason IN (" + ", ".join(f"'{value}'" for value in DISCREPANCY_REASONS) + ")",
        )
    _reinstall_reconciliation_triggers()


def downgrade() -> None:
    with op.batch_alter_table("reconciliation", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_reconciliation_discrepancy_reason"), type_="check")
        batch_op.drop_column("discrepancy_reason")
        batch_op.drop_column("measure_detail")
        batch_op.drop_column("within_tolerance")
        batch_op.drop_column("variance_pct_e6")
        batch_op.drop_column("variance_milli")
        for name in reversed(RECONCILIATION_TERMS):
            batch_op.drop_column(name)
    _reinstall_reconciliation_triggers()

    for table, indexes in (
        ("stock_receipt_line", ["ix_stock_receipt_line_receipt_id"]),
        ("destruction_line", ["ix_destruction_line_record_id"]),
        (
            "container_attachment",
            [
                "uq_container_attachment_open_location",
                "uq_container_attachment_open_container",
                "ix_container_attachment_location_id",
                "ix_container_attachment_container_id",
                "ix_container_attachment_clinic_id",
            ],
        ),
        ("receipt_anomaly", ["ix_receipt_anomaly_receipt_id", "ix_receipt_anomaly_clinic_id"]),
        (
            "stock_snapshot",
            ["ix_stock_snapshot_lot_id", "ix_stock_snapshot_location_day", "ix_stock_snapshot_container_id"],
        ),
        ("stock_receipt", ["ix_stock_receipt_clinic_id", "ix_stock_receipt_business_date"]),
        ("stock_forecast", ["ix_stock_forecast_clinic_id"]),
        ("missed_dose", ["ix_missed_dose_patient_id", "ix_missed_dose_clinic_id"]),
        ("reminder", ["ix_reminder_patient_id", "ix_reminder_clinic_id", "ix_reminder_business_date"]),
        ("destruction_record", ["ix_destruction_record_clinic_id"]),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for index in indexes:
                batch_op.drop_index(index)
        op.drop_table(table)
