"""Counters, devices and pump calibrations: the latest calibration decides a pump's status."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from dispensing import equipment
from dispensing.equipment import CalibrationRecord, CalibrationState
from dispensing.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from dispensing.models import AuditEvent, Calibration, CalibrationMethod, DeviceKind, Role
from tests import factories

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


@pytest.fixture
def setup(session):
    clinic = factories.clinic(session)
    admin = factories.user(session, clinic, Role.ADMIN)
    pharmacist = factories.user(session, clinic, Role.PHARMACIST)
    counter = equipment.add_counter(session, admin, "Q1", "Quầy 1")
    pump = equipment.add_device(session, admin, counter_id=counter.id, code="PUMP-1", kind=DeviceKind.PUMP,
                                driver="ne1000", port_url="sim://ne1000")
    scanner = equipment.add_device(session, admin, counter_id=counter.id, code="SCAN-1", kind=DeviceKind.SCANNER,
                                   driver="serial-scanner", port_url="sim://scanner")
    return {"clinic": clinic, "admin": admin, "pharmacist": pharmacist, "counter": counter, "pump": pump,
            "scanner": scanner}


def _record(passed=True, at=NOW, hours=16, factor="1.0020"):
    return CalibrationRecord(
        method=CalibrationMethod.VOLUMETRIC, performed_at=at, factor=Decimal(factor), mean_error_pct=Decimal("-0.2"),
        cv_pct=Decimal("0.4"), passed=passed, valid_until=at + timedelta(hours=hours) if passed else at,
        liquid_used_ml=Decimal("105.00"), replicates=({"nominal_ml": "5.00", "measured_ml": "4.99"},),
        reason=None if passed else "CV_EXCEEDED")


def test_overview_shows_each_pump_with_its_latest_calibration(session, setup):
    pump = setup["pump"]
    overview = equipment.counters_overview(session, setup["admin"], NOW)
    [counter] = overview
    states = {status.device.code: status.state for status in counter.devices}
    assert states == {"PUMP-1": CalibrationState.NONE, "SCAN-1": None}

    equipment.record_calibration(session, setup["pharmacist"], pump.id, _record(at=NOW - timedelta(days=1)))
    equipment.record_calibration(session, setup["pharmacist"], pump.id, _record(at=NOW - timedelta(hours=1)))
    [counter] = equipment.counters_overview(session, setup["admin"], NOW)
    pump_status = next(s for s in counter.devices if s.device.id == pump.id)
    assert pump_status.state is CalibrationState.VALID
    assert pump_status.calibration.performed_at == NOW - timedelta(hours=1)
    [counter] = equipment.counters_overview(session, setup["admin"], NOW + timedelta(days=1))
    assert next(s for s in counter.devices if s.device.id == pump.id).state is CalibrationState.EXPIRED

    equipment.record_calibration(session, setup["admin"], pump.id, _record(passed=False, at=NOW + timedelta(minutes=5)))
    [counter] = equipment.counters_overview(session, setup["admin"], NOW + timedelta(minutes=10))
    assert next(s for s in counter.devices if s.device.id == pump.id).state is CalibrationState.FAILED


def test_calibration_is_stored_and_audited(session, setup):
    calibration = equipment.record_calibration(session, setup["pharmacist"], setup["pump"].id, _record())
    stored = session.get(Calibration, calibration.id)
    assert stored.factor == Decimal("1.002") and stored.passed
    assert stored.performed_by_id == setup["pharmacist"].id
    event = session.query(AuditEvent).filter_by(action="calibration.recorded").one()
    assert '"passed":true' in event.payload


def test_calibration_refusals(session, setup):
    with pytest.raises(ValidationFailed) as refused:
        equipment.record_calibration(session, setup["admin"], setup["scanner"].id, _record())
    assert refused.value.params["code"] == "DEVICE_NOT_A_PUMP"
    with pytest.raises(ValidationFailed) as refused:
        equipment.record_calibration(session, setup["admin"], setup["pump"].id, _record(factor="0"))
    assert refused.value.params["code"] == "CALIBRATION_MEASUREMENTS_INVALID"
    equipment.set_device_active(session, setup["admin"], setup["pump"].id, False)
    with pytest.raises(ValidationFailed) as refused:
        equipment.record_calibration(session, setup["admin"], setup["pump"].id, _record())
    assert refused.value.params["code"] == "DEVICE_INACTIVE"
    with pytest.raises(NotFound):
        equipment.record_calibration(session, setup["admin"], 999_999, _record())
    physician = factories.user(session, setup["clinic"], Role.PHYSICIAN)
    with pytest.raises(PermissionDenied):
        equipment.record_calibration(session, physician, setup["pump"].id, _record())


def test_counter_and_device_codes_are_unique_and_validated(session, setup):
    admin = setup["admin"]
    with pytest.raises(Conflict):
        equipment.add_counter(session, admin, "Q1", "Quầy trùng")
    with pytest.raises(ValidationFailed):
        equipment.add_counter(session, admin, "Q 2", "Quầy 2")
    with pytest.raises(Conflict):
        equipment.add_device(session, admin, counter_id=None, code="PUMP-1", kind=DeviceKind.PUMP, driver="ne1000",
                             port_url="sim://ne1000")
    with pytest.raises(ValidationFailed):
        equipment.add_device(session, admin, counter_id=None, code="PUMP-2", kind=DeviceKind.PUMP, driver="",
                             port_url="sim://ne1000")
    with pytest.raises(PermissionDenied):
        equipment.add_counter(session, setup["pharmacist"], "Q9", "Quầy 9")


def test_counters_go_out_of_service_and_back(session, setup):
    counter = equipment.set_counter_active(session, setup["admin"], setup["counter"].id, False)
    assert not counter.active
    assert equipment.set_counter_active(session, setup["admin"], counter.id, True).active
    actions = [e.action for e in session.query(AuditEvent).filter_by(entity_type="Counter")]
    assert actions.count("counter.deactivated") == 1 and actions.count("counter.activated") == 1


def test_the_drivers_offered_are_the_ones_the_device_registry_opens(session, setup):
    from devices.registry import DRIVERS

    for role, drivers in DRIVERS.items():
        assert set(drivers) <= set(equipment.DRIVERS_BY_KIND[DeviceKind(role)]), role
    # Every pump driver offered can be opened by the device service (a pump is always serial).
    assert set(equipment.DRIVERS_BY_KIND[DeviceKind.PUMP]) == set(DRIVERS["pump"])
    reglo = equipment.add_device(session, setup["admin"], counter_id=None, code="PUMP-R", kind=DeviceKind.PUMP,
                                 driver="reglo-icc", port_url="sim://reglo")
    assert reglo.driver in DRIVERS["pump"]
    with pytest.raises(ValidationFailed) as refused:
        equipment.add_device(session, setup["admin"], counter_id=None, code="PUMP-X", kind=DeviceKind.PUMP,
                             driver="reglo", port_url="sim://reglo")
    assert refused.value.params["code"] == "DEVICE_DRIVER_UNKNOWN"
