"""§1 Product and units: mg → ml from the lot, explicit rounding, unverified lots blocked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dispensing.rules import Lot, Outcome, Phase, check_lot, dose_volume, plan_parts, volume_dose
from dispensing.rules.units import check_dose_resolution, check_volume

from .builders import D, codes, order, rules

VERIFIED_10 = Lot("HT-2501", D("10"), True)


@pytest.mark.parametrize(
    ("dose_mg", "volume_ml"),
    [
        pytest.param("80", "8.00", id="80mg-is-8.00ml"),
        pytest.param("35", "3.50", id="35mg-is-3.50ml"),
        pytest.param("115", "11.50", id="115mg-is-11.50ml"),
        pytest.param("0.1", "0.01", id="smallest-step-0.1mg-is-0.01ml"),
        pytest.param("37.5", "3.75", id="half-mg-dose-exact"),
        pytest.param("200", "20.00", id="ceiling-200mg-is-20ml"),
    ],
)
def test_10mg_per_ml_solution_converts_exactly(dose_mg, volume_ml):
    conversion = dose_volume(rules(), D(dose_mg), D("10"))
    assert conversion.volume_ml == D(volume_ml)
    assert conversion.delivered_mg == D(dose_mg)
    assert conversion.exact_ml == conversion.volume_ml
    assert str(conversion.volume_ml) == volume_ml  # two decimals: the device resolution


@pytest.mark.parametrize(
    ("dose_mg", "resolution_ml", "volume_ml"),
    [
        pytest.param("32.5", "0.1", "3.2", id="0.1ml-pump-half-step-rounds-to-even-down"),
        pytest.param("33.5", "0.1", "3.4", id="0.1ml-pump-half-step-rounds-to-even-up"),
        pytest.param("32.6", "0.1", "3.3", id="0.1ml-pump-above-half-rounds-up"),
        pytest.param("32.4", "0.1", "3.2", id="0.1ml-pump-below-half-rounds-down"),
        pytest.param("32.7", "0.05", "3.25", id="0.05ml-step-is-not-a-power-of-ten"),
    ],
)
def test_volume_rounded_to_device_resolution_half_even(dose_mg, resolution_ml, volume_ml):
    conversion = dose_volume(rules(), D(dose_mg), D("10"), D(resolution_ml))
    assert conversion.volume_ml == D(volume_ml)
    assert conversion.rounding == "ROUND_HALF_EVEN"
    assert conversion.resolution_ml == D(resolution_ml)
    assert conversion.delivered_mg == D(volume_ml) * 10


def test_non_terminating_quotient_keeps_exact_and_rounded_volume():
    conversion = dose_volume(rules(), D("10"), D("3"))
    assert conversion.volume_ml == D("3.33")
    assert conversion.exact_ml.as_tuple().exponent < -20  # recorded with its full precision
    assert volume_dose(D("3.33"), D("3")) == D("9.99")


@pytest.mark.parametrize(
    ("resolution_ml", "warns"),
    [
        pytest.param("0.01", False, id="0.01ml-pump-delivers-32.5mg-exactly"),
        pytest.param("0.1", True, id="0.1ml-pump-delivers-32mg-warns"),
    ],
)
def test_device_that_cannot_deliver_the_dose_warns(resolution_ml, warns):
    found = check_volume(rules(), dose_volume(rules(), D("32.5"), D("10"), D(resolution_ml)))
    assert codes(found) == (["VOLUME_ROUNDED"] if warns else [])
    if warns:
        assert found[0].outcome is Outcome.WARN
        assert "3,2 ml" in found[0].message_vi and "3.2 ml" in found[0].message_en


@pytest.mark.parametrize(
    ("lot", "blocked"),
    [
        pytest.param(VERIFIED_10, False, id="verified-10mg-per-ml-lot"),
        pytest.param(Lot("DN-01", D("10"), False), True, id="concentration-not-verified"),
        pytest.param(Lot("DN-02", None, False), True, id="no-concentration-recorded"),
        pytest.param(Lot("DN-03", None, True), True, id="verified-flag-without-concentration"),
    ],
)
def test_lot_without_verified_concentration_is_blocked(lot, blocked):
    found = check_lot(rules(), lot)
    assert codes(found) == (["LOT_CONCENTRATION_UNVERIFIED"] if blocked else [])
    if blocked:
        assert found[0].outcome is Outcome.BLOCK and found[0].lift_role is None
        assert lot.code in found[0].message_vi


def test_plan_gives_mg_and_ml_per_part_and_no_volume_from_unusable_lot():
    split = order(Phase.MAINTENANCE, "90", parts=["60", "30"])
    plan = plan_parts(rules(), split, VERIFIED_10)
    assert [(p.number, p.dose_mg, p.volume.volume_ml) for p in plan.parts] == [
        (1, D("60"), D("6.00")),
        (2, D("30"), D("3.00")),
    ]
    assert plan.decisions == ()
    blocked = plan_parts(rules(), split, Lot("X", D("10"), False))
    assert [p.volume for p in blocked.parts] == [None, None]
    assert codes(blocked.decisions) == ["LOT_CONCENTRATION_UNVERIFIED"]


@pytest.mark.parametrize(
    ("dose_mg", "valid"),
    [
        pytest.param("30.1", True, id="0.1mg-resolution"),
        pytest.param("30.05", False, id="finer-than-0.1mg"),
    ],
)
def test_dose_resolution_is_0_1_mg(dose_mg, valid):
    assert codes(check_dose_resolution(rules(), D(dose_mg))) == (
        [] if valid else ["DOSE_RESOLUTION_INVALID"]
    )


@pytest.mark.parametrize("concentration", [Decimal(0), Decimal(-10)], ids=["zero", "negative"])
def test_conversion_refuses_non_positive_concentration(concentration):
    with pytest.raises(ValueError, match="concentration"):
        dose_volume(rules(), D("60"), concentration)
