"""§2 Orders: validity windows per phase, dispensing only inside the window, parts adding up."""

from __future__ import annotations

import pytest

from dispensing.rules import Outcome, Phase, check_order, check_order_in_force

from .builders import TODAY, codes, day, only, order, rules

IND, T, M, P = Phase.INDUCTION, Phase.TITRATION, Phase.MAINTENANCE, Phase.TAPER


@pytest.mark.parametrize(
    ("phase", "days", "expected"),
    [
        pytest.param(IND, 1, [], id="induction-one-day"),
        pytest.param(IND, 2, ["ORDER_WINDOW_TOO_LONG"], id="induction-two-days-too-long"),
        pytest.param(T, 2, ["ORDER_WINDOW_TOO_SHORT"], id="titration-2-days-too-short"),
        pytest.param(T, 3, [], id="titration-3-days"),
        pytest.param(T, 5, [], id="titration-5-days"),
        pytest.param(T, 6, ["ORDER_WINDOW_TOO_LONG"], id="titration-6-days-too-long"),
        pytest.param(M, 1, [], id="maintenance-1-day"),
        pytest.param(M, 30, [], id="maintenance-30-days"),
        pytest.param(M, 31, ["ORDER_WINDOW_TOO_LONG"], id="maintenance-31-days-too-long"),
        pytest.param(P, 14, [], id="taper-14-days"),
        pytest.param(P, 15, ["ORDER_WINDOW_TOO_LONG"], id="taper-15-days-too-long"),
    ],
)
def test_validity_window_per_phase(phase, days, expected):
    mg = "20" if phase is IND else "60"
    found = check_order(rules(), order(phase, mg, days=days))
    assert codes(found) == expected
    assert all(d.outcome is Outcome.BLOCK for d in found)


@pytest.mark.parametrize(
    ("valid_until", "expected"),
    [
        pytest.param(None, "ORDER_WINDOW_END_MISSING", id="maintenance-without-end-date"),
        pytest.param(day(-1), "ORDER_WINDOW_INVALID", id="end-before-start"),
    ],
)
def test_window_needs_explicit_ordered_dates(valid_until, expected):
    found = check_order(rules(), order(M, "60", valid_until=valid_until))
    assert codes(found) == [expected]


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        pytest.param(day(-1), ["ORDER_NOT_YET_VALID"], id="day-before-start-not-yet-valid"),
        pytest.param(TODAY, [], id="first-day"),
        pytest.param(day(29), [], id="last-day-of-30"),
        pytest.param(day(30), ["ORDER_EXPIRED"], id="day-after-end-expired"),
    ],
)
def test_dispensing_only_inside_the_active_window(on, expected):
    found = check_order_in_force(rules(), order(M, "60"), on)
    assert codes(found) == expected
    for d in found:
        assert d.outcome is Outcome.BLOCK
        assert d.lift_role is None  # only a new order resolves it, never a lift


def test_no_order_in_force_blocks():
    found = check_order_in_force(rules(), None, TODAY)
    assert only(found, "NO_ACTIVE_ORDER").outcome is Outcome.BLOCK
    assert "16/06/2025" in found[0].message_vi and "2025-06-16" in found[0].message_en


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        pytest.param("60", ["60"], [], id="one-part"),
        pytest.param("60", ["40", "20"], [], id="two-parts-sum-exactly"),
        pytest.param("60", ["20", "20", "20"], [], id="three-parts-sum-exactly"),
        pytest.param("60", ["40", "19.9"], ["ORDER_PARTS_SUM_MISMATCH"], id="parts-0.1mg-short"),
        pytest.param("60", ["40", "20.1"], ["ORDER_PARTS_SUM_MISMATCH"], id="parts-0.1mg-over"),
        pytest.param(
            "60", ["15", "15", "15", "15"], ["ORDER_PARTS_COUNT_INVALID"], id="four-parts"
        ),
        pytest.param("60", [], ["ORDER_PARTS_COUNT_INVALID"], id="no-part"),
        pytest.param("60", ["60", "0"], ["ORDER_DOSE_NOT_POSITIVE"], id="empty-part"),
        pytest.param("60.05", ["60.05"], ["DOSE_RESOLUTION_INVALID"] * 2, id="finer-than-0.1mg"),
    ],
)
def test_parts_split_the_daily_total_exactly(total, parts, expected):
    assert codes(check_order(rules(), order(M, total, parts=parts))) == expected
