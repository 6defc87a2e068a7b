from pathlib import Path

import pytest

from dispensing.settings import SettingsError, load_settings


def test_defaults_are_vietnamese_and_hanoi_time():
    settings = load_settings(environ={})
    assert settings.language == "vi"
    assert settings.clinic_timezone == "Asia/Ho_Chi_Minh"
    assert settings.env == "development"


def test_environment_overrides_defaults():
    settings = load_settings(
        environ={
            "DATABASE_URL": "postgresql://db.example/mmt",
            "MMT_APP_LANGUAGE": "en",
            "MMT_APP_CLINIC_TIMEZONE": "Asia/Bangkok",
            "MMT_APP_LOGIN_MAX_FAILURES": "3",
        }
    )
    assert settings.database_url == "postgresql://db.example/mmt"
    assert settings.language == "en"
    assert settings.clinic_timezone == "Asia/Bangkok"
    assert settings.login_max_failures == 3


@pytest.mark.parametrize("secret", ["", "dev", "change-me", "short-but-not-placeholder"])
def test_production_refuses_to_start_without_a_real_secret_key(secret):
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings(environ={"MMT_APP_ENV": "production", "SECRET_KEY": secret})


def test_production_starts_with_a_real_secret_key():
    settings = load_settings(environ={"MMT_APP_ENV": "production", "SECRET_KEY": "x" * 48})
    assert settings.production


@pytest.mark.parametrize(
    "environ, problem",
    [
        ({"MMT_APP_CLINIC_TIMEZONE": "Mars/Olympus"}, "TIMEZONE"),
        ({"MMT_APP_LANGUAGE": "fr"}, "LANGUAGE"),
        ({"MMT_APP_ENV": "staging"}, "ENV"),
        ({"MMT_APP_LOGIN_MAX_FAILURES": "many"}, "LOGIN_MAX_FAILURES"),
    ],
)
def test_invalid_settings_name_the_variable(environ, problem):
    with pytest.raises(SettingsError, match=problem):
        load_settings(environ=environ)


def test_unreadable_settings_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(environ={}, path=tmp_path / "missing.toml")


def test_run_py_refuses_production_without_secret(monkeypatch, capsys):
    import run

    monkeypatch.setenv("MMT_APP_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert run.main(["migrate"]) == 78
    assert "SECRET_KEY" in capsys.readouterr().err
