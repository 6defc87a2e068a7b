"""GET /healthz, the OpenAPI document and API sign-in."""

from dispensing import schema
from tests import factories


def test_healthz_reports_database_and_migration(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"] == "ok"
    assert body["migration_current"] == body["migration_head"] == schema.head_revision()
    assert body["status"] == "ok"
    assert body["version"]


def test_openapi_document_is_served(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert "/api/v1/session" in response.get_json()["paths"]


def test_api_sign_in_returns_a_csrf_token_and_protects_writes(client, staff):
    response = client.post("/api/v1/session", json={"username": "physician1", "password": factories.PASSWORD})
    assert response.status_code == 201
    body = response.get_json()
    assert body["roles"] == ["physician"]
    assert client.get("/api/v1/session").get_json()["username"] == "physician1"
    # A write without the token is refused; with it, accepted.
    assert client.delete("/api/v1/session").status_code == 400
    assert client.delete("/api/v1/session", headers={"X-CSRFToken": body["csrf_token"]}).status_code == 204
    assert client.get("/api/v1/session").status_code == 401


def test_api_wrong_password_is_a_json_401(client, staff):
    response = client.post("/api/v1/session", json={"username": "nurse1", "password": "nope"})
    assert response.status_code == 401
    assert response.get_json()["code"] == "LOGIN_FAILED"


def test_api_bad_input_is_a_json_422_with_reasons(client):
    response = client.post("/api/v1/session", json={"username": ""})
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "VALIDATION_FAILED"
    assert "password" in str(body["errors"])


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["code"] == "NOT_FOUND"


def test_request_id_is_returned(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32
