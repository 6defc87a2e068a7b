"""the head of unit (role ``unit_head``), the deliverer's organisation on anomaly records, and
signed quarantine decisions (release to stock, or keep for return to the supplier / destruction)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 16:00:00

The role is a string column with a CHECK constraint (``user_role.role`` and ``reminder.for_role``):
both constraints are replaced to allow ``unit_head``; reminders to countersign an anomaly record move
from the administrators to the head of unit. Anomaly records get the deliverer's organisation,
filled from their receipt's supplier for existing rows. ``quarantine_decision`` is append-only
(triggers from ``migrations.append_only``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import append_only

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_BEFORE = ("nurse", "pharmacist", "physician", "admin")
ROLES_AFTER = (*ROLES_BEFORE, "unit_head")
ROLE_COLUMNS = (("user_role", "role"), ("reminder", "for_role"))


def _role_check(roles: tuple[str, ...]) -> None:
    for table, column in ROLE_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_role"), type_="check")
            batch_op.create_check_constraint("role", f"{column} IN (" + ", ".join(f"'{r}'" for r in roles) + ")")


def upgrade() -> None:
    _role_check(ROLES_AFTER)
    # Anomaly records waiting for a countersignature now wait for the head of unit.
    op.execute("UPDATE reminder SET for_role = 'unit_head' WHERE kind = 'anomaly_to_sign' AND for_role = 'admin'")

    with op.batch_alter_table("receipt_anomaly", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deliverer_organisation", sa.String(length=200), nullable=True))
    op.execute(
        "UPDATE receipt_anomaly SET deliverer_organisation = "
        "(SELECT supplier FROM stock_receipt WHERE stock_receipt.id = receipt_anomaly.receipt_id)"
    )
    with op.batch_alter_table("receipt_anomaly", schema=None) as batch_op:
        batch_op.alter_column("deliverer_organisation", existing_type=sa.String(length=200), nullable=False)

    op.create_table(
        "quarantine_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum("release", "return_to_supplier", "destruction", name="quarantine_outcome", native_enum=False,
                    create_constraint=True, length=18),
            nullable=False,
        ),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=True),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("quantity_milli", sa.BigInteger(), nullable=False),
        sa.Column("entry_movement_id", sa.Integer(), nullable=False),
        sa.Column("release_movement_id", sa.Integer(), nullable=True),
        sa.Column("anomaly_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("pharmacist_id", sa.Integer(), nullable=False),
        sa.Column("unit_head_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity_milli > 0", name=op.f("ck_quarantine_decision_quantity_positive")),
        sa.CheckConstraint(
            "(outcome = 'release' AND release_movement_id IS NOT NULL)"
            " OR (outcome <> 'release' AND release_movement_id IS NULL)",
            name=op.f("ck_quarantine_decision_release_has_movement"),
        ),
        sa.CheckConstraint("pharmacist_id <> unit_head_id", name=op.f("ck_quarantine_decision_two_signers")),
        sa.ForeignKeyConstraint(
            ["anomaly_id"], ["receipt_anomaly.id"], name=op.f("fk_quarantine_decision_anomaly_id_receipt_anomaly")
        ),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f("fk_quarantine_decision_clinic_id_clinic")),
        sa.ForeignKeyConstraint(
            ["container_id"], ["container.id"], name=op.f("fk_quarantine_decision_container_id_container")
        ),
        sa.ForeignKeyConstraint(
            ["entry_movement_id"], ["stock_movement.id"],
            name=op.f("fk_quarantine_decision_entry_movement_id_stock_movement"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_quarantine_decision_location_id_location")
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["lot.id"], name=op.f("fk_quarantine_decision_lot_id_lot")),
        sa.ForeignKeyConstraint(
            ["pharmacist_id"], ["user_account.id"], name=op.f("fk_quarantine_decision_pharmacist_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["release_movement_id"], ["stock_movement.id"],
            name=op.f("fk_quarantine_decision_release_movement_id_stock_movement"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_head_id"], ["user_account.id"], name=op.f("fk_quarantine_decision_unit_head_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine_decision")),
        sa.UniqueConstraint("entry_movement_id", name=op.f("uq_quarantine_decision_entry_movement_id")),
        sa.UniqueConstraint("release_movement_id", name=op.f("uq_quarantine_decision_release_movement_id")),
    )
    with op.batch_alter_table("quarantine_decision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_decision_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantine_decision_container_id"), ["container_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantine_decision_lot_id"), ["lot_id"], unique=False)
    for table in append_only.APPEND_ONLY_0007:
        append_only.install(table)


def downgrade() -> None:
    for table in append_only.APPEND_ONLY_0007:
        append_only.drop(table)
    with op.batch_alter_table("quarantine_decision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_decision_lot_id"))
        batch_op.drop_index(batch_op.f("ix_quarantine_decision_container_id"))
        batch_op.drop_index(batch_op.f("ix_quarantine_decision_clinic_id"))
    op.drop_table("quarantine_decision")

    with op.batch_alter_table("receipt_anomaly", schema=None) as batch_op:
        batch_op.drop_column("deliverer_organisation")

    # A unit head's role rows would break the narrower constraint: they go; their reminders go back
    # to the administrators who countersigned before this revision.
    op.execute("DELETE FROM user_role WHERE role = 'unit_head'")
    op.execute("UPDATE reminder SET for_role = 'admin' WHERE kind = 'anomaly_to_sign' AND for_role = 'unit_head'")
    op.execute("DELETE FROM reminder WHERE for_role = 'unit_head'")
    _role_check(ROLES_BEFORE)
