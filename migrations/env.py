"""Alembic environment: batch mode so SQLite can alter tables; URL from the caller or settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy.types import TypeDecorator

from dispensing.db import make_engine
from dispensing.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from dispensing.settings import load_settings

        url = load_settings().database_url
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL or use `python run.py migrate`")
    return url


def render_item(type_, obj, autogen_context):
    """Render the project's column types as their plain database types, so revisions never
    import application code that may change after the revision was written."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, render_as_batch=True, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
