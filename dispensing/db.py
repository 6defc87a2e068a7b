"""Engines and sessions for SQLite and PostgreSQL.

SQLite is set up the way SQLAlchemy documents for serialisable work with pysqlite: the driver's
own transaction handling is switched off and SQLAlchemy emits BEGIN itself, so SAVEPOINT works and
a write transaction can start with ``BEGIN IMMEDIATE`` (SQLite ignores ``SELECT ... FOR UPDATE``).
Foreign keys are switched on for every connection, WAL journalling and a busy timeout let the
counters and the pharmacist work at the same time.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError, SAWarning
from sqlalchemy.orm import Session, sessionmaker

# Execution option naming how a SQLite transaction begins; write use cases ask for IMMEDIATE so
# they take the write lock up front instead of failing on a lock upgrade half-way through.
SQLITE_BEGIN = "mmt_sqlite_begin"


def sqlite_url_for(instance_path: Path) -> str:
    """Return the URL of the embedded database file in the instance folder."""
    instance_path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{instance_path / 'dispensing.sqlite3'}"


def make_engine(url: str, *, busy_timeout_ms: int = 5000, echo: bool = False) -> Engine:
    """Return an Engine for ``url`` with the SQLite recipe applied when the URL is SQLite."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        )
        _apply_sqlite_recipe(engine, busy_timeout_ms)
        return engine
    engine = create_engine(url, echo=echo, pool_size=10, max_overflow=10)
    _ping_idle_connections(engine)
    return engine


# A pooled connection idle longer than this is pinged before use (a server restart or a firewall
# may have dropped it). SQLAlchemy's pool_pre_ping pings on every checkout: one more round trip for
# every request and every device-service call, which on a busy server is a wait for the scheduler
# each time. A connection dropped within this window fails that one request instead.
PING_AFTER_IDLE_S = 10.0
_CHECKED_IN_AT = "mmt_checked_in_at"


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        checked_in = record.info.get(_CHECKED_IN_AT)
        if checked_in is None or time.monotonic() - checked_in < PING_AFTER_IDLE_S:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:  # the pool discards this connection and checks out another
            raise DisconnectionError() from exc


def _apply_sqlite_recipe(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every test
        # Stop pysqlite from emitting BEGIN/COMMIT on its own (legacy transaction control).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "sqlite"


class Database:
    """An engine and its session factory; one per process."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessionmaker = sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
        # Track whether a transaction has flushed writes, so begin_write() knows a read-only
        # transaction may be ended safely.
        event.listen(self.sessionmaker, "after_flush", _mark_written)
        event.listen(self.sessionmaker, "after_commit", _clear_written)
        event.listen(self.sessionmaker, "after_rollback", _clear_written)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> Database:
        return cls(make_engine(url, **kwargs))

    def session(self) -> Session:
        """Return a new Session; the caller commits or rolls back and closes it."""
        return self.sessionmaker()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Yield a Session that is rolled back unless the block commits it."""
        session = self.session()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer.

    On SQLite this issues ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout
    instead of deadlocking on a lock upgrade; on PostgreSQL it only starts the transaction (use
    cases take row locks with ``FOR UPDATE``). A read-only transaction already open (a view
    loaded the signed-in user, say) is ended first. Raises RuntimeError when the session has
    written something not yet committed: a use case must not inherit half of another's work.
    """
    if isinstance(session.bind, Connection):
        # Tests bind sessions to an outer connection whose transaction is already open.
        session.connection()
        return
    if session.new or session.dirty or session.deleted or session.info.get(_WRITTEN):
        raise RuntimeError("begin_write(): the session holds uncommitted changes of another use case")
    with warnings.catch_warnings(record=True) as caught:
        # SQLAlchemy warns (and ignores the options) when the transaction already has a connection.
        warnings.simplefilter("always", SAWarning)
        connection = session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
    already_begun = any(issubclass(w.category, SAWarning) for w in caught)
    if already_begun and connection.dialect.name == "sqlite":
        # The open transaction only read: end it and begin again as a writer.
        session.commit()
        session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})


_WRITTEN = "mmt_flushed"


def _mark_written(session: Session, _flush_context) -> None:
    session.info[_WRITTEN] = True


def _clear_written(session: Session, *_args) -> None:
    session.info.pop(_WRITTEN, None)


def ping(session: Session) -> bool:
    """Return True when the database answers a trivial query."""
    return session.execute(text("SELECT 1")).scalar_one() == 1
