"""NE-1000 safe-mode codec: known frames, reply parsing, numbers, and properties."""

from __future__ import annotations

import binascii
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import OutOfRange, ProtocolError
from devices.ne1000_codec import (
    ETX,
    STX,
    BadCrcFrame,
    Discarded,
    Frame,
    FrameDecoder,
    crc_ccitt,
    encode_frame,
    format_number,
    parse_dispensed,
    parse_rate,
    parse_reply,
    parse_volume,
)
from devices.simulators.ne1000 import crc16_xmodem

PROPERTY = settings(database=None, deadline=None, max_examples=100)


def decode_all(data: bytes, chunk: int | None = None) -> list:
    decoder = FrameDecoder()
    if chunk is None:
        return decoder.feed(data)
    out = []
    for start in range(0, len(data), chunk):
        out.extend(decoder.feed(data[start : start + chunk]))
    return out


# -- examples --------------------------------------------------------------------------------


def test_saf0_frame_matches_the_manual():
    # "To return the pump to Basic mode ... send (0x2)(0x8)SAF0(0x55)(0x43)(0x3)"
    assert encode_frame(b"SAF0") == b"\x02\x08SAF0\x55\x43\x03"


def test_crc_is_xmodem_check_value():
    assert crc_ccitt(b"123456789") == 0x31C3


def test_decode_single_frame():
    assert decode_all(b"\x02\x0700S\xaa\xa6\x03") == [Frame(b"00S")]


def test_noise_before_frame_is_discarded_and_frame_kept():
    out = decode_all(b"\xff\x00noise" + encode_frame(b"00S"))
    assert out == [Discarded(b"\xff\x00noise"), Frame(b"00S")]


def test_torn_frame_followed_by_good_frame():
    torn = encode_frame(b"00II1.000W0.000ML")[:7]
    out = decode_all(torn + encode_frame(b"00S"))
    assert out[-1] == Frame(b"00S")
    assert all(isinstance(item, Discarded) for item in out[:-1])


def test_stray_stx_with_large_length_does_not_swallow_next_frame():
    out = decode_all(b"\x02\x41junk" + encode_frame(b"00S"))
    assert out[-1] == Frame(b"00S")


def test_partial_frame_waits_for_more_bytes():
    decoder = FrameDecoder()
    frame = encode_frame(b"00S")
    assert decoder.feed(frame[:4]) == []
    assert decoder.pending == frame[:4]
    assert decoder.feed(frame[4:]) == [Frame(b"00S")]
    assert decoder.pending == b""


def test_bad_crc_is_reported_not_dropped_silently():
    frame = bytearray(encode_frame(b"00S"))
    frame[-2] ^= 0x01
    (item,) = decode_all(bytes(frame))
    assert isinstance(item, BadCrcFrame) and item.payload == b"00S"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"00S", (0, "S", None, None, "")),
        (b"00II1.250W0.000ML", (0, "I", None, None, "I1.250W0.000ML")),
        (b"07A?S", (7, None, "S", None, "")),
        (b"00A?T", (0, None, "T", None, "")),
        (b"00S?OOR", (0, "S", None, "OOR", "")),
        (b"00S?", (0, "S", None, "", "")),
        (b"00SNE1000V3.928", (0, "S", None, None, "NE1000V3.928")),
    ],
)
def test_parse_reply(payload, expected):
    reply = parse_reply(payload)
    assert (reply.address, reply.prompt, reply.alarm, reply.error, reply.data) == expected


@pytest.mark.parametrize("payload", [b"", b"S", b"0S", b"00Z", b"00A?Q", b"00S?XYZ", b"\xff\xfe"])
def test_parse_reply_rejects_garbage(payload):
    with pytest.raises(ProtocolError):
        parse_reply(payload)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("5", "5.00"),
        ("2.00", "2.00"),
        ("12.34", "12.34"),
        ("0.5", "0.50"),
        ("0.125", "0.125"),
        ("99.99", "99.99"),
        ("123.4", "123.4"),
        ("1234", "1234"),
        ("26.70", "26.70"),
    ],
)
def test_format_number(value, text):
    assert format_number(Decimal(value)) == text


@pytest.mark.parametrize("value", ["123.45", "12345", "-1", "0.0001", "9999.5"])
def test_format_number_refuses_instead_of_rounding(value):
    with pytest.raises(OutOfRange):
        format_number(Decimal(value))


def test_parse_volume_and_dispensed_and_rate():
    assert parse_volume("5.000ML") == Decimal("5.000")
    assert parse_volume("500.0UL") == Decimal("0.5")
    assert parse_dispensed("I1.250W0.000ML") == (Decimal("1.250"), Decimal("0.000"))
    assert parse_dispensed("I1250W0UL") == (Decimal("1.25"), Decimal(0))
    assert parse_rate("30.00MM") == Decimal("30.00")
    assert parse_rate("60MH") == Decimal(1)
    for bad in ("", "5.000", "ML", "I1.0W", "IW0ML", "5,0ML"):
        with pytest.raises(ProtocolError):
            parse_volume(bad) if "I" not in bad else parse_dispensed(bad)


# -- properties ---------------------------------------------------------------------------------

payloads = st.binary(min_size=1, max_size=251)


@PROPERTY
@given(payloads, st.integers(min_value=1, max_value=40))
def test_encode_decode_round_trip_in_any_chunking(payload, chunk):
    assert decode_all(encode_frame(payload), chunk) == [Frame(payload)]


@PROPERTY
@given(
    st.lists(payloads, min_size=1, max_size=5),
    st.binary(max_size=20).filter(lambda b: STX not in b),
)
def test_frames_after_noise_all_decode(frames, noise):
    data = noise + b"".join(encode_frame(p) for p in frames)
    decoded = [item for item in decode_all(data, 3) if not isinstance(item, Discarded)]
    assert decoded == [Frame(p) for p in frames]


@PROPERTY
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_random_bytes_never_crash_and_only_valid_frames_come_out(data, chunk):
    for item in decode_all(data, chunk):
        assert isinstance(item, Frame | BadCrcFrame | Discarded)
        if isinstance(item, Frame):
            assert binascii.crc_hqx(item.payload, 0) is not None
            # Whatever random bytes produced it, a Frame re-encodes to itself.
            assert encode_frame(item.payload) in data


@PROPERTY
@given(st.binary(max_size=200))
def test_reply_parser_never_crashes(data):
    try:
        parse_reply(data)
    except ProtocolError:
        pass


@PROPERTY
@given(payloads, st.data())
def test_any_single_byte_corruption_of_payload_or_crc_is_detected(payload, data):
    frame = bytearray(encode_frame(payload))
    # Positions 2..len-2 are payload and CRC; STX, length and ETX are framing.
    index = data.draw(st.integers(min_value=2, max_value=len(frame) - 2))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    frame[index] ^= flip
    out = decode_all(bytes(frame))
    assert not any(isinstance(item, Frame) for item in out)
    assert any(isinstance(item, BadCrcFrame) for item in out)


@PROPERTY
@given(payloads, st.data())
def test_any_burst_of_up_to_16_bits_is_detected(payload, data):
    frame = bytearray(encode_frame(payload))
    start = data.draw(st.integers(min_value=2, max_value=len(frame) - 3))
    pattern = data.draw(st.integers(min_value=1, max_value=0xFFFF))
    frame[start] ^= pattern >> 8
    frame[start + 1] ^= pattern & 0xFF
    if bytes(frame) == encode_frame(payload):
        return
    assert not any(
        isinstance(item, Frame) and item.payload == payload for item in decode_all(bytes(frame))
    )


@PROPERTY
@given(st.binary(max_size=64))
def test_simulator_crc_agrees_with_driver_crc(data):
    # Two independent implementations (bitwise vs binascii) of the same CRC.
    assert crc16_xmodem(data) == crc_ccitt(data)


@PROPERTY
@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2))
def test_format_number_round_trips_every_dose_volume(volume):
    text = format_number(volume)
    assert Decimal(text) == volume
    assert len(text.replace(".", "")) <= 4


def test_frame_bytes_constants():
    assert (STX, ETX) == (0x02, 0x03)
