"""The audit trail's hash chain, and `run.py audit-verify` catching an edit behind our back."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

import run
from dispensing import audit
from dispensing.db import Database
from dispensing.models import AuditEvent, Role
from tests import factories


def test_chain_links_every_event_to_the_previous(session):
    clinic = factories.clinic(session)
    admin = factories.user(session, clinic, Role.ADMIN)
    first = audit.record(session, "a", actor_id=admin.id, data={"x": 1})
    second = audit.record(session, "b", actor_id=admin.id, data={"amount": "8.00"})
    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    report = audit.verify_chain(session)
    assert report.ok and report.checked >= 2


def test_the_database_computes_the_hash_python_recomputes(session):
    clinic = factories.clinic(session)
    admin = factories.user(session, clinic, Role.ADMIN)
    at = datetime(2026, 3, 2, 1, 2, 3, 456789, tzinfo=UTC)
    event = audit.record(session, "patient.renamed", actor_id=admin.id, clinic_id=clinic.id, entity_type="Patient",
                         entity_id=7, data={"name": "Nguyễn Văn Đức", "note": 'a "quoted" \\ line'}, at=at)
    session.expire_all()
    stored = session.get(AuditEvent, event.id)
    assert (stored.seq, stored.prev_hash, stored.hash) == (event.seq, event.prev_hash, event.hash)
    assert stored.hash == audit.event_hash(stored.prev_hash, stored.seq, at, clinic.id, admin.id, "patient.renamed",
                                           "Patient", "7", stored.payload)


def test_canonical_json_is_stable():
    one = audit.canonical_json({"b": 1, "a": "Đ"})
    two = audit.canonical_json({"a": "Đ", "b": 1})
    assert one == two == '{"a":"Đ","b":1}'


def _tamper(engine, sql, params):
    """Change an audit row the way a DBA could: with the append-only triggers switched off."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            connection.execute(text(sql), params)
            connection.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
        else:
            trigger_sql = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_event'")
            ).scalars().all()
            connection.execute(text("DROP TRIGGER trg_audit_event_no_update"))
            connection.execute(text("DROP TRIGGER trg_audit_event_no_delete"))
            connection.execute(text(sql), params)
            for statement in trigger_sql:
                connection.execute(text(statement))


@pytest.fixture
def audited_database(fresh_database_url, monkeypatch):
    database = Database.from_url(fresh_database_url)
    with database.unit_of_work() as session:
        clinic = factories.clinic(session)
        admin = factories.user(session, clinic, Role.ADMIN)
        for n in range(5):
            audit.record(session, "order.signed", actor_id=admin.id, clinic_id=clinic.id,
                         entity_type="Order", entity_id=n, data={"mg": f"{60 + n}.0"},
                         at=datetime(2026, 1, 1, 8, n, tzinfo=UTC))
        session.commit()
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    yield database
    database.dispose()


def _seq_of(database, action_index):
    with database.unit_of_work() as session:
        return session.scalars(text("SELECT seq FROM audit_event ORDER BY seq")).all()[action_index]


def test_audit_verify_passes_on_an_intact_trail(audited_database, capsys):
    assert run.main(["audit-verify"]) == 0
    assert "intact" in capsys.readouterr().out


def test_audit_verify_reports_the_first_edited_event(audited_database, capsys):
    target = _seq_of(audited_database, 3)
    _tamper(audited_database.engine, "UPDATE audit_event SET payload = :p WHERE seq = :s",
            {"p": '{"mg":"600.0"}', "s": target})
    assert run.main(["audit-verify"]) == 2
    out = capsys.readouterr().out
    assert f"BROKEN at event {target}" in out
    assert "does not match its hash" in out


def test_audit_verify_reports_a_deleted_event(audited_database, capsys):
    target = _seq_of(audited_database, 2)
    _tamper(audited_database.engine, "DELETE FROM audit_event WHERE seq = :s", {"s": target})
    assert run.main(["audit-verify"]) == 2
    assert f"BROKEN at event {target}" in capsys.readouterr().out


def test_audit_verify_reports_a_rehashed_event(audited_database, capsys):
    """An attacker who recomputes the edited event's own hash still breaks the next link."""
    target = _seq_of(audited_database, 1)
    with audited_database.unit_of_work() as session:
        event = session.scalars(text("SELECT id FROM audit_event WHERE seq = :s").bindparams(s=target)).one()
        row = session.get(AuditEvent, event)
        forged_payload = '{"mg":"6000.0"}'
        forged_hash = audit.event_hash(row.prev_hash, row.seq, row.occurred_at, row.clinic_id, row.actor_id,
                                       row.action, row.entity_type, row.entity_id, forged_payload)
    _tamper(audited_database.engine, "UPDATE audit_event SET payload = :p, hash = :h WHERE seq = :s",
            {"p": forged_payload, "h": forged_hash, "s": target})
    assert run.main(["audit-verify"]) == 2
    assert f"BROKEN at event {target + 1}" in capsys.readouterr().out
