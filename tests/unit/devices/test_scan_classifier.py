"""classify_scan: patient card / container label / medicine pack / unknown."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.scan import GS, LabelType, ScanKind, ScanRejected, ScanRejection, classify_scan

PACK = "0109506000134352" + "17291200" + "102A" + GS + "21XYZ"


@pytest.mark.parametrize("raw", ["]C0P000123", "P000123", "P000123\r\n", "p000123", "]Q1P000123"])
def test_patient_card(raw):
    scan = classify_scan(raw)
    assert scan.kind is ScanKind.PATIENT_CARD and scan.accepted
    assert scan.value == "P000123"


def test_patient_card_alphanumeric_clinic_code():
    scan = classify_scan("]C0PHCM4X0012")
    assert (scan.kind, scan.value, scan.symbology, scan.symbology_name) == (
        ScanKind.PATIENT_CARD,
        "PHCM4X0012",
        "]C0",
        "Code 128",
    )


@pytest.mark.parametrize(
    ("raw", "label_type"), [("C000045", LabelType.BOTTLE), ("]C0T000017", LabelType.TAKE_HOME)]
)
def test_container_labels(raw, label_type):
    scan = classify_scan(raw)
    assert scan.kind is ScanKind.CONTAINER_LABEL and scan.label_type is label_type and scan.accepted


@pytest.mark.parametrize("raw", ["]d2" + PACK, "]C1" + PACK, "]Q3" + PACK, PACK])
def test_medicine_pack_with_gtin_lot_expiry_serial(raw):
    scan = classify_scan(raw)
    assert scan.kind is ScanKind.MEDICINE_PACK and scan.accepted
    assert (scan.gtin, scan.lot, scan.expiry, scan.serial) == (
        "09506000134352",
        "2A",
        date(2029, 12, 31),
        "XYZ",
    )


def test_expiry_day_00_is_last_day_of_month():
    scan = classify_scan("]d2" + "0109506000134352" + "17280200" + "10LOT9")
    assert scan.expiry == date(2028, 2, 29)


def test_keyboard_wedge_with_visible_separator():
    typed = "]d2" + PACK.replace(GS, "|")
    scan = classify_scan(typed, separator="|")
    assert scan.accepted and (scan.lot, scan.serial) == ("2A", "XYZ")
    assert GS in scan.value
    # Without the separator configured "|" is not GS1 data: rejected, not guessed.
    unconfigured = classify_scan(typed)
    assert unconfigured.rejection is ScanRejection.GS1_PARSE_ERROR and unconfigured.lot is None


def test_wedge_hri_form():
    scan = classify_scan("(01)09506000134352(17)291200(10)ABC")
    assert scan.accepted and (scan.gtin, scan.lot) == ("09506000134352", "ABC")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("]d2" + "0109506000134351" + "17291200" + "102A", ScanRejection.INVALID_GTIN_CHECK_DIGIT),
        ("(01)09506000134351(17)291200(10)ABC", ScanRejection.INVALID_GTIN_CHECK_DIGIT),
        ("5901234123458", ScanRejection.INVALID_GTIN_CHECK_DIGIT),
        ("]E05901234123457", ScanRejection.MISSING_LOT),
        ("]Q3" + "0109506000134352" + "10LOT7", ScanRejection.MISSING_EXPIRY),
        ("]d2" + "0109506000134352" + "17291200", ScanRejection.MISSING_LOT),
        ("]d2" + "0109506000134352" + "17290230" + "10LOT", ScanRejection.INVALID_EXPIRY),
        ("]d2" + "17291200" + "10LOT", ScanRejection.MISSING_GTIN),
        ("]C1P000123", ScanRejection.SYMBOLOGY_MISMATCH),
        ("]C0" + PACK, ScanRejection.UNRECOGNISED),
        ("hello", ScanRejection.UNRECOGNISED),
        ("P", ScanRejection.UNRECOGNISED),
        ("C12A", ScanRejection.UNRECOGNISED),
        ("", ScanRejection.EMPTY),
        ("]C0", ScanRejection.EMPTY),
    ],
)
def test_rejections_are_explicit(raw, reason):
    scan = classify_scan(raw)
    assert scan.rejection is reason
    assert not scan.accepted
    with pytest.raises(ScanRejected) as raised:
        scan.require_accepted()
    assert raised.value.reason == reason
    if reason is ScanRejection.INVALID_GTIN_CHECK_DIGIT:
        assert scan.gtin is None and scan.kind is ScanKind.MEDICINE_PACK


@pytest.mark.parametrize("separator", ["", "-", "a", "1", " ", "%"])
def test_separator_that_gs1_data_may_contain_is_refused(separator):
    with pytest.raises(ValueError):
        classify_scan("P000123", separator=separator)


@pytest.mark.parametrize("separator", ["|", "~", "#", "^]", "$", "@@"])
def test_separators_outside_gs1_set_are_accepted(separator):
    assert classify_scan("P000123", separator=separator).kind is ScanKind.PATIENT_CARD


@settings(database=None, deadline=None, max_examples=200)
@given(st.text(max_size=60), st.sampled_from([None, "|", "~"]))
def test_classifier_never_raises_and_never_accepts_without_a_kind(raw, separator):
    scan = classify_scan(raw, separator=separator)
    if scan.accepted:
        assert scan.kind is not ScanKind.UNKNOWN
    if scan.kind is ScanKind.MEDICINE_PACK and scan.accepted:
        assert scan.gtin and scan.lot and scan.expiry


@settings(database=None, deadline=None, max_examples=100)
@given(st.from_regex(r"P[0-9A-Z]{1,19}", fullmatch=True), st.sampled_from(["", "]C0", "]Q1"]))
def test_every_patient_code_round_trips(code, aim):
    scan = classify_scan(aim + code)
    assert (scan.kind, scan.value) == (ScanKind.PATIENT_CARD, code)


@pytest.mark.parametrize("raw", ["C٠١٢", "T１２３", "Pſ12", "P١٢٣"])
def test_non_ascii_lookalikes_are_not_our_codes(raw):
    # Unicode digits and letters whose upper case is ASCII must not pass as codes.
    scan = classify_scan(raw)
    assert scan.kind is ScanKind.UNKNOWN and not scan.accepted
