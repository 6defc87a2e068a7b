"""Quarantine decisions: release to stock or keep for return / destruction, signed by the
pharmacist and the head of unit; append-only; one decision per stay in quarantine. Stock leaves
quarantine only as its stay's decision says: the release's own transfer, a return when kept for
return, a destruction when kept for destruction; every other way out is refused."""

import itertools
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from dispensing import stock
from dispensing.errors import Conflict, PermissionDenied, ReauthenticationFailed, ValidationFailed
from dispensing.models import (
    AnomalyKind,
    AuditEvent,
    DestructionRecord,
    MovementKind,
    QuarantineDecision,
    QuarantineOutcome,
    ReceiptAnomaly,
    Role,
    StockMovement,
)
from tests.stock_world import PASSWORD

D = Decimal
CRACKED = stock.AnomalyIn(AnomalyKind.CRACKED_BOTTLE, "Chai nứt ở cổ")


def _code(excinfo):
    return excinfo.value.params.get("code") or excinfo.value.code


def _quarantined(world, *volumes, countersign=True, lot_number="DNP-Q1"):
    """Receive bottles with an anomaly (into quarantine); the head of unit countersigns each record."""
    result = world.receive(*volumes, anomaly=CRACKED, lot_number=lot_number)
    if countersign:
        for anomaly in result.anomalies:
            stock.countersign_anomaly(world.session, world.unit_head, anomaly.id, password=PASSWORD, now=world.now)
    return result.quarantined


def _decide(world, bottle=None, *, outcome=QuarantineOutcome.RELEASE, user=None, password=PASSWORD,
            unit_head="default", **extra):
    if unit_head == "default":
        unit_head = stock.Cosigner(world.unit_head.username, PASSWORD)
    if bottle is not None:
        extra.setdefault("container_id", bottle.id)
    if outcome is QuarantineOutcome.RELEASE:
        extra.setdefault("to_location_id", world.safe.id)
    return stock.decide_quarantine(world.session, user or world.pharmacist, outcome=outcome,
                                   reason="Kiểm tra lại: chai nguyên vẹn, nứt ở nhãn ngoài", password=password,
                                   unit_head=unit_head, now=world.now, **extra)


def _attach(world, bottle, pump=0):
    return stock.attach_container(world.session, world.pharmacist, location_id=world.pumps[pump].id,
                                  container_id=bottle.id, now=world.now)


def _decisions(world):
    return world.session.scalar(select(func.count()).select_from(QuarantineDecision))


def test_a_release_needs_the_pharmacist_and_a_head_of_unit_both_reauthenticated(world):
    (bottle,) = _quarantined(world, "1000")
    refusals = [
        (dict(unit_head=None), ValidationFailed, "UNIT_HEAD_REQUIRED"),  # a pharmacist alone
        (dict(unit_head=stock.Cosigner(world.pharmacist2.username, PASSWORD)), PermissionDenied,
         "UNIT_HEAD_ROLE_REQUIRED"),
        (dict(unit_head=stock.Cosigner(world.physician.username, PASSWORD)), PermissionDenied,
         "UNIT_HEAD_ROLE_REQUIRED"),
        (dict(unit_head=stock.Cosigner(world.admin.username, PASSWORD)), PermissionDenied,
         "UNIT_HEAD_ROLE_REQUIRED"),
        (dict(password="wrong-password"), ReauthenticationFailed, "REAUTH_FAILED"),
        (dict(unit_head=stock.Cosigner(world.unit_head.username, "wrong-password")), ReauthenticationFailed,
         "REAUTH_FAILED"),
        # The head of unit cannot decide alone either: the pharmacist signs first.
        (dict(user=world.unit_head), PermissionDenied, "PERMISSION_DENIED"),
        (dict(unit_head=stock.Cosigner(world.pharmacist.username, PASSWORD)), ValidationFailed,
         "COSIGNER_IS_SIGNER"),
    ]
    for extra, error, code in refusals:
        with pytest.raises(error) as refused:
            _decide(world, bottle, **extra)
        assert _code(refused) == code, extra
        world.session.rollback()
    assert _decisions(world) == 0
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("1000")
    assert stock.balance(world.session, location_id=world.safe.id) == D("0")


def test_the_anomaly_record_is_countersigned_before_any_decision(world):
    (bottle,) = _quarantined(world, "1000", countersign=False)
    with pytest.raises(ValidationFailed) as refused:
        _decide(world, bottle)
    assert _code(refused) == "ANOMALY_NOT_COUNTERSIGNED"
    world.session.rollback()
    assert _decisions(world) == 0


def test_a_released_bottle_may_go_to_a_pump_and_a_still_quarantined_one_may_not(world):
    released, kept = _quarantined(world, "1000", "1000")
    # Before the decision neither is offered nor attachable.
    assert stock.suggest_bottles(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id,
                                 day=world.today) == []
    (decision,) = _decide(world, released)

    assert (decision.outcome, decision.container_id, decision.quantity, decision.pharmacist_id,
            decision.unit_head_id) == (QuarantineOutcome.RELEASE, released.id, D("1000"), world.pharmacist.id,
                                       world.unit_head.id)
    anomaly = world.session.scalar(select(ReceiptAnomaly).where(ReceiptAnomaly.container_id == released.id))
    assert decision.anomaly_id == anomaly.id
    line = world.session.get(StockMovement, decision.release_movement_id)
    assert (line.kind, line.from_location_id, line.to_location_id, line.container_id, line.quantity,
            line.witness_id) == (MovementKind.TRANSFER, world.quarantine.id, world.safe.id, released.id, D("1000"),
                                 world.unit_head.id)
    entry = world.session.get(StockMovement, decision.entry_movement_id)
    assert (entry.kind, entry.to_location_id, entry.container_id) == (
        MovementKind.RECEIPT, world.quarantine.id, released.id)
    suggestions = stock.suggest_bottles(world.session, clinic_id=world.clinic.id, product_id=world.methadone.id,
                                        day=world.today)
    assert [s.container_id for s in suggestions] == [released.id]

    with pytest.raises(ValidationFailed) as refused:
        _attach(world, kept)
    assert _code(refused) == "STOCK_QUARANTINED"
    world.session.rollback()
    attachment = _attach(world, released)
    assert attachment.container_id == released.id
    assert stock.balance(world.session, location_id=world.pumps[0].id) == D("1000")

    # Each decision is audited twice: the pharmacist's and the head of unit's signature.
    events = world.session.scalars(select(AuditEvent).where(AuditEvent.action == "stock.quarantine.decided")
                                   .order_by(AuditEvent.seq)).all()
    assert [(e.actor_id, e.entity_type, e.entity_id) for e in events] == [
        (world.pharmacist.id, "QuarantineDecision", str(decision.id)),
        (world.unit_head.id, "QuarantineDecision", str(decision.id)),
    ]
    assert '"role":"unit_head"' in events[1].payload and '"outcome":"release"' in events[1].payload

    items = stock.quarantined_items(world.session, clinic_id=world.clinic.id)
    assert [(i.container_id, i.quantity, i.anomaly_signed, i.decision) for i in items] == [
        (kept.id, D("1000"), True, None)]


def test_a_second_decision_on_the_same_stay_is_refused(world):
    (bottle,) = _quarantined(world, "1000")
    _decide(world, bottle)
    for outcome in QuarantineOutcome:
        with pytest.raises(Conflict) as refused:
            _decide(world, bottle, outcome=outcome)
        assert _code(refused) == "QUARANTINE_ALREADY_DECIDED"
        world.session.rollback()
    assert _decisions(world) == 1
    assert stock.balance(world.session, location_id=world.safe.id) == D("1000")

    (other,) = _quarantined(world, "500", lot_number="DNP-Q2")
    _decide(world, other, outcome=QuarantineOutcome.DESTRUCTION)
    with pytest.raises(Conflict) as refused:
        _decide(world, other)  # kept for destruction: no release after all
    assert (_code(refused), refused.value.params["outcome"]) == ("QUARANTINE_ALREADY_DECIDED", "destruction")
    world.session.rollback()
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("500")


def test_the_database_refuses_a_second_decision_for_one_entry_and_any_change(world):
    (bottle,) = _quarantined(world, "1000")
    (decision,) = _decide(world, bottle, outcome=QuarantineOutcome.RETURN_TO_SUPPLIER)
    with pytest.raises(IntegrityError), world.session.begin_nested():
        world.session.add(QuarantineDecision(
            clinic_id=decision.clinic_id, business_date=decision.business_date, decided_at=decision.decided_at,
            outcome=QuarantineOutcome.DESTRUCTION, lot_id=decision.lot_id, container_id=decision.container_id,
            location_id=decision.location_id, quantity=decision.quantity,
            entry_movement_id=decision.entry_movement_id, reason="x", pharmacist_id=world.pharmacist2.id,
            unit_head_id=world.unit_head.id,
        ))
        world.session.flush()
    for sql in ("UPDATE quarantine_decision SET outcome = 'release' WHERE id = :id",
                "UPDATE quarantine_decision SET reason = 'changed' WHERE id = :id",
                "DELETE FROM quarantine_decision WHERE id = :id"):
        with pytest.raises(DBAPIError) as refused, world.session.begin_nested():
            world.session.execute(text(sql), {"id": decision.id})
        assert "append-only" in str(refused.value.orig) or "refused" in str(refused.value.orig)
    world.session.rollback()
    assert world.session.get(QuarantineDecision, decision.id).outcome is QuarantineOutcome.RETURN_TO_SUPPLIER


def test_a_bottle_kept_for_destruction_goes_on_a_destruction_record(world):
    (bottle,) = _quarantined(world, "1000")
    (decision,) = _decide(world, bottle, outcome=QuarantineOutcome.DESTRUCTION)
    assert decision.release_movement_id is None
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("1000")
    with pytest.raises(ValidationFailed) as refused:
        _attach(world, bottle)
    assert _code(refused) == "STOCK_QUARANTINED"
    world.session.rollback()
    (item,) = stock.quarantined_items(world.session, clinic_id=world.clinic.id)
    assert item.decision.id == decision.id and item.decision.outcome is QuarantineOutcome.DESTRUCTION

    record = stock.destroy_stock(
        world.session, world.pharmacist, record_no="BBH-2026-01", method="Pha loãng, đổ bỏ có giám sát",
        reason="Chai nứt khi nhận", items=[stock.DestructionItem(world.quarantine.id, container_id=bottle.id)],
        password=PASSWORD, witness=world.witness(), now=world.now)
    line = record.lines[0].movement
    assert (line.kind, line.from_location_id, line.container_id, line.quantity) == (
        MovementKind.DESTRUCTION, world.quarantine.id, bottle.id, D("1000"))
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("0")
    assert stock.quarantined_items(world.session, clinic_id=world.clinic.id) == []
    with pytest.raises(Conflict) as refused:
        _decide(world, bottle)
    assert _code(refused) == "QUARANTINE_ALREADY_DECIDED"


def test_a_lot_decision_covers_each_of_its_bottles_in_quarantine(world):
    first, second = _quarantined(world, "1000", "500", lot_number="DNP-LOT")
    world.receive("1000", lot_number="DNP-LOT")  # a sound bottle of the same lot stays in the safe
    decisions = _decide(world, outcome=QuarantineOutcome.RETURN_TO_SUPPLIER, lot_id=first.lot_id)
    assert sorted((d.container_id, d.quantity) for d in decisions) == [(first.id, D("1000")), (second.id, D("500"))]
    assert len({d.entry_movement_id for d in decisions}) == 2
    for bottle in (first, second):
        stock.return_to_supplier(world.session, world.pharmacist, location_id=world.quarantine.id,
                                 container_id=bottle.id, reason="Trả nhà cung cấp", password=PASSWORD, now=world.now)
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("0")
    assert stock.balance(world.session, location_id=world.safe.id) == D("1000")


def test_a_bottle_sent_to_quarantine_again_gets_a_new_decision(world):
    (bottle,) = world.receive("1000").containers
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.quarantine.id, container_id=bottle.id, reason="Nghi ngờ", now=world.now)
    (first,) = _decide(world, bottle)
    assert first.anomaly_id is None
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.quarantine.id, container_id=bottle.id, reason="Lại nghi ngờ",
                         now=world.now)
    (second,) = _decide(world, bottle)
    assert second.entry_movement_id != first.entry_movement_id
    assert stock.balance(world.session, location_id=world.safe.id) == D("1000")


def test_refusals_for_what_is_not_in_quarantine_or_a_wrong_target(world):
    (sound,) = world.receive("1000").containers
    (bottle,) = _quarantined(world, "1000")
    cases = [
        (dict(bottle=sound), ValidationFailed, "NOT_IN_QUARANTINE"),
        (dict(bottle=bottle, to_location_id=world.pumps[0].id), ValidationFailed, "RELEASE_LOCATION_INVALID"),
        (dict(bottle=bottle, to_location_id=world.shelf.id), ValidationFailed, "RELEASE_LOCATION_INVALID"),
        (dict(bottle=bottle, outcome="keep_it"), ValidationFailed, "QUARANTINE_OUTCOME_INVALID"),
        (dict(), ValidationFailed, "ITEM_REQUIRED"),
    ]
    for extra, error, code in cases:
        with pytest.raises(error) as refused:
            _decide(world, **extra)
        assert _code(refused) == code, extra
        world.session.rollback()
    with pytest.raises(ValidationFailed) as refused:
        stock.decide_quarantine(world.session, world.pharmacist, outcome="release", reason="  ", password=PASSWORD,
                                unit_head=stock.Cosigner(world.unit_head.username, PASSWORD), container_id=bottle.id,
                                to_location_id=world.safe.id, now=world.now)
    assert _code(refused) == "REASON_REQUIRED"
    world.session.rollback()
    assert _decisions(world) == 0


def test_only_an_active_head_of_unit_signs_as_one(world):
    from dispensing.permissions import can_sign_as_unit_head

    assert can_sign_as_unit_head(world.unit_head)
    for user in (None, world.pharmacist, world.physician, world.admin, world.nurse):
        assert not can_sign_as_unit_head(user)
    # The role is stored (the database's CHECK constraint knows it) and survives a reload.
    world.session.expire_all()
    assert world.session.get(type(world.unit_head), world.unit_head.id).roles == {Role.UNIT_HEAD}
    (bottle,) = _quarantined(world, "1000")
    world.unit_head.active = False
    world.session.commit()
    assert not can_sign_as_unit_head(world.unit_head)
    with pytest.raises(ReauthenticationFailed):
        _decide(world, bottle)
    world.session.rollback()
    assert _decisions(world) == 0


# ---- leaving quarantine: only as the current stay's decision says ---------------------------------

RECORD_NOS = itertools.count(1)
RETURN, DESTRUCTION, RELEASE = (QuarantineOutcome.RETURN_TO_SUPPLIER, QuarantineOutcome.DESTRUCTION,
                                QuarantineOutcome.RELEASE)


def _return(world, **item):
    return stock.return_to_supplier(world.session, world.pharmacist, location_id=world.quarantine.id,
                                    reason="Trả nhà cung cấp", password=PASSWORD, now=world.now, **item)


def _destroy(world, **item):
    return stock.destroy_stock(
        world.session, world.pharmacist, record_no=f"BBH-Q{next(RECORD_NOS)}", method="Đốt tại lò", reason="Hỏng",
        items=[stock.DestructionItem(world.quarantine.id, **item)], password=PASSWORD, witness=world.witness(),
        now=world.now)


def _transfer_out(world, **item):
    return stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.quarantine.id,
                                to_location_id=world.safe.id, now=world.now, **item)


def _waste(world, **item):
    item.setdefault("quantity", D("5"))
    return stock.record_waste(world.session, world.pharmacist, location_id=world.quarantine.id, reason="Đổ",
                              password=PASSWORD, witness=world.witness(), now=world.now, **item)


EXITS = {"return": _return, "destroy": _destroy, "transfer": _transfer_out, "waste": _waste}


def _exits_booked(world):
    """Lines that took stock out of quarantine, and destruction records."""
    lines = world.session.scalar(select(func.count()).select_from(StockMovement).where(
        StockMovement.from_location_id == world.quarantine.id))
    return lines, world.session.scalar(select(func.count()).select_from(DestructionRecord))


@pytest.mark.parametrize(("decided", "way_out", "code", "outcome"), [
    (None, "return", "QUARANTINE_DECISION_REQUIRED", None),
    (None, "destroy", "QUARANTINE_DECISION_REQUIRED", None),
    (None, "transfer", "QUARANTINE_RELEASE_NOT_ALLOWED", None),
    (None, "waste", "QUARANTINE_RELEASE_NOT_ALLOWED", None),
    (RETURN, "destroy", "QUARANTINE_DECISION_MISMATCH", "return_to_supplier"),
    (RETURN, "transfer", "QUARANTINE_RELEASE_NOT_ALLOWED", None),
    (RETURN, "waste", "QUARANTINE_RELEASE_NOT_ALLOWED", None),
    (DESTRUCTION, "return", "QUARANTINE_DECISION_MISMATCH", "destruction"),
    (DESTRUCTION, "transfer", "QUARANTINE_RELEASE_NOT_ALLOWED", None),
    (DESTRUCTION, "waste", "QUARANTINE_RELEASE_NOT_ALLOWED", None),
])
def test_a_quarantined_bottle_does_not_leave_against_or_without_its_decision(world, decided, way_out, code,
                                                                            outcome):
    (bottle,) = _quarantined(world, "1000")
    decision = _decide(world, bottle, outcome=decided)[0] if decided else None
    before = _exits_booked(world)
    with pytest.raises(ValidationFailed) as refused:
        EXITS[way_out](world, container_id=bottle.id)
    assert _code(refused) == code
    assert refused.value.params.get("outcome") == outcome
    if code != "QUARANTINE_RELEASE_NOT_ALLOWED":
        assert refused.value.params["label_code"] == bottle.label_code
    world.session.rollback()
    assert _exits_booked(world) == before
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("1000")
    (item,) = stock.quarantined_items(world.session, clinic_id=world.clinic.id)
    assert (item.container_id, item.decision) == (bottle.id, decision)


@pytest.mark.parametrize(("decided", "way_out", "kind"), [
    (RETURN, "return", MovementKind.RETURN),
    (DESTRUCTION, "destroy", MovementKind.DESTRUCTION),
    (RELEASE, None, MovementKind.TRANSFER),  # the decision books its own transfer to the safe
])
def test_a_quarantined_bottle_leaves_as_its_decision_says(world, decided, way_out, kind):
    (bottle,) = _quarantined(world, "1000")
    (decision,) = _decide(world, bottle, outcome=decided)
    if way_out is None:
        line = world.session.get(StockMovement, decision.release_movement_id)
    else:
        result = EXITS[way_out](world, container_id=bottle.id)
        line = result.lines[0].movement if way_out == "destroy" else result
    assert (line.kind, line.from_location_id, line.container_id, line.quantity) == (
        kind, world.quarantine.id, bottle.id, D("1000"))
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("0")
    assert stock.quarantined_items(world.session, clinic_id=world.clinic.id) == []


def test_the_decision_of_an_earlier_stay_does_not_cover_a_new_one(world):
    (bottle,) = _quarantined(world, "1000")
    _decide(world, bottle)  # released to the safe
    stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                         to_location_id=world.quarantine.id, container_id=bottle.id, reason="Lại nghi ngờ",
                         now=world.now)
    for way_out in ("return", "destroy"):
        with pytest.raises(ValidationFailed) as refused:
            EXITS[way_out](world, container_id=bottle.id)
        assert _code(refused) == "QUARANTINE_DECISION_REQUIRED", way_out
        world.session.rollback()
    _decide(world, bottle, outcome=DESTRUCTION)
    with pytest.raises(ValidationFailed) as refused:
        _return(world, container_id=bottle.id)
    assert (_code(refused), refused.value.params["outcome"]) == ("QUARANTINE_DECISION_MISMATCH", "destruction")
    world.session.rollback()
    record = _destroy(world, container_id=bottle.id)
    assert record.lines[0].movement.quantity == D("1000")
    assert stock.balance(world.session, container_id=bottle.id) == D("0")


def test_one_undecided_bottle_refuses_the_whole_destruction_record(world):
    kept, undecided = _quarantined(world, "1000", "500")
    _decide(world, kept, outcome=DESTRUCTION)
    with pytest.raises(ValidationFailed) as refused:
        stock.destroy_stock(
            world.session, world.pharmacist, record_no="BBH-MIX", method="Đốt", reason="Hỏng", password=PASSWORD,
            items=[stock.DestructionItem(world.quarantine.id, container_id=kept.id),
                   stock.DestructionItem(world.quarantine.id, container_id=undecided.id)],
            witness=world.witness(), now=world.now)
    assert (_code(refused), refused.value.params["label_code"]) == ("QUARANTINE_DECISION_REQUIRED",
                                                                    undecided.label_code)
    world.session.rollback()
    assert _exits_booked(world) == (0, 0)
    assert stock.balance(world.session, location_id=world.quarantine.id) == D("1500")


def _loose_in_quarantine(world, quantity="40"):
    """100 tablets received loose into the safe, ``quantity`` of them moved to quarantine."""
    stock.receive_delivery(world.session, world.pharmacist, stock.DeliveryIn(
        location_id=world.safe.id, supplier="S", delivery_note_no="N", deliverer_name="D",
        lots=(stock.LotIn(product_id=world.bup.id, lot_number="B-Q", expiry_date=date(2027, 1, 31),
                          loose_quantity=D("100")),)), password=PASSWORD, now=world.now)
    lot_id = world.session.scalar(select(StockMovement.lot_id).where(StockMovement.product_id == world.bup.id))
    entry = stock.transfer_stock(world.session, world.pharmacist, from_location_id=world.safe.id,
                                 to_location_id=world.quarantine.id, lot_id=lot_id, quantity=D(quantity),
                                 reason="Vỉ ẩm", now=world.now)
    return lot_id, entry


def test_loose_stock_kept_for_destruction_is_destroyed_in_parts_and_never_returned(world):
    lot_id, _entry = _loose_in_quarantine(world)
    with pytest.raises(ValidationFailed) as refused:
        _destroy(world, lot_id=lot_id, quantity=D("15"))
    assert _code(refused) == "QUARANTINE_DECISION_REQUIRED"
    world.session.rollback()
    _decide(world, lot_id=lot_id, outcome=DESTRUCTION)
    _destroy(world, lot_id=lot_id, quantity=D("15"))
    (item,) = stock.quarantined_items(world.session, clinic_id=world.clinic.id)
    assert (item.quantity, item.decision.outcome) == (D("25"), DESTRUCTION)
    with pytest.raises(ValidationFailed) as refused:
        _return(world, lot_id=lot_id, quantity=D("25"))
    assert _code(refused) == "QUARANTINE_DECISION_MISMATCH"
    world.session.rollback()
    _destroy(world, lot_id=lot_id, quantity=D("25"))
    assert stock.balance(world.session, location_id=world.quarantine.id, product_id=world.bup.id) == D("0")
    assert stock.balance(world.session, location_id=world.safe.id, product_id=world.bup.id) == D("60")


def test_stock_left_in_quarantine_under_a_release_is_neither_returned_nor_destroyed(world):
    lot_id, entry = _loose_in_quarantine(world)
    _decide(world, lot_id=lot_id)  # released: the 40 tablets go back to the safe
    # A correction of the move adds 5 more to the same stay, whose decision is the release.
    stock.correct_movement(world.session, world.pharmacist, movement_id=entry.id, delta=D("5"),
                           reason="Đếm thiếu", password=PASSWORD, now=world.now)
    for way_out in ("return", "destroy"):
        with pytest.raises(ValidationFailed) as refused:
            EXITS[way_out](world, lot_id=lot_id, quantity=D("5"))
        assert (_code(refused), refused.value.params["outcome"]) == ("QUARANTINE_DECISION_MISMATCH", "release"), \
            way_out
        world.session.rollback()
    assert stock.balance(world.session, location_id=world.quarantine.id, product_id=world.bup.id) == D("5")
