"""Reglo ICC number format and MT-SICS reply parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import CommandRejected, OutOfRange, ProtocolError
from devices.mtsics import parse_line
from devices.reglo import decode_volume, encode_volume
from devices.simulators.reglo import _mmmmse, _parse_mmmmse

PROPERTY = settings(database=None, deadline=None, max_examples=100)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.012", "1200-2"),
        ("5.00", "5000+0"),
        ("12.34", "1234+1"),
        ("0.5", "5000-1"),
        ("100", "1000+2"),
        ("0", "0000+0"),
    ],
)
def test_reglo_volume_format(value, text):
    assert encode_volume(Decimal(value)) == text
    assert decode_volume(text) == Decimal(value)


@pytest.mark.parametrize("value", ["123.45", "1.2345", "-1", "1E+12"])
def test_reglo_refuses_unrepresentable(value):
    with pytest.raises(OutOfRange):
        encode_volume(Decimal(value))


@pytest.mark.parametrize("text", ["", "1200", "12a0-2", "1200*2", "1200-22", "1.200E-2", " 1200-2"])
def test_reglo_decode_rejects_anything_else(text):
    with pytest.raises(ProtocolError):
        decode_volume(text)


@PROPERTY
@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2))
def test_reglo_round_trip_and_agrees_with_simulator(volume):
    text = encode_volume(volume)
    assert decode_volume(text) == volume
    # The simulator's own formatter and parser, written separately, agree.
    assert _mmmmse(volume) == text
    assert _parse_mmmmse(text) == volume


@PROPERTY
@given(st.text(max_size=12))
def test_reglo_decoder_never_crashes(text):
    try:
        decode_volume(text)
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("S S      100.00 g", ("S", "S", Decimal("100.00"), "g")),
        ("S D     -0.012 g", ("S", "D", Decimal("-0.012"), "g")),
        ("S S 12.5 kg", ("S", "S", Decimal("12.5"), "kg")),
        ("T S       20.500 g", ("T", "S", Decimal("20.500"), "g")),
        ("S I", ("S", "I", None, None)),
        ("S +", ("S", "+", None, None)),
        ("Z A", ("Z", "A", None, None)),
    ],
)
def test_mtsics_lines(line, expected):
    reply = parse_line(line)
    assert (reply.command, reply.status, reply.value, reply.unit) == expected


def test_mtsics_identification_and_errors():
    assert parse_line('I4 A "B812345678"').text == "B812345678"
    assert parse_line('I2 A "XSR204 220 g"').text == "XSR204 220 g"
    for code in ("ES", "ET", "EL"):
        with pytest.raises(CommandRejected) as raised:
            parse_line(code)
        assert raised.value.code == code
    for bad in ("", "S", "S S", "S X 1.0 g", "S S 1,0 g", "hello"):
        with pytest.raises(ProtocolError):
            parse_line(bad)


@PROPERTY
@given(st.text(max_size=40))
def test_mtsics_parser_never_crashes(text):
    try:
        parse_line(text)
    except (ProtocolError, CommandRejected):
        pass
