from __future__ import annotations

from datetime import date

import pytest

from dispensing.clock import business_date, utcnow
from tests import factories


class Api:
    """A JSON API client signed in as one user, sending the CSRF token on writes."""

    def __init__(self, client, username: str, password: str = factories.PASSWORD):
        self.client = client
        response = client.post("/api/v1/session", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        self.token = response.get_json()["csrf_token"]

    def get(self, path, **kwargs):
        return self.client.get(f"/api/v1{path}", **kwargs)

    def post(self, path, json=None):
        return self.client.post(f"/api/v1{path}", json=json or {}, headers={"X-CSRFToken": self.token})

    def put(self, path, json=None, **kwargs):
        if "data" in kwargs:
            return self.client.put(f"/api/v1{path}", headers={"X-CSRFToken": self.token}, **kwargs)
        return self.client.put(f"/api/v1{path}", json=json or {}, headers={"X-CSRFToken": self.token})

    def patch(self, path, json=None):
        return self.client.patch(f"/api/v1{path}", json=json or {}, headers={"X-CSRFToken": self.token})


@pytest.fixture
def api_as(app):
    def sign_in(username: str) -> Api:
        return Api(app.test_client(), username)

    return sign_in


@pytest.fixture
def today(clinic) -> date:
    return business_date(utcnow(), clinic.timezone)
