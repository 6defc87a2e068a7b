"""run.py commands against a real database: migrate, create-user, seed-demo."""

import io

import pytest
from sqlalchemy import func, select

import run
from dispensing.db import Database
from dispensing.models import Dose, Patient, User


@pytest.fixture
def database_env(fresh_database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    database = Database.from_url(fresh_database_url)
    yield database
    database.dispose()


def test_migrate_is_idempotent(database_env, capsys):
    assert run.main(["migrate"]) == 0
    assert run.main(["migrate"]) == 0
    assert "database at migration" in capsys.readouterr().out


def test_create_user_needs_a_clinic_then_creates_a_physician(database_env, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a-good-password\n"))
    args = ["create-user", "--username", "BacSi7", "--full-name", "BS. Phan Văn Bảy", "--role", "physician",
            "--practice-start-date", "2016-05-01", "--certificate", "CC-77", "--password-stdin"]
    assert run.main(args) == 1
    assert "no clinic" in capsys.readouterr().err
    with database_env.unit_of_work() as session:
        from dispensing.models import Clinic

        session.add(Clinic(code="X", name="X"))
        session.commit()
    monkeypatch.setattr("sys.stdin", io.StringIO("a-good-password\n"))
    assert run.main(args) == 0
    with database_env.unit_of_work() as session:
        user = session.scalar(select(User).where(User.username == "bacsi7"))
        assert {r.value for r in user.roles} == {"physician"}
        assert user.mmt_certificate_no == "CC-77"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run.main([*args[:2], "other", *args[3:]]) == 1
    assert "PASSWORD_TOO_SHORT" in capsys.readouterr().err


def test_seed_demo_loads_once(database_env, monkeypatch, capsys):
    assert run.main(["seed-demo", "--patients", "15", "--days", "6"]) == 0
    assert "demo clinic" in capsys.readouterr().out
    with database_env.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 15
        assert session.scalar(select(func.count()).select_from(Dose)) > 40
    assert run.main(["seed-demo"]) == 1
    assert run.main(["seed-demo", "--if-empty"]) == 0
    assert run.main(["audit-verify"]) == 0
