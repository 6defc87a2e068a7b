"""Pure parts of the stock domain: the §12 terms, measuring, tolerance, allocating a variance,
GTIN check digits, number formatting and when a scheduled job is due."""

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from dispensing.errors import ValidationFailed
from dispensing.jobs.scheduler import Job, due_runs
from dispensing.models import MovementKind
from dispensing.reports.documents import format_quantity
from dispensing.stock.ledger import Term, Terms, ledger_quantity, term_for
from dispensing.stock.receipts import gtin_is_valid
from dispensing.stock.reconciliation import (
    Tolerance,
    allocate_variance,
    variance_percent,
    volume_from_weight,
    within_tolerance,
)

D = Decimal


@pytest.mark.parametrize(
    ("kind", "enters", "term"),
    [
        (MovementKind.RECEIPT, True, Term.RECEIVED),
        (MovementKind.TRANSFER, True, Term.TRANSFERRED_IN),
        (MovementKind.TRANSFER, False, Term.TRANSFERRED_OUT),
        (MovementKind.DOSE, False, Term.ISSUED),
        (MovementKind.TAKE_HOME, False, Term.ISSUED),
        (MovementKind.REPLACEMENT, False, Term.ISSUED),
        (MovementKind.WASTE, False, Term.WASTE),
        (MovementKind.PRIMING, False, Term.WASTE),
        (MovementKind.CALIBRATION, False, Term.WASTE),
        (MovementKind.RETURN, False, Term.OTHER_OUT),
        (MovementKind.DESTRUCTION, False, Term.OTHER_OUT),
        (MovementKind.ADJUSTMENT, False, Term.LOSS),
        (MovementKind.ADJUSTMENT, True, Term.SURPLUS),
    ],
)
def test_every_kind_falls_in_one_term(kind, enters, term):
    assert term_for(kind, enters) is term


@pytest.mark.parametrize(("kind", "enters"), [(MovementKind.DOSE, True), (MovementKind.RECEIPT, False),
                                              (MovementKind.CORRECTION, True)])
def test_impossible_directions_are_refused(kind, enters):
    with pytest.raises(ValueError):
        term_for(kind, enters)


def test_terms_net_adds_inflows_and_subtracts_outflows():
    terms = Terms()
    terms.add(Term.RECEIVED, D("1000"), MovementKind.RECEIPT)
    terms.add(Term.ISSUED, D("8.5"), MovementKind.DOSE)
    terms.add(Term.ISSUED, D("-0.5"), MovementKind.DOSE)  # a correction taking back half a ml
    terms.add(Term.SURPLUS, D("1"), MovementKind.ADJUSTMENT)
    assert terms.net == D("993")
    assert terms.adjusted == D("1")
    assert terms.issued_by_kind[MovementKind.DOSE] == D("8")


@pytest.mark.parametrize("bad", [D("0"), D("-1"), D("1.0001"), 1.5, D("NaN")])
def test_ledger_quantities_are_positive_decimals_to_the_microlitre(bad):
    with pytest.raises(ValidationFailed):
        ledger_quantity(bad)


def test_weight_over_density_rounds_half_up_to_a_hundredth_and_records_how():
    volume, detail = volume_from_weight(D("1040.525"), D("1.0400"))
    # 1040.525 / 1.04 = 1000.5048… → 1000.50
    assert volume == D("1000.50")
    assert detail["quotient_ml"].startswith("1000.504807")
    assert detail["rounding"] == "ROUND_HALF_UP"
    assert volume_from_weight(D("210.0"), D("1.04"), D("1.0"))[0] == D("200.96")  # (210-1)/1.04 = 200.961…
    assert volume_from_weight(D("1.045"), D("1"))[0] == D("1.05")  # half-up, not half-even


@pytest.mark.parametrize("bad", [(D("-1"), D("1.04")), (D("10"), D("0")), (10.0, D("1.04"))])
def test_impossible_weights_are_refused(bad):
    with pytest.raises(ValidationFailed):
        volume_from_weight(*bad)


def test_tolerance_needs_both_limits():
    tolerance = Tolerance(pct=D("0.5"), absolute=D("2"))
    assert within_tolerance(D("0"), D("0"), tolerance)
    assert within_tolerance(D("-2"), D("1000"), tolerance)  # 0.2 %, 2 ml
    assert not within_tolerance(D("-2.01"), D("1000"), tolerance)  # over 2 ml
    assert not within_tolerance(D("1"), D("100"), tolerance)  # 1 % of a small base
    assert within_tolerance(D("0.5"), D("100"), tolerance)
    assert not within_tolerance(D("0.01"), D("0"), tolerance)  # nothing to compare with
    assert variance_percent(D("-1.5"), D("1000")) == D("-0.150000")
    assert variance_percent(D("1"), D("0")) is None


def test_a_shortage_comes_out_of_residues_first_then_the_open_bottle():
    items = {(1, 10): D("3"), (1, 11): D("500"), (2, None): D("-1")}
    result = allocate_variance(D("-10"), items, attached=(1, 11), expiry={1: date(2027, 1, 1)}, fallback=None)
    assert result == [((1, 10), D("-3")), ((1, 11), D("-7"))]
    assert sum(amount for _, amount in result) == D("-10")


def test_a_surplus_first_clears_negative_items_then_goes_to_the_open_bottle():
    items = {(1, 10): D("-2"), (1, 11): D("500")}
    result = allocate_variance(D("5"), items, attached=(1, 11), expiry={}, fallback=None)
    assert result == [((1, 10), D("2")), ((1, 11), D("3"))]


def test_a_surplus_without_an_open_bottle_goes_to_a_lot_not_into_a_bottle():
    items = {(1, 10): D("10"), (2, 11): D("10")}
    expiry = {1: date(2028, 1, 1), 2: date(2027, 1, 1)}
    assert allocate_variance(D("1"), items, attached=None, expiry=expiry, fallback=None) == [((2, None), D("1"))]
    assert allocate_variance(D("1"), {}, attached=None, expiry={}, fallback=(5, 6)) == [((5, None), D("1"))]
    with pytest.raises(ValidationFailed) as refused:
        allocate_variance(D("1"), {}, attached=None, expiry={}, fallback=None)
    assert refused.value.params["code"] == "SURPLUS_WITHOUT_LOT"
    assert allocate_variance(D("0"), items, attached=None, expiry=expiry, fallback=None) == []


@pytest.mark.parametrize(("gtin", "valid"), [
    ("4006381333931", True), ("08936014580028", True), ("96385074", True), ("036000291452", True),
    ("08936014580017", False), ("4006381333932", False), ("40063813339", False), ("40063813339a1", False),
])
def test_gtin_check_digit(gtin, valid):
    assert gtin_is_valid(gtin) is valid


@pytest.mark.parametrize(("value", "text"), [
    (D("0"), "0,00"), (D("1234.5"), "1.234,50"), (D("-12.125"), "-12,125"), (D("1000000"), "1.000.000,00"),
])
def test_vietnamese_number_format(value, text):
    assert format_quantity(value) == text


def test_a_job_is_due_after_its_local_time_and_the_end_of_day_catches_up_yesterday():
    tz = "Asia/Ho_Chi_Minh"
    morning = Job("m", lambda s, c: {}, time(6, 0))
    evening = Job("e", lambda s, c: {}, time(19, 0), catch_up_days=1)
    at_0500 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # 05:00 on 2 March in Hà Nội
    at_0700 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 07:00
    assert due_runs(morning, at_0500, tz) == []
    assert due_runs(morning, at_0700, tz) == [date(2026, 3, 2)]
    assert due_runs(evening, at_0700, tz) == [date(2026, 3, 1)]
    assert due_runs(evening, datetime(2026, 3, 2, 12, 30, tzinfo=UTC), tz) == [date(2026, 3, 1), date(2026, 3, 2)]
