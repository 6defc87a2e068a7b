"""Transcript records, clocks and exact quantities."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from devices.clock import ScaledClock, SystemClock, VirtualClock
from devices.quantities import as_decimal, ml, round_ml
from devices.transcript import Transcript, TranscriptEntry


def test_transcript_records_hex_and_timezone_aware_times():
    clock = VirtualClock(datetime(2025, 3, 3, 1, 0, tzinfo=UTC))
    transcript = Transcript(clock)
    transcript.record("tx", "pump", b"\x02\x0700S\xaa\xa6\x03")
    clock.advance(0.25)
    transcript.record("rx", "pump", b"\x02\x07")
    transcript.record("rx", "pump", b"00S\xaa\xa6\x03")
    transcript.record("rx", "pump", b"")  # nothing read: nothing recorded

    document = json.loads(transcript.to_json())
    assert document[0] == {
        "at": "2025-03-03T01:00:00+00:00",
        "dir": "tx",
        "device": "pump",
        "hex": "0207303053aaa603",
    }
    assert document[1]["at"] == "2025-03-03T01:00:00.250000+00:00"
    assert len(document) == 3
    assert transcript.merged() == [
        ("tx", b"\x02\x0700S\xaa\xa6\x03"),
        ("rx", b"\x02\x0700S\xaa\xa6\x03"),
    ]
    assert Transcript.from_json(transcript.to_json()).entries == transcript.entries


def test_transcript_entry_refuses_naive_times_and_bad_direction():
    with pytest.raises(ValueError):
        TranscriptEntry.from_dict(
            {"at": "2025-03-03T01:00:00", "dir": "tx", "device": "p", "hex": "00"}
        )
    with pytest.raises(ValueError):
        TranscriptEntry.from_dict(
            {"at": "2025-03-03T01:00:00+00:00", "dir": "up", "device": "p", "hex": "00"}
        )


def test_clocks_are_timezone_aware_and_monotonic():
    for clock in (SystemClock(), ScaledClock(50), VirtualClock()):
        assert clock.now().tzinfo is not None
        before = clock.monotonic()
        clock.sleep(0.01)
        assert clock.monotonic() >= before
    virtual = VirtualClock()
    virtual.sleep(3600)
    assert virtual.monotonic() == 3600
    with pytest.raises(ValueError):
        virtual.advance(-1)
    with pytest.raises(ValueError):
        VirtualClock(datetime(2025, 1, 1))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError):
        ScaledClock(0)


def test_volumes_are_exact_decimals():
    assert ml("8.30") == Decimal("8.30")
    assert ml(5) == Decimal("5.00")
    assert round_ml(Decimal("8.305")) == Decimal("8.31")
    with pytest.raises(TypeError):
        ml(8.3)
    with pytest.raises(TypeError):
        ml(True)
    with pytest.raises(ValueError):
        ml("8.305")
    with pytest.raises(ValueError):
        ml("NaN")
    with pytest.raises(ValueError):
        as_decimal("eight")
