"""Random sequences of receive (some with an anomaly, into quarantine) / quarantine decision /
return or destruction out of quarantine / attach / dose / waste / transfer / correction / close /
next day.

After every step, at every location: the reconciliation's expected close (the §12 formula over the
day's lines) equals the ledger balance, the snapshot-based balance equals a plain sum of lines, and
every closed day is exactly as it was when it closed; nothing held in quarantine is ever offered for
a pump; and every line that took stock out of quarantine is one its stay's decision allowed (the
release's own transfer, a return when kept for return, a destruction when kept for destruction).
"""

import os
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from dispensing import stock
from dispensing.errors import DomainError
from dispensing.models import (
    DiscrepancyReason,
    MeasureMethod,
    MovementKind,
    QuarantineDecision,
    QuarantineOutcome,
    Reconciliation,
    StockMovement,
)
from tests import stock_world
from tests.stock_world import PASSWORD

D = Decimal
ML = st.decimals(min_value=D("0.01"), max_value=D("25"), places=2)


@dataclass(frozen=True)
class ClosedDay:
    location_id: int
    day: date
    row: tuple
    ledger_through: Decimal
    lines_through: int


def _ledger_through(session, location_id: int, day: date) -> tuple[Decimal, int]:
    """A plain sum of every line at ``location_id`` dated on or before ``day`` (no snapshots)."""
    m = StockMovement
    total, count = D(0), 0
    for side, sign in ((m.to_location_id, 1), (m.from_location_id, -1)):
        amount, lines = session.execute(
            select(func.sum(m.quantity), func.count()).where(side == location_id, m.business_date <= day)).one()
        total += sign * (amount or 0)
        count += lines
    return total, count


class _PlainLedger:
    """Running totals of every location's lines by business day, from a plain sum (no snapshots)."""

    def __init__(self, by_location: dict[int, list[tuple[date, Decimal, int]]]):
        self.by_location = by_location

    def through(self, location_id: int, day: date) -> tuple[Decimal, int]:
        total, count = D(0), 0
        for line_day, amount, lines in self.by_location.get(location_id, []):
            if line_day > day:
                break
            total, count = amount, lines
        return total, count


def _plain_ledger(session, clinic_id: int) -> _PlainLedger:
    m = StockMovement
    days: dict[int, dict[date, list]] = {}
    for side, sign in ((m.to_location_id, 1), (m.from_location_id, -1)):
        for location_id, day, amount, lines in session.execute(
            select(side, m.business_date, func.sum(m.quantity), func.count())
            .where(m.clinic_id == clinic_id, side.is_not(None)).group_by(side, m.business_date)
        ):
            entry = days.setdefault(location_id, {}).setdefault(day, [D(0), 0])
            entry[0] += sign * amount
            entry[1] += lines
    by_location = {}
    for location_id, per_day in days.items():
        running, count, series = D(0), 0, []
        for day in sorted(per_day):
            running += per_day[day][0]
            count += per_day[day][1]
            series.append((day, running, count))
        by_location[location_id] = series
    return _PlainLedger(by_location)


def _row(rec: Reconciliation) -> tuple:
    return (rec.status, rec.opening, rec.received, rec.transferred_in, rec.transferred_out, rec.issued, rec.waste,
            rec.other_out, rec.adjusted, rec.expected_close, rec.measured_close, rec.loss, rec.surplus,
            rec.within_tolerance, rec.closed_at)


def _expect(error: DomainError, *codes: str) -> None:
    code = error.params.get("code") or error.code
    assert code in codes, f"unexpected refusal {code}"


def make_machine(database):
    class StockMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.outer = database.connection.begin_nested()
            self.session = sessionmaker(bind=database.connection, expire_on_commit=False,
                                        join_transaction_mode="create_savepoint")()
            self.world = stock_world.build(self.session)
            self.locations = [self.world.safe, self.world.quarantine, *self.world.pumps]
            self.closed: list[ClosedDay] = []
            self.records = 0

        def teardown(self):
            self.session.close()
            self.outer.rollback()

        @property
        def w(self):
            return self.world

        def _today_closed(self, location) -> bool:
            return any(c.location_id == location.id and c.day >= self.w.today for c in self.closed)

        # --- rules -------------------------------------------------------------------------

        @rule(volumes=st.lists(st.sampled_from(["100", "500", "1000"]), min_size=1, max_size=2),
              anomaly=st.booleans())
        def receive(self, volumes, anomaly):
            broken = stock.AnomalyIn("cracked_bottle", "Chai nứt") if anomaly else None
            try:
                self.w.receive(*volumes, anomaly=broken)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "DAY_CLOSED")
                assert self._today_closed(self.w.safe) or (anomaly and self._today_closed(self.w.quarantine))

        @rule(pump=st.integers(0, 1))
        def attach(self, pump):
            suggestions = stock.suggest_bottles(self.session, clinic_id=self.w.clinic.id,
                                                product_id=self.w.methadone.id, day=self.w.today)
            if not suggestions:
                return
            try:
                stock.attach_container(self.session, self.w.pharmacist, location_id=self.w.pumps[pump].id,
                                       container_id=suggestions[0].container_id, now=self.w.now)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "PUMP_HAS_OPEN_BOTTLE", "DAY_CLOSED")

        @rule(pump=st.integers(0, 1), ml=ML)
        def dose(self, pump, ml):
            try:
                self.w.dose(pump, ml)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "NO_OPEN_BOTTLE", "DAY_CLOSED")

        @rule(pump=st.integers(0, 1), ml=ML)
        def waste(self, pump, ml):
            try:
                stock.record_waste(self.session, self.w.nurse, location_id=self.w.pumps[pump].id, quantity=ml,
                                   reason="Đổ", password=PASSWORD, witness=self.w.witness(), now=self.w.now)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "NO_OPEN_BOTTLE", "ITEM_REQUIRED", "INSUFFICIENT_STOCK", "DAY_CLOSED")

        @rule(pump=st.integers(0, 1), left=st.decimals(min_value=0, max_value=1, places=2))
        def detach(self, pump, left):
            attachment = stock.open_attachment(self.session, self.w.pumps[pump].id)
            if attachment is None:
                return
            held = stock.balance(self.session, location_id=self.w.pumps[pump].id,
                                 container_id=attachment.container_id)
            remaining = max(D(0), min(held, attachment.container.nominal_quantity) * left).quantize(D("0.01"))
            try:
                stock.detach_container(self.session, self.w.pharmacist, location_id=self.w.pumps[pump].id,
                                       remaining=remaining, return_to_location_id=self.w.safe.id, now=self.w.now)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "DAY_CLOSED")

        @rule(index=st.integers(0, 10))
        def to_quarantine(self, index):
            suggestions = stock.suggest_bottles(self.session, clinic_id=self.w.clinic.id,
                                                product_id=self.w.methadone.id, day=self.w.today)
            if not suggestions:
                return
            bottle = suggestions[index % len(suggestions)]
            try:
                stock.transfer_stock(self.session, self.w.pharmacist, from_location_id=self.w.safe.id,
                                     to_location_id=self.w.quarantine.id, container_id=bottle.container_id,
                                     now=self.w.now)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "DAY_CLOSED")

        @rule(index=st.integers(0, 10), outcome=st.sampled_from(list(QuarantineOutcome)))
        def decide_quarantine(self, index, outcome):
            undecided = [item for item in stock.quarantined_items(self.session, clinic_id=self.w.clinic.id)
                         if item.decision is None and item.container_id is not None]
            if not undecided:
                return
            item = undecided[index % len(undecided)]
            if not item.anomaly_signed:
                stock.countersign_anomaly(self.session, self.w.unit_head, item.anomaly_id, password=PASSWORD,
                                          now=self.w.now)
            release = outcome is QuarantineOutcome.RELEASE
            try:
                (decision,) = stock.decide_quarantine(
                    self.session, self.w.pharmacist, outcome=outcome, reason="Quyết định", password=PASSWORD,
                    unit_head=stock.Cosigner(self.w.unit_head.username, PASSWORD), container_id=item.container_id,
                    to_location_id=self.w.safe.id, now=self.w.now)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "DAY_CLOSED")
                assert release and (self._today_closed(self.w.safe) or self._today_closed(self.w.quarantine))
                return
            held = stock.balance(self.session, location_id=self.w.quarantine.id, container_id=item.container_id)
            assert held == (0 if release else item.quantity)
            assert decision.quantity == item.quantity

        @rule(index=st.integers(0, 10),
              way_out=st.sampled_from([QuarantineOutcome.RETURN_TO_SUPPLIER, QuarantineOutcome.DESTRUCTION]))
        def leave_quarantine(self, index, way_out):
            """Try to return or destroy a quarantined bottle, decided or not: it leaves only when its
            stay's decision is that way out; otherwise the refusal names why."""
            items = [item for item in stock.quarantined_items(self.session, clinic_id=self.w.clinic.id)
                     if item.container_id is not None]
            if not items:
                return
            item = items[index % len(items)]
            allowed = item.decision is not None and item.decision.outcome is way_out
            try:
                if way_out is QuarantineOutcome.RETURN_TO_SUPPLIER:
                    stock.return_to_supplier(self.session, self.w.pharmacist, location_id=item.location_id,
                                             container_id=item.container_id, reason="Trả NCC", password=PASSWORD,
                                             now=self.w.now)
                else:
                    self.records += 1
                    stock.destroy_stock(
                        self.session, self.w.pharmacist, record_no=f"BBH-{self.records}", method="Đốt",
                        reason="Hỏng", items=[stock.DestructionItem(item.location_id, container_id=item.container_id)],
                        password=PASSWORD, witness=self.w.witness(), now=self.w.now)
            except DomainError as error:
                self.session.rollback()
                if allowed:
                    _expect(error, "DAY_CLOSED")
                    assert self._today_closed(self.w.quarantine)
                elif item.decision is None:
                    _expect(error, "QUARANTINE_DECISION_REQUIRED")
                else:
                    _expect(error, "QUARANTINE_DECISION_MISMATCH")
                    assert error.params["outcome"] == item.decision.outcome.value
                return
            assert allowed, f"{item.label_code} left quarantine as {way_out} under {item.decision}"
            assert stock.balance(self.session, location_id=item.location_id, container_id=item.container_id) == 0

        @rule(index=st.integers(0, 1000), delta=st.decimals(min_value=D("-5"), max_value=D("5"), places=2))
        def correct(self, index, delta):
            lines = self.session.scalars(select(StockMovement.id).where(
                StockMovement.clinic_id == self.w.clinic.id,
                StockMovement.kind.in_([MovementKind.DOSE, MovementKind.WASTE, MovementKind.RECEIPT,
                                        MovementKind.TRANSFER, MovementKind.ADJUSTMENT])).order_by(StockMovement.id)
            ).all()
            if not lines or delta == 0:
                return
            try:
                stock.correct_movement(self.session, self.w.pharmacist, movement_id=lines[index % len(lines)],
                                       delta=delta, reason="Điều chỉnh", password=PASSWORD, now=self.w.now)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "CORRECTION_EXCEEDS_ORIGINAL", "CORRECTION_NOT_ALLOWED", "INSUFFICIENT_STOCK",
                        "DAY_CLOSED")

        @rule(which=st.integers(0, 3), off=st.sampled_from([D("0"), D("-0.5"), D("1.25"), D("-40"), D("12")]))
        def close(self, which, off):
            location = self.locations[which]
            sheet = stock.worksheet(self.session, location_id=location.id, product_id=self.w.methadone.id,
                                    day=self.w.today)
            measured = max(D(0), sheet.expected_close + off)
            method = MeasureMethod.PUMP if location in self.w.pumps else MeasureMethod.CYLINDER
            measurement = stock.Measurement(method, value=measured)
            preview = stock.preview_close(self.session, self.w.pharmacist, location_id=location.id,
                                          product_id=self.w.methadone.id, day=self.w.today, measurement=measurement)
            close = dict(location_id=location.id, product_id=self.w.methadone.id, day=self.w.today,
                         measurement=measurement, password=PASSWORD, now=self.w.now + timedelta(hours=10))
            try:
                if not preview.within_tolerance:
                    try:  # outside tolerance the bare close is refused
                        stock.close_day(self.session, self.w.pharmacist, **close)
                    except DomainError as error:
                        self.session.rollback()
                        _expect(error, "DISCREPANCY_ENTRY_REQUIRED", "DAY_ALREADY_CLOSED")
                    else:
                        raise AssertionError("closed outside tolerance without a discrepancy entry")
                    close.update(witness=self.w.witness(self.w.nurse), discrepancy_reason=DiscrepancyReason.UNKNOWN,
                                 investigation_note="Đang tìm hiểu")
                rec = stock.close_day(self.session, self.w.pharmacist, **close)
            except DomainError as error:
                self.session.rollback()
                _expect(error, "DAY_ALREADY_CLOSED", "SURPLUS_WITHOUT_LOT")
                return
            assert rec.within_tolerance is preview.within_tolerance
            assert rec.expected_close == sheet.expected_close
            assert rec.measured_close == measured
            ledger, count = _ledger_through(self.session, location.id, self.w.today)
            assert ledger == measured
            self.closed.append(ClosedDay(location.id, self.w.today, _row(rec), ledger, count))

        @rule()
        def next_day(self):
            self.w.now += timedelta(days=1)

        # --- invariants --------------------------------------------------------------------

        @invariant()
        def quarantined_stock_is_never_offered(self):
            held = {item.container_id for item in stock.quarantined_items(self.session, clinic_id=self.w.clinic.id)}
            offered = {s.container_id for s in stock.suggest_bottles(
                self.session, clinic_id=self.w.clinic.id, product_id=self.w.methadone.id, day=self.w.today)}
            assert not held & offered

        @invariant()
        def stock_leaves_quarantine_only_as_decided(self):
            m = StockMovement
            allowed_kind = {QuarantineOutcome.RELEASE: MovementKind.TRANSFER,
                            QuarantineOutcome.RETURN_TO_SUPPLIER: MovementKind.RETURN,
                            QuarantineOutcome.DESTRUCTION: MovementKind.DESTRUCTION}
            for line in self.session.scalars(select(m).where(
                    m.from_location_id == self.w.quarantine.id,
                    m.kind.not_in([MovementKind.CORRECTION, MovementKind.ADJUSTMENT]))):
                entry = self.session.scalar(
                    select(m).where(m.to_location_id == self.w.quarantine.id, m.lot_id == line.lot_id,
                                    m.container_id == line.container_id, m.id < line.id,
                                    m.kind.in_([MovementKind.RECEIPT, MovementKind.TRANSFER]))
                    .order_by(m.id.desc()).limit(1))
                decision = self.session.scalar(select(QuarantineDecision).where(
                    QuarantineDecision.entry_movement_id == entry.id))
                assert decision is not None, f"line {line.id} left quarantine undecided"
                assert line.kind is allowed_kind[decision.outcome], (line.kind, decision.outcome)
                if line.kind is MovementKind.TRANSFER:
                    assert decision.release_movement_id == line.id

        @invariant()
        def ledger_and_closed_days_agree(self):
            today = self.w.today
            plain = _plain_ledger(self.session, self.w.clinic.id)
            total = D(0)
            for location in self.locations:
                # The snapshot-based balance equals a plain sum of lines, and, while the day is
                # open, the §12 worksheet's expected close equals it too.
                balance = stock.balance(self.session, location_id=location.id, end_of=today)
                assert balance == plain.through(location.id, today)[0]
                total += balance
                if not any(c.location_id == location.id and c.day == today for c in self.closed):
                    sheet = stock.worksheet(self.session, location_id=location.id,
                                            product_id=self.w.methadone.id, day=today)
                    assert sheet.expected_close == balance, (location.code, sheet, balance)
            assert stock.balance(self.session, clinic_id=self.w.clinic.id, end_of=today) == total
            # Every closed day is exactly as it was: its record, and every line dated through it.
            rows = {
                (rec.location_id, rec.business_date): _row(rec)
                for rec in self.session.execute(
                    select(Reconciliation).where(Reconciliation.clinic_id == self.w.clinic.id)
                    .execution_options(populate_existing=True)).scalars()
            }
            for closed in self.closed:
                assert rows[(closed.location_id, closed.day)] == closed.row
                assert plain.through(closed.location_id, closed.day) == (closed.ledger_through, closed.lines_through)

    return StockMachine


# CI runs the suite on both databases: 8 random histories on SQLite and 5 more on PostgreSQL,
# where each step's round trips cost more (a failing history is kept and replayed first).
EXAMPLES = 5 if os.environ.get("MMT_TEST_DATABASE_URL") else 8


def test_random_stock_histories_keep_the_ledger_and_closed_days_consistent(database):
    run_state_machine_as_test(
        make_machine(database),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
