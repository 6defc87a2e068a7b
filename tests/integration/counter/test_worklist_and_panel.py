"""What the counter shows: the day's worklist and the patient panel with the next actions."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, select

from dispensing import counter
from dispensing.counter.panel import SlotStatus
from dispensing.errors import NotFound
from dispensing.models import Dose, Order, OrderKind, OrderPart, OrderStatus, PatientStatus


def by_patient(found):
    return {(row.patient_id, row.what, row.part_no): row for row in found.rows}


def test_the_worklist_says_who_is_dosed_to_come_blocked_and_why(world, harness):
    dosed = world.patient()
    world.assess(dosed)
    world.authorize(dosed)
    harness.deliver()
    waiting = world.patient()
    to_come = world.patient()
    world.assess(to_come)
    blocked = world.patient()
    world.assess(blocked, drowsy=True)
    split = world.patient(parts=("40", "20"))
    in_progress = world.patient()
    world.assess(in_progress)
    world.authorize(in_progress)
    stopped = world.patient()
    stopped.status = PatientStatus.STOPPED
    world.session.commit()

    found = counter.worklist(world.session, world.nurse, world.rule_set, now=world.now)

    rows = by_patient(found)
    assert rows[(dosed.id, "methadone", 1)].status == SlotStatus.DOSED
    assert rows[(dosed.id, "methadone", 1)].counter_id == world.counters[0].id
    assert rows[(waiting.id, "methadone", 1)].status == SlotStatus.NEEDS_ASSESSMENT
    assert rows[(to_come.id, "methadone", 1)].status == SlotStatus.TO_COME
    assert rows[(blocked.id, "methadone", 1)].status == SlotStatus.BLOCKED
    assert "PREDOSE_CHECK_POSITIVE" in rows[(blocked.id, "methadone", 1)].reasons
    assert {rows[(split.id, "methadone", n)].mg for n in (1, 2)} == {Decimal("40.000"), Decimal("20.000")}
    assert rows[(in_progress.id, "methadone", 1)].status == SlotStatus.IN_PROGRESS
    assert not any(key[0] == stopped.id for key in rows)
    assert found.counts[SlotStatus.DOSED] == 1 and found.counts[SlotStatus.NEEDS_ASSESSMENT] == 3


def test_the_worklist_reads_a_fixed_number_of_times_whatever_the_number_of_patients(world, engine):
    def statements(patients: int) -> int:
        for _ in range(patients):
            world.assess(world.patient())
        count = 0

        def counted(*_args):
            nonlocal count
            count += 1

        event.listen(engine, "before_cursor_execute", counted)
        try:
            counter.worklist(world.session, world.nurse, world.rule_set, now=world.now)
        finally:
            event.remove(engine, "before_cursor_execute", counted)
        return count

    assert statements(3) == statements(30)


def test_the_panel_shows_the_plan_in_mg_and_ml_from_the_pump_lot_and_the_next_actions(world, harness):
    patient = world.patient("75")

    panel = counter.patient_panel(world.session, world.nurse, world.rule_set, patient.id,
                                  counter_id=world.counters[0].id, now=world.now)
    assert panel.pump.ready and panel.pump.lot.concentration_mg_per_ml == Decimal("10.000")
    assert [(p.part_no, p.mg, p.ml, p.status) for p in panel.parts] == [
        (1, Decimal("75.000"), Decimal("7.50"), SlotStatus.NEEDS_ASSESSMENT)]
    assert [a["action"] for a in panel.actions] == ["record_assessment"]

    world.assess(patient)
    panel = counter.patient_panel(world.session, world.nurse, world.rule_set, patient.id,
                                  counter_id=world.counters[0].id, now=world.now)
    assert {"action": "authorize", "part_no": 1, "acknowledge": [], "reason_required": []} in panel.actions

    dose = world.authorize(patient).dose
    harness.sim.stall_at(Decimal("2.00"))
    harness.deliver()
    world.session.expire_all()
    panel = counter.patient_panel(world.session, world.nurse, world.rule_set, patient.id,
                                  counter_id=world.counters[0].id, now=world.now)
    actions = [a["action"] for a in panel.actions]
    assert panel.parts[0].status == SlotStatus.PARTIAL
    assert "complete_partial" in actions and "authorize" not in actions and "void" in actions
    assert {a.get("dose_id") for a in panel.actions if a["action"] == "complete_partial"} == {dose.id}


def test_the_panel_shows_a_pump_that_cannot_dispense_and_offers_no_authorisation(world):
    patient = world.patient()
    world.assess(patient)
    later = world.now + timedelta(hours=13)

    panel = counter.patient_panel(world.session, world.nurse, world.rule_set, patient.id,
                                  counter_id=world.counters[0].id, now=later)

    assert panel.pump.problems == ("CALIBRATION_EXPIRED",)
    assert all(a["action"] != "authorize" for a in panel.actions)


def test_find_by_card_and_an_unknown_card(world):
    patient = world.patient()
    assert counter.find_by_card(world.session, world.nurse, patient.card_barcode.lower()).id == patient.id
    with pytest.raises(NotFound) as caught:
        counter.find_by_card(world.session, world.nurse, "P999999")
    assert caught.value.params["code"] == "CARD_UNKNOWN"


def test_replacement_orders_due_show_on_the_panel(world, harness):
    patient = world.patient()
    world.assess(patient)
    world.authorize(patient)
    harness.deliver()
    world.session.expire_all()
    dose = world.session.scalar(select(Dose).where(Dose.patient_id == patient.id))
    order = Order(clinic_id=world.clinic.id, patient_id=patient.id, kind=OrderKind.REPLACEMENT,
                  status=OrderStatus.SIGNED, daily_total_mg=Decimal("20"), valid_from=world.today,
                  valid_until=world.today, linked_dose_id=dose.id, created_by_id=world.physician.id,
                  signed_by_id=world.physician.id, signed_at=world.now, parts=[OrderPart(part_no=1, dose_mg=Decimal(20))])
    world.session.add(order)
    world.session.commit()

    panel = counter.patient_panel(world.session, world.nurse, world.rule_set, patient.id,
                                  counter_id=world.counters[0].id, now=world.now)
    assert [o.id for o in panel.replacements] == [order.id]
    assert {"action": "authorize_replacement", "order_id": order.id} in panel.actions
