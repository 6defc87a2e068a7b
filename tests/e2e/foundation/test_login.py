"""Login, roles, lockout, CSRF and idle timeout over HTTP."""

from datetime import UTC, datetime, timedelta

import pytest

from dispensing.models import AuditEvent, User
from tests import factories


@pytest.mark.parametrize("role", ["nurse", "pharmacist", "physician", "admin"])
def test_each_role_can_log_in_and_out(browser, staff, role):
    response = browser.login(f"{role}1")
    assert response.status_code == 302
    home = browser.client.get("/")
    assert home.status_code == 200
    assert staff[role].full_name in home.get_data(as_text=True)
    response = browser.post("/logout", token_from="/")
    assert response.status_code == 302
    assert browser.client.get("/").status_code == 302  # back to the login page


def test_login_page_is_vietnamese_by_default(client):
    html = client.get("/login").get_data(as_text=True)
    assert "Đăng nhập" in html
    assert 'lang="vi"' in html


def test_wrong_password_is_refused_with_a_message(browser, staff, session):
    response = browser.login("nurse1", "wrong-password")
    assert response.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu" in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(User, staff["nurse"].id).failed_logins == 1


def test_five_wrong_passwords_lock_the_account_for_a_while(browser, staff, session):
    for _ in range(4):
        assert browser.login("nurse1", "wrong-password").status_code == 401
    locked = browser.login("nurse1", "wrong-password")
    assert locked.status_code == 423
    # Even the right password is refused while the lock lasts.
    assert browser.login("nurse1").status_code == 423
    session.expire_all()
    user = session.get(User, staff["nurse"].id)
    assert user.locked_until > datetime.now(UTC) + timedelta(minutes=10)
    actions = {e.action for e in session.query(AuditEvent).filter(AuditEvent.actor_id == user.id)}
    assert {"login.failed", "login.locked", "login.refused_locked"} <= actions
    # When the lock has passed, the right password works again.
    user.locked_until = datetime.now(UTC) - timedelta(seconds=1)
    session.commit()
    assert browser.login("nurse1").status_code == 302


def test_nurse_gets_403_on_an_admin_page(browser, staff):
    browser.login("nurse1")
    response = browser.client.get("/admin/users")
    assert response.status_code == 403
    assert "PERMISSION_DENIED" in response.get_data(as_text=True)


def test_admin_creates_a_user_through_the_form(browser, staff, session):
    browser.login("admin1")
    response = browser.post("/admin/users", {
        "username": "dieuduong9", "full_name": "Ngô Thị Chín", "password": "a-long-password",
        "roles": ["nurse"],
    })
    assert response.status_code == 302
    session.expire_all()
    created = session.query(User).filter_by(username="dieuduong9").one()
    assert {r.value for r in created.roles} == {"nurse"}
    assert created.password_hash.startswith("$argon2id$")


def test_admin_form_with_a_taken_username_shows_a_message(browser, staff):
    browser.login("admin1")
    response = browser.post("/admin/users", {
        "username": "nurse1", "full_name": "Trùng Tên", "password": "a-long-password", "roles": ["nurse"],
    })
    assert response.status_code == 422
    assert "Tên đăng nhập này đã được dùng" in response.get_data(as_text=True)


def test_form_post_without_csrf_token_is_refused(client, staff):
    response = client.post("/login", data={"username": "nurse1", "password": factories.PASSWORD})
    assert response.status_code == 400
    assert "CSRF_FAILED" in response.get_data(as_text=True) or "Biểu mẫu" in response.get_data(as_text=True)


def test_logged_in_post_without_csrf_token_is_refused(browser, staff, session):
    browser.login("admin1")
    response = browser.client.post("/admin/users", data={
        "username": "x1", "full_name": "X", "password": "a-long-password", "roles": ["nurse"]})
    assert response.status_code == 400
    assert session.query(User).filter_by(username="x1").count() == 0


def test_idle_session_is_signed_out(browser, staff, app):
    browser.login("nurse1")
    with browser.client.session_transaction() as flask_session:
        idle = app.config["MMT_SETTINGS"].session_idle_minutes
        flask_session["last_seen"] = (datetime.now(UTC) - timedelta(minutes=idle + 1)).timestamp()
    response = browser.client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert browser.client.get("/").status_code == 302


def test_language_switch_to_english(browser, staff):
    browser.login("nurse1")
    browser.post("/lang/en", token_from="/")
    html = browser.client.get("/").get_data(as_text=True)
    assert "Sign out" in html
    assert 'lang="en"' in html


def test_open_redirect_after_login_is_refused(browser, staff):
    response = browser.client.post(
        "/login?next=//evil.example/", data={"username": "nurse1", "password": factories.PASSWORD,
                                              "csrf_token": browser.token()})
    assert response.headers["Location"] == "/"
