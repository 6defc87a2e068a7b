"""MT-SICS balance driver against the pty simulator."""

from __future__ import annotations

from decimal import Decimal

import pytest

from devices.errors import (
    BalanceOverload,
    BalanceUnderload,
    BalanceUnstable,
    NoReply,
    PortLost,
    ProtocolError,
    WrongUnit,
)
from devices.interfaces import Balance
from devices.simulators import ReplyFault
from devices.transcript import Transcript


def test_identifies_type_capacity_and_serial(balance):
    assert isinstance(balance, Balance)
    assert balance.identity.model == "XSR204 220 g"
    assert balance.identity.serial_number == "B812345678"
    assert balance.serial_number() == "B812345678"


def test_stable_weight_in_grams(balance, balance_sim):
    balance_sim.load_g = Decimal("12.3456")
    transcript = Transcript()
    with balance.recording(transcript):
        weighing = balance.stable_weight()
    assert weighing.grams == Decimal("12.346")
    assert weighing.stable and weighing.unit == "g"
    assert weighing.at.tzinfo is not None
    assert transcript.merged() == [("tx", b"S\r\n"), ("rx", b"S S     12.346 g\r\n")]


def test_tare_and_zero(balance, balance_sim):
    balance_sim.load_g = Decimal("5.000")
    balance.zero()
    balance_sim.load_g = Decimal("25.500")
    assert balance.tare() == Decimal("20.500")
    balance_sim.load_g = Decimal("27.250")
    assert balance.stable_weight().grams == Decimal("1.750")


def test_unstable_balance_is_refused_after_the_deadline(balance, balance_sim, clock):
    balance_sim.unstable = True
    started = clock.monotonic()
    with pytest.raises(BalanceUnstable):
        balance.stable_weight(timeout_s=2)
    assert 2 <= clock.monotonic() - started <= 2.5
    immediate = balance.immediate_weight()
    assert immediate.stable is False


def test_settling_balance_gives_stable_reading_once_settled(balance, balance_sim, clock):
    balance_sim.settle_s = Decimal("1.0")
    balance_sim.load_g = Decimal("3.000")
    weighing = balance.stable_weight(timeout_s=5)
    assert weighing.grams == Decimal("3.000")
    assert balance_sim.commands.count("S") > 1  # it had to ask again


def test_tare_waits_for_stability(balance, balance_sim):
    balance_sim.settle_s = Decimal("0.5")
    balance_sim.load_g = Decimal("8.000")
    assert balance.tare() == Decimal("8.000")
    assert balance_sim.commands.count("T") > 1


@pytest.mark.parametrize("unit", ["kg", "mg", "ct"])
def test_reading_not_in_grams_is_refused(balance, balance_sim, unit):
    balance_sim.unit = unit
    balance_sim.load_g = Decimal("1.000")
    with pytest.raises(WrongUnit):
        balance.stable_weight()
    with pytest.raises(WrongUnit):
        balance.immediate_weight()


def test_overload_and_underload(balance, balance_sim):
    balance_sim.load_g = Decimal("300")
    with pytest.raises(BalanceOverload):
        balance.stable_weight()
    balance_sim.load_g = Decimal("10")
    balance.zero()
    balance_sim.load_g = Decimal("0")  # pan removed after zeroing
    with pytest.raises(BalanceUnderload):
        balance.stable_weight()


def test_no_reply_then_recovery(balance, balance_sim):
    balance_sim.inject(ReplyFault.NO_REPLY, on="S", times=1)
    assert balance.stable_weight().grams == 0
    balance_sim.mute()
    with pytest.raises(NoReply):
        balance.stable_weight()


def test_slow_partial_and_garbage_replies_are_retried(balance, balance_sim):
    balance_sim.load_g = Decimal("1.500")
    balance_sim.inject(ReplyFault.SLOW_REPLY, on="S", times=1, delay_s=0.3)
    assert balance.stable_weight().grams == Decimal("1.500")
    balance_sim.inject(ReplyFault.PARTIAL_FRAME, on="S", times=1)
    assert balance.stable_weight().grams == Decimal("1.500")
    balance_sim.inject(ReplyFault.GARBAGE, on="S", times=1)
    assert balance.stable_weight().grams == Decimal("1.500")
    balance_sim.inject(ReplyFault.GARBAGE, on="S", times=None)
    with pytest.raises(ProtocolError):
        balance.stable_weight()


def test_reset_answers_serial_number(balance):
    assert balance.reset() == "B812345678"


def test_port_disappearing(balance, balance_sim):
    balance_sim.vanish()
    with pytest.raises(PortLost):
        balance.stable_weight()
