"""Admin pages: users and roles, counters and devices with calibration, clinic settings."""

import re

from sqlalchemy import select

from dispensing.models import Calibration, Clinic, Counter, Device, DeviceKind, Role, User
from tests import factories
from tests.e2e.conftest import Browser, csrf_token


def test_non_admins_get_403(as_user):
    physician = as_user("physician")
    for path in ("/admin/users", "/admin/settings", f"/admin/users/{1}"):
        assert physician.client.get(path).status_code == 403


def test_create_user_then_deactivate_reset_and_change_roles(app, as_user, session, staff):
    admin = as_user("admin")
    page = admin.client.get("/admin/users").get_data(as_text=True)
    created = admin.client.post("/admin/users", data={
        "csrf_token": csrf_token(page), "username": "dieuduong9", "full_name": "Điều Dưỡng Chín",
        "password": "first-password", "roles": ["nurse"]})
    assert created.status_code == 302
    user = session.scalar(select(User).where(User.username == "dieuduong9"))
    duplicate = admin.client.post("/admin/users", data={
        "csrf_token": csrf_token(page), "username": "dieuduong9", "full_name": "Trùng", "password": "first-password",
        "roles": ["nurse"]})
    assert duplicate.status_code == 422 and "Tên đăng nhập này đã được dùng" in duplicate.get_data(as_text=True)

    detail = admin.client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    token = csrf_token(detail)
    assert admin.client.post(f"/admin/users/{user.id}/active", data={"csrf_token": token, "active": "0"}).status_code == 302
    assert Browser(app.test_client()).login("dieuduong9", "first-password").status_code == 401
    assert admin.client.post(f"/admin/users/{user.id}/active", data={"csrf_token": token, "active": "1"}).status_code == 302
    short = admin.client.post(f"/admin/users/{user.id}/password", data={"csrf_token": token, "new_password": "short"})
    assert short.status_code == 422
    assert admin.client.post(f"/admin/users/{user.id}/password", data={
        "csrf_token": token, "new_password": "second-password"}).status_code == 302
    assert Browser(app.test_client()).login("dieuduong9", "second-password").status_code == 302
    assert admin.client.post(f"/admin/users/{user.id}/roles", data={
        "csrf_token": token, "roles": ["nurse", "pharmacist"]}).status_code == 302
    session.expire_all()
    assert session.get(User, user.id).roles == {Role.NURSE, Role.PHARMACIST}


def test_admin_cannot_lock_themself_out(as_user, staff):
    admin = as_user("admin")
    me = staff["admin"]
    token = csrf_token(admin.client.get(f"/admin/users/{me.id}").get_data(as_text=True))
    refused = admin.client.post(f"/admin/users/{me.id}/active", data={"csrf_token": token, "active": "0"})
    assert refused.status_code == 409 and "không thể khóa tài khoản của chính mình" in refused.get_data(as_text=True)
    assert admin.client.post(f"/admin/users/{me.id}/roles", data={
        "csrf_token": token, "roles": ["nurse"]}).status_code == 409


def test_counters_devices_and_a_hand_entered_calibration(as_user, session, clinic):
    admin = as_user("admin")
    page = admin.client.get("/admin/counters").get_data(as_text=True)
    token = csrf_token(page)
    assert admin.client.post("/admin/counters", data={"csrf_token": token, "code": "Q1", "name": "Quầy 1"}).status_code == 302
    assert admin.client.post("/admin/counters", data={"csrf_token": token, "code": "Q1", "name": "Lại"}).status_code == 409
    counter = session.scalar(select(Counter).where(Counter.clinic_id == clinic.id))
    added = admin.client.post("/admin/devices", data={
        "csrf_token": token, "counter_id": str(counter.id), "code": "PUMP-1", "kind": "pump", "driver": "ne1000",
        "port_url": "sim://ne1000", "serial_number": "NE-1"})
    assert added.status_code == 302
    pump = session.scalar(select(Device).where(Device.code == "PUMP-1"))
    assert pump.kind is DeviceKind.PUMP and pump.counter_id == counter.id
    overview = admin.client.get("/admin/counters").get_data(as_text=True)
    assert "Chưa hiệu chuẩn" in overview and f"/admin/devices/{pump.id}/calibrate" in overview

    form = admin.client.get(f"/admin/devices/{pump.id}/calibrate").get_data(as_text=True)
    good = {f"m_{v}_{r}": value for v, values in enumerate([("4.98", "4,99", "5.01"), ("9.97", "9.99", "10.01"),
                                                            ("19.95", "19.97", "20.02")])
            for r, value in enumerate(values)}
    passed = admin.client.post(f"/admin/devices/{pump.id}/calibrate", data={"csrf_token": csrf_token(form), **good})
    assert passed.status_code == 302
    calibration = session.scalar(select(Calibration).where(Calibration.device_id == pump.id))
    assert calibration.passed and calibration.factor > 1 and len(calibration.replicates) == 9
    assert "Còn hiệu lực" in admin.client.get("/admin/counters").get_data(as_text=True)

    scattered = {**good, "m_0_0": "4.20"}
    failed = admin.client.post(f"/admin/devices/{pump.id}/calibrate", data={"csrf_token": csrf_token(form), **scattered})
    assert failed.status_code == 422 and "Hiệu chuẩn không đạt" in failed.get_data(as_text=True)
    garbage = admin.client.post(f"/admin/devices/{pump.id}/calibrate", data={"csrf_token": csrf_token(form),
                                                                             "m_0_0": "abc"})
    assert garbage.status_code == 422
    empty = admin.client.post(f"/admin/devices/{pump.id}/calibrate", data={"csrf_token": csrf_token(form)})
    assert empty.status_code == 422
    assert session.query(Calibration).filter_by(device_id=pump.id).count() == 2

    assert admin.client.post(f"/admin/devices/{pump.id}/active", data={"csrf_token": token, "active": "0"}).status_code == 302
    assert "ngừng hoạt động" in admin.client.get("/admin/counters").get_data(as_text=True)


def test_pharmacist_can_calibrate_but_not_add_devices(as_user, session, clinic, staff):
    counter = Counter(clinic_id=clinic.id, code="Q5", name="Quầy 5")
    session.add(counter)
    session.flush()
    pump = Device(clinic_id=clinic.id, counter_id=counter.id, code="P5", kind=DeviceKind.PUMP, driver="ne1000",
                  port_url="sim://ne1000", settings={})
    session.add(pump)
    session.flush()
    pharmacist = as_user("pharmacist")
    page = pharmacist.client.get("/admin/counters").get_data(as_text=True)
    assert "Hiệu chuẩn ngay" in page and "Thêm thiết bị" not in page
    assert pharmacist.client.post("/admin/devices", data={"csrf_token": csrf_token(page), "code": "X"}).status_code == 403
    assert pharmacist.client.get(f"/admin/devices/{pump.id}/calibrate").status_code == 200


def test_clinic_settings_and_rule_tables(as_user, session, clinic):
    admin = as_user("admin")
    page = admin.client.get("/admin/settings").get_data(as_text=True)
    assert 'value="australia-2003" selected' in page and "metaphi" in page
    token = csrf_token(page)
    bad = admin.client.post("/admin/settings", data={
        "csrf_token": token, "name": clinic.name, "timezone": "Mars/Base", "reconcile_tolerance_pct": "0.5",
        "reconcile_tolerance_ml": "2"})
    assert bad.status_code == 422 and "Múi giờ không hợp lệ" in bad.get_data(as_text=True)
    assert 'value="Mars/Base"' in bad.get_data(as_text=True)  # the form keeps what was typed
    ok = admin.client.post("/admin/settings", data={
        "csrf_token": token, "name": "Cơ sở Mới", "timezone": "Asia/Ho_Chi_Minh", "reconcile_tolerance_pct": "0,8",
        "reconcile_tolerance_ml": "2.5"})
    assert ok.status_code == 302
    session.expire_all()
    stored = session.get(Clinic, clinic.id)
    assert (stored.name, str(stored.reconcile_tolerance_pct), str(stored.reconcile_tolerance_ml)) == (
        "Cơ sở Mới", "0.800000", "2.500")
    rules = {"core": "vn-3140", "missed_dose": "metaphi", "take_home": "disabled", "titration_cap": "uk-2007",
             "interactions": "default"}
    assert admin.client.post("/admin/settings/rules", data={"csrf_token": token, **rules}).status_code == 302
    session.expire_all()
    assert session.get(Clinic, clinic.id).rules_missed_dose == "metaphi"
    page = admin.client.get("/admin/settings").get_data(as_text=True)
    assert re.search(r"missed_dose=metaphi@", page)
    refused = admin.client.post("/admin/settings/rules", data={"csrf_token": token, **rules, "core": "nope"})
    assert refused.status_code == 422
    assert session.get(Clinic, clinic.id).rules_core == "vn-3140"


def test_nurse_sees_patients_in_the_menu_but_no_admin(as_user):
    page = as_user("nurse").client.get("/").get_data(as_text=True)
    assert ">Bệnh nhân<" in page and "/admin/" not in page and "/tasks" not in page
    admin_page = as_user("admin").client.get("/").get_data(as_text=True)
    assert "/admin/users" in admin_page and "/admin/settings" in admin_page and "/admin/counters" in admin_page


def test_factories_still_work_for_admin_seed(session, clinic):
    assert factories.user(session, clinic, Role.ADMIN).has_role(Role.ADMIN)


def test_the_head_of_unit_role_can_be_given_on_the_users_page(as_user, session):
    admin = as_user("admin")
    page = admin.client.get("/admin/users").get_data(as_text=True)
    assert 'value="unit_head"' in page and "Trưởng đơn vị" in page
    created = admin.client.post("/admin/users", data={
        "csrf_token": csrf_token(page), "username": "truongdonvi9", "full_name": "BS. Trưởng Đơn Vị",
        "password": "first-password", "roles": ["physician", "unit_head"]})
    assert created.status_code == 302
    user = session.scalar(select(User).where(User.username == "truongdonvi9"))
    assert user.roles == {Role.PHYSICIAN, Role.UNIT_HEAD}
    detail = admin.client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert admin.client.post(f"/admin/users/{user.id}/roles", data={
        "csrf_token": csrf_token(detail), "roles": ["unit_head"]}).status_code == 302
    session.expire_all()
    assert session.get(User, user.id).roles == {Role.UNIT_HEAD}
    listing = admin.client.get("/admin/users").get_data(as_text=True)
    assert "Trưởng đơn vị" in listing
