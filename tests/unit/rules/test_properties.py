"""Properties over many generated cases (Hypothesis)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from dispensing.rules import (
    DoseKind,
    DoseRecord,
    Outcome,
    assess_missed_doses,
    count_missed_days,
    dose_volume,
    volume_dose,
)
from dispensing.rules.history import DoseChange, Phase
from dispensing.rules.taper import check_taper_step

from .builders import TODAY, rules, taken

MISSED_TABLES = ("australia-2003", "metaphi")

dose_days = st.lists(
    st.builds(
        DoseRecord,
        on=st.integers(-400, 10).map(lambda offset: TODAY + timedelta(days=offset)),
        kind=st.sampled_from(DoseKind),
        mg=st.just(Decimal("60")),
        vomited=st.booleans(),
    ),
    max_size=30,
)
doses_mg = st.integers(1, 3000).map(lambda tenths: Decimal(tenths) / 10)  # 0.1 … 300.0 mg


@given(dose_days, st.integers(-30, 30))
def test_missed_day_count_is_never_negative_and_never_exceeds_the_gap(doses, today_offset):
    today = TODAY + timedelta(days=today_offset)
    missed = count_missed_days(doses, today)
    assert missed >= 0
    earlier = [d.on for d in doses if d.on < today]
    if earlier:
        assert missed <= (today - max(earlier)).days - 1
    else:
        assert missed == 0


@given(st.integers(0, 120), st.sampled_from(MISSED_TABLES), doses_mg)
def test_more_missed_days_never_less_restrictive(missed, table, usual):
    rule_set = rules(missed_dose=table)

    def assess(days: int):
        return assess_missed_doses(rule_set, taken(TODAY - timedelta(days=days + 1)), TODAY, usual)

    fewer, more = assess(missed), assess(missed + 1)
    assert fewer.missed_days == missed and more.missed_days == missed + 1

    def severity(result) -> int:
        return -1 if result.decision is None else result.decision.outcome.severity

    assert severity(fewer) <= severity(more)
    if fewer.decision is not None and fewer.decision.outcome is Outcome.BLOCK:
        assert more.decision.lift_role is not None or fewer.decision.lift_role is None
    assert len(fewer.flags) <= len(more.flags)
    if more.suggested is not None:
        assert more.suggested.max_mg <= usual  # never suggests more than the usual dose


@given(
    doses_mg,
    st.sampled_from(
        [Decimal("10"), Decimal("5"), Decimal("1"), Decimal("2.5"), Decimal("3"), Decimal("7.77")]
    ),
    st.sampled_from([Decimal("0.01"), Decimal("0.05"), Decimal("0.1"), Decimal("0.5")]),
)
def test_mg_to_ml_round_trip_within_device_resolution(dose_mg, concentration, resolution):
    conversion = dose_volume(rules(), dose_mg, concentration, resolution)
    assert conversion.volume_ml % resolution == 0
    assert abs(conversion.volume_ml - conversion.exact_ml) <= resolution / 2
    back = volume_dose(conversion.volume_ml, concentration)
    assert back == conversion.delivered_mg
    assert abs(back - dose_mg) <= resolution * concentration / 2


@given(doses_mg)
def test_10mg_per_ml_with_0_01ml_device_is_exact(dose_mg):
    conversion = dose_volume(rules(), dose_mg, Decimal("10"))
    assert conversion.delivered_mg == dose_mg
    assert conversion.volume_ml * 10 == dose_mg


@given(doses_mg, st.integers(1, 1000))
def test_taper_step_blocked_exactly_when_above_10_percent(previous, reduction_tenths):
    new = previous - Decimal(reduction_tenths) / 10
    if new <= 0:
        return
    change = DoseChange(TODAY, previous, new, Phase.TAPER)
    found = check_taper_step(rules(), [], change, treatment_days=1000)
    blocked = any(d.code == "TAPER_STEP_TOO_LARGE" for d in found)
    assert blocked is ((previous - new) * 10 > previous)
