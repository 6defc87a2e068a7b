"""Database triggers that keep records append-only, on PostgreSQL and SQLite.

Batch migrations on SQLite recreate a table and lose its triggers: a migration that alters one of
these tables in batch mode must call ``install`` again for it (the append-only tests catch a miss).
"""

from __future__ import annotations

from alembic import op

# Tables whose rows are never updated or deleted.
APPEND_ONLY = ("audit_event", "stock_movement", "dose_event")
# Append-only tables added by later revisions; each of those revisions installs its own (the
# initial revision installs the tuple above, so these must stay out of it).
APPEND_ONLY_LATER = ("dose_void", "take_home_return")
# Added by revision 0007 (quarantine decisions), which installs its own.
APPEND_ONLY_0007 = ("quarantine_decision",)
# Tables whose rows are never deleted, and frozen once the condition holds.
FROZEN_WHEN = {
    "dose": "OLD.state IN ('completed', 'partial', 'failed')",
    "reconciliation": "OLD.status = 'closed'",
}
# Frozen tables added by later revisions (kept out of FROZEN_WHEN, which the initial revision
# installs): each of those revisions installs its own.
FROZEN_WHEN_LATER = {
    "weighing_request": "OLD.state IN ('completed', 'failed', 'expired')",  # revision 0008
}

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION mmt_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append-only record: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$
"""


def _append_only(table: str) -> bool:
    return table in APPEND_ONLY or table in APPEND_ONLY_LATER or table in APPEND_ONLY_0007


def _frozen_when(table: str) -> str:
    return FROZEN_WHEN[table] if table in FROZEN_WHEN else FROZEN_WHEN_LATER[table]


def install(table: str) -> None:
    """Create the triggers for ``table`` on the current connection's dialect."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        if _append_only(table):
            op.execute(
                f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mmt_refuse_change()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER trg_{table}_no_delete BEFORE DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mmt_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER trg_{table}_frozen BEFORE UPDATE ON {table} "
                f"FOR EACH ROW WHEN ({_frozen_when(table)}) EXECUTE FUNCTION mmt_refuse_change()"
            )
        op.execute(
            f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION mmt_refuse_change()"
        )
    elif dialect == "sqlite":
        refuse = "SELECT RAISE(ABORT, 'append-only record: {op} on " + table + " refused');"
        if _append_only(table):
            op.execute(
                f"CREATE TRIGGER trg_{table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN {refuse.format(op='UPDATE')} END"
            )
        else:
            op.execute(
                f"CREATE TRIGGER trg_{table}_frozen BEFORE UPDATE ON {table} "
                f"WHEN {_frozen_when(table)} BEGIN {refuse.format(op='UPDATE')} END"
            )
        op.execute(
            f"CREATE TRIGGER trg_{table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN {refuse.format(op='DELETE')} END"
        )
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"append-only triggers are not written for {dialect}")


def drop(table: str) -> None:
    """Drop the triggers ``install`` created for ``table``."""
    dialect = op.get_bind().dialect.name
    names = ["append_only", "no_delete", "frozen", "no_truncate", "no_update"]
    for name in names:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_{name} ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_{name}")
