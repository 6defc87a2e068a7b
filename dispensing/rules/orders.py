"""§2 Orders: the validity window of each phase, the split into parts, and whether an order is in
force on a given day (dispensing outside the window is BLOCKED)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from dispensing.rules.decisions import Decision, Outcome, decision
from dispensing.rules.history import Order
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSet
from dispensing.rules.units import check_dose_resolution


def validity_days(order: Order) -> int | None:
    """Days covered by the order, both ends included; None without an end date."""
    return None if order.valid_until is None else (order.valid_until - order.valid_from).days + 1


def check_order(rule_set: RuleSet, order: Order) -> list[Decision]:
    """Check the shape of an order: positive doses at the dose resolution, 1–3 parts adding up
    exactly to the daily total, and an explicit window of the phase's allowed length."""
    return _check_doses(rule_set, order) + _check_window(rule_set, order)


def _check_doses(rule_set: RuleSet, order: Order) -> list[Decision]:
    messages, version = rule_set.messages, rule_set.core.version
    found: list[Decision] = []
    for mg in (order.daily_total_mg, *order.parts):
        if mg <= 0:
            found.append(
                decision(
                    messages, Outcome.BLOCK, Reason.ORDER_DOSE_NOT_POSITIVE, version, dose_mg=mg
                )
            )
        else:
            found += check_dose_resolution(rule_set, mg)
    max_parts = rule_set.core.orders.max_parts
    if not 1 <= len(order.parts) <= max_parts:
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_PARTS_COUNT_INVALID,
                version,
                parts=len(order.parts),
                max_parts=max_parts,
            )
        )
    parts_sum = sum(order.parts, Decimal(0))
    if order.parts and parts_sum != order.daily_total_mg:
        found.append(
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_PARTS_SUM_MISMATCH,
                version,
                parts_sum_mg=parts_sum,
                daily_total_mg=order.daily_total_mg,
            )
        )
    return found


def _check_window(rule_set: RuleSet, order: Order) -> list[Decision]:
    messages, version = rule_set.messages, rule_set.core.version
    window = rule_set.core.orders.windows[order.phase]
    if order.valid_until is None:
        return [
            decision(
                messages, Outcome.BLOCK, Reason.ORDER_WINDOW_END_MISSING, version, phase=order.phase
            )
        ]
    if order.valid_until < order.valid_from:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_WINDOW_INVALID,
                version,
                valid_from=order.valid_from,
                valid_until=order.valid_until,
            )
        ]
    days = validity_days(order)
    assert days is not None
    if days < window.min_days:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_WINDOW_TOO_SHORT,
                version,
                phase=order.phase,
                days=days,
                min_days=window.min_days,
            )
        ]
    if days > window.max_days:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_WINDOW_TOO_LONG,
                version,
                phase=order.phase,
                days=days,
                max_days=window.max_days,
            )
        ]
    return []


def check_order_in_force(rule_set: RuleSet, order: Order | None, on: date) -> list[Decision]:
    """BLOCK dispensing on ``on`` without an order, or outside the order's window.

    No lift: only a new order resolves these (a lift must never revive an expired order).
    """
    messages, version = rule_set.messages, rule_set.core.version
    if order is None:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.NO_ACTIVE_ORDER,
                version,
                date=on,
            )
        ]
    if on < order.valid_from:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_NOT_YET_VALID,
                version,
                date=on,
                valid_from=order.valid_from,
            )
        ]
    if (
        order.valid_until is None
    ):  # never signed so (check_order refuses it), but never dispensed on
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_WINDOW_END_MISSING,
                version,
                phase=order.phase,
            )
        ]
    if on > order.valid_until:
        return [
            decision(
                messages,
                Outcome.BLOCK,
                Reason.ORDER_EXPIRED,
                version,
                date=on,
                valid_until=order.valid_until,
            )
        ]
    return []
