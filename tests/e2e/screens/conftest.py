"""Page tests over HTTP (Flask test client): forms with their CSRF tokens, statuses, stored state."""

from __future__ import annotations

import io
from datetime import date

import pytest

from dispensing.clock import business_date, utcnow
from tests import factories


@pytest.fixture
def today(clinic) -> date:
    return business_date(utcnow(), clinic.timezone)


@pytest.fixture
def as_user(app, staff):
    """``as_user("physician")`` → a Browser signed in as that role's user."""
    from tests.e2e.conftest import Browser

    def sign_in(role: str):
        browser = Browser(app.test_client())
        assert browser.login(f"{role}1").status_code == 302
        return browser

    return sign_in


@pytest.fixture
def patient(session, clinic, today):
    return factories.patient(session, clinic, full_name="Lê Thị Thu", treatment_start_date=today)


def png_bytes(size=(40, 50)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 90)).save(out, format="PNG")
    return out.getvalue()
