"""Settings: defaults from ``config/settings.toml``, overridden by the environment.

Environment variables: ``DATABASE_URL``, ``SECRET_KEY`` and ``MMT_<SECTION>_<KEY>`` for any key
(for example ``MMT_APP_CLINIC_TIMEZONE=Asia/Ho_Chi_Minh``, ``MMT_APP_ENV=production``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "config" / "settings.toml"

# Keys that are known to be placeholders and therefore not acceptable in production.
_WEAK_SECRETS = {"", "dev", "change-me", "changeme", "secret", "development"}


class SettingsError(Exception):
    """A setting is missing or invalid; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    env: str
    language: str
    languages: tuple[str, ...]
    clinic_timezone: str
    session_idle_minutes: int
    login_max_failures: int
    login_lockout_minutes: int
    log_format: str
    database_url: str
    sqlite_busy_timeout_ms: int
    secret_key: str
    rules_dir: Path
    rules_selection: Mapping[str, str] = field(default_factory=dict)
    devices_registry: Path = PROJECT_ROOT / "config" / "devices.toml"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.clinic_timezone)


def _coerce(value: str, like: object) -> object:
    if isinstance(like, bool):
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, list):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _merge_environment(raw: dict, environ: Mapping[str, str]) -> dict:
    merged = {section: dict(values) for section, values in raw.items()}
    for section, values in merged.items():
        for key, default in list(values.items()):
            name = f"MMT_{section}_{key}".upper()
            if name in environ:
                try:
                    values[key] = _coerce(environ[name], default)
                except ValueError as exc:
                    raise SettingsError(f"{name}: {exc}") from exc
    if environ.get("DATABASE_URL"):
        merged["database"]["url"] = environ["DATABASE_URL"]
    return merged


def load_settings(
    environ: Mapping[str, str] | None = None,
    path: Path = DEFAULT_SETTINGS_FILE,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Return the settings from ``path`` with environment and explicit overrides applied.

    Raises SettingsError when a value is invalid, and in production when SECRET_KEY is missing
    or a known placeholder.
    """
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    merged = _merge_environment(raw, environ)
    app, database, rules = merged["app"], merged["database"], merged["rules"]
    devices = merged.get("devices", {})
    values: dict[str, object] = {
        "env": app["env"],
        "language": app["language"],
        "languages": tuple(app["languages"]),
        "clinic_timezone": app["clinic_timezone"],
        "session_idle_minutes": app["session_idle_minutes"],
        "login_max_failures": app["login_max_failures"],
        "login_lockout_minutes": app["login_lockout_minutes"],
        "log_format": app["log_format"],
        "database_url": database["url"],
        "sqlite_busy_timeout_ms": database["sqlite_busy_timeout_ms"],
        "secret_key": environ.get("SECRET_KEY", environ.get("MMT_SECRET_KEY", "")),
        "rules_dir": PROJECT_ROOT / rules["dir"],
        "rules_selection": {k: v for k, v in rules.items() if k != "dir"},
        "devices_registry": PROJECT_ROOT / devices.get("registry", "config/devices.toml"),
    }
    values.update(overrides or {})
    settings = Settings(**values)  # type: ignore[arg-type]
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Raise SettingsError naming the first invalid setting."""
    if settings.env not in {"development", "production", "testing"}:
        raise SettingsError(f"MMT_APP_ENV must be development, production or testing, not {settings.env!r}")
    if settings.language not in settings.languages:
        raise SettingsError(f"MMT_APP_LANGUAGE {settings.language!r} is not one of {settings.languages}")
    try:
        ZoneInfo(settings.clinic_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(f"MMT_APP_CLINIC_TIMEZONE {settings.clinic_timezone!r} is not a known timezone") from exc
    for name in ("session_idle_minutes", "login_max_failures", "login_lockout_minutes"):
        if int(getattr(settings, name)) <= 0:
            raise SettingsError(f"MMT_APP_{name.upper()} must be a positive number")
    if settings.production:
        if settings.secret_key.strip().lower() in _WEAK_SECRETS or len(settings.secret_key) < 32:
            raise SettingsError(
                "Production mode needs a real SECRET_KEY (at least 32 random characters), e.g. "
                "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))'). "
                "Refusing to start."
            )
