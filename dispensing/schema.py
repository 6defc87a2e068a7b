"""Running Alembic migrations from code, and reading the migration state."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from dispensing.settings import PROJECT_ROOT

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """Return the project's Alembic Config bound to ``url`` or to an open ``connection``."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if url:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Migrate the database behind ``engine`` to ``revision``.

    On SQLite, foreign keys are switched off while batch migrations rebuild tables (SQLite's own
    procedure for table rebuilds) and checked afterwards; RuntimeError names any broken reference.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection=connection), revision)
        return
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")  # must run outside a transaction
        try:
            with connection.begin():
                command.upgrade(alembic_config(connection=connection), revision)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def head_revision() -> str:
    """Return the newest migration revision(s) in the code, joined with '+' when branches are open."""
    return "+".join(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def current_revision(connection: Connection) -> str | None:
    """Return the revision(s) the database is at ('+'-joined), or None when never migrated."""
    heads = MigrationContext.configure(connection).get_current_heads()
    return "+".join(sorted(heads)) if heads else None
