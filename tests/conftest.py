"""Fixtures shared by every test layer.

The database is SQLite by default; set ``MMT_TEST_DATABASE_URL`` to a PostgreSQL URL (as
``.ci/run`` does) to run the same tests there. The schema is built once per run by the Alembic
migrations (so the triggers they install are under test too) in a private SQLite file or a private
PostgreSQL schema. Each test runs inside a transaction that is rolled back; tests that must commit
for real (races, crashes) ask for ``fresh_database_url`` and get a database of their own.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from dispensing import schema
from dispensing.db import Database, make_engine
from dispensing.settings import Settings, load_settings

PG_URL = os.environ.get("MMT_TEST_DATABASE_URL", "")


def pytest_configure(config):
    from dispensing import accounts

    accounts.use_cheap_hashing_for_tests()


def _with_search_path(url: str, schema_name: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema_name}"


class TestDatabases:
    """Creates migrated databases: SQLite files copied from one migrated template, or fresh
    PostgreSQL schemas in the test database."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.schemas: list[str] = []
        self._template: Path | None = None

    @property
    def dialect(self) -> str:
        return "postgresql" if PG_URL else "sqlite"

    def new_url(self) -> str:
        if PG_URL:
            name = f"t_{uuid.uuid4().hex[:12]}"
            admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{name}"'))
            admin.dispose()
            self.schemas.append(name)
            url = _with_search_path(PG_URL, name)
            engine = make_engine(url)
            schema.upgrade(engine)
            engine.dispose()
            return url
        if self._template is None:
            self._template = self.tmp / "template.sqlite3"
            engine = make_engine(f"sqlite:///{self._template}")
            schema.upgrade(engine)
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            engine.dispose()
        target = self.tmp / f"db_{uuid.uuid4().hex[:12]}.sqlite3"
        shutil.copyfile(self._template, target)
        return f"sqlite:///{target}"

    def cleanup(self) -> None:
        if not PG_URL or not self.schemas:
            return
        admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        for name in self.schemas:
            # One transaction per schema: dropping them all at once needs a lock per table and
            # runs out of lock slots (max_locks_per_transaction) once a run makes many databases.
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def test_databases(tmp_path_factory) -> Iterator[TestDatabases]:
    databases = TestDatabases(tmp_path_factory.mktemp("databases"))
    yield databases
    databases.cleanup()


@pytest.fixture(scope="session")
def engine(test_databases) -> Iterator[Engine]:
    engine = make_engine(test_databases.new_url())
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_database_url(test_databases) -> str:
    """A migrated database of this test's own, for tests that commit for real."""
    return test_databases.new_url()


class RollbackDatabase(Database):
    """A Database whose sessions live inside one outer transaction that the test rolls back;
    a service's commit only releases a savepoint."""

    def __init__(self, connection):
        self.engine = connection.engine
        self.connection = connection
        self.sessionmaker = sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    def dispose(self) -> None:  # the engine belongs to the test run
        return None


@pytest.fixture
def database(engine) -> Iterator[RollbackDatabase]:
    connection = engine.connect()
    transaction = connection.begin()
    yield RollbackDatabase(connection)
    transaction.rollback()
    connection.close()


@pytest.fixture
def session(database) -> Iterator[Session]:
    session = database.session()
    yield session
    session.close()


@pytest.fixture
def settings() -> Settings:
    return load_settings(environ={}, overrides={"env": "testing", "secret_key": "test-secret-key-not-for-production"})


@pytest.fixture(scope="session")
def catalogues(tmp_path_factory):
    """The translation catalogues with the Vietnamese still waiting in translations/pending, so
    pages are tested in Vietnamese before ``make translations`` has merged them."""
    from web.i18n import compile_with_pending

    return compile_with_pending(tmp_path_factory.mktemp("translations") / "catalogues")


@pytest.fixture
def app(settings, database, catalogues):
    from web import create_app

    return create_app({"TESTING": True, "BABEL_TRANSLATION_DIRECTORIES": str(catalogues)}, settings=settings,
                      database=database)


@pytest.fixture
def client(app):
    return app.test_client()
