"""HTTP-level helpers: sign in through the real login form, with its CSRF token."""

from __future__ import annotations

import re

import pytest

from dispensing.models import Role
from tests import factories

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


class Browser:
    """A test client that fills forms the way a person's browser would."""

    def __init__(self, client):
        self.client = client

    def token(self, path: str = "/login") -> str:
        return csrf_token(self.client.get(path).get_data(as_text=True))

    def login(self, username: str, password: str = factories.PASSWORD):
        return self.client.post(
            "/login", data={"username": username, "password": password, "csrf_token": self.token()}
        )

    def post(self, path: str, data: dict | None = None, token_from: str | None = None):
        data = dict(data or {})
        data["csrf_token"] = self.token(token_from or path)
        return self.client.post(path, data=data)


@pytest.fixture
def browser(client):
    return Browser(client)


@pytest.fixture
def clinic(session):
    return factories.clinic(session)


@pytest.fixture
def staff(session, clinic):
    """One user per role, keyed by role name."""
    return {role.value: factories.user(session, clinic, role, username=f"{role.value}1") for role in Role}
