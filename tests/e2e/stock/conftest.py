import pytest

from dispensing.clock import utcnow
from tests import stock_world
from tests.stock_world import PASSWORD


@pytest.fixture
def world(session):
    """The stock world on the real clock: the API's business day is today."""
    world = stock_world.build(session)
    world.now = utcnow()
    return world


@pytest.fixture
def sign_in(client):
    """Sign a user in through the API; return the headers later writes send (CSRF token)."""

    def sign(user):
        response = client.post("/api/v1/session", json={"username": user.username, "password": PASSWORD})
        assert response.status_code == 201, response.get_json()
        return {"X-CSRFToken": response.get_json()["csrf_token"]}

    return sign
