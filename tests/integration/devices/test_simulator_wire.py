"""The simulators on the wire, driven with raw pyserial (no driver code)."""

from __future__ import annotations

import binascii
import time

import serial

from devices.simulators import MtSicsSimulator, Ne1000Simulator, RegloSimulator


def exchange(port: serial.Serial, data: bytes, expect_end: bytes, timeout_s: float = 1.0) -> bytes:
    port.write(data)
    deadline = time.monotonic() + timeout_s
    reply = b""
    while not reply.endswith(expect_end) and time.monotonic() < deadline:
        reply += port.read(port.in_waiting or 1)
    return reply


def safe_frame(payload: bytes, crc: int) -> bytes:
    return bytes((0x02, len(payload) + 4)) + payload + crc.to_bytes(2, "big") + b"\x03"


def test_ne1000_manual_example_switches_to_basic_mode(clock):
    with Ne1000Simulator(clock=clock, power_on_alarm=False) as sim:
        with serial.serial_for_url(sim.port, baudrate=19200, timeout=0.05) as port:
            # The manual's literal packet: STX 0x08 "SAF0" 0x55 0x43 ETX.
            reply = exchange(port, b"\x02\x08SAF0\x55\x43\x03", b"\x03")
            assert reply[0] == 0x02 and b"00S" in reply
            assert not sim.safe_mode
            # Basic mode: spaces and case do not matter, reply is STX data ETX.
            assert exchange(port, b"00 ver\r", b"\x03") == b"\x0200SNE1000V3.928\x03"


def test_ne1000_bad_crc_gets_com_error_and_does_not_feed_watchdog(clock):
    with Ne1000Simulator(clock=clock, power_on_alarm=False) as sim:
        with serial.serial_for_url(sim.port, baudrate=19200, timeout=0.05) as port:
            reply = exchange(port, safe_frame(b"00VER", 0x0000), b"\x03")
            assert b"00S?COM" in reply
            assert not sim.watchdog_armed
            assert sim.commands == type(sim.commands)()


def test_ne1000_torn_packet_is_dropped_after_inter_byte_timeout(clock):
    with Ne1000Simulator(clock=clock, power_on_alarm=False) as sim:
        with serial.serial_for_url(sim.port, baudrate=19200, timeout=0.05) as port:
            port.write(b"\x02\x0900V")  # torn: three bytes short
            deadline = time.monotonic() + 1
            while not sim.receiving and time.monotonic() < deadline:
                time.sleep(0.001)
            assert sim.receiving
            clock.advance(0.6)  # more than the 0.5 s inter-byte timeout
            reply = exchange(port, safe_frame(b"00VER", binascii.crc_hqx(b"00VER", 0)), b"\x03")
            assert b"NE1000V3.928" in reply


def test_reglo_and_balance_answer_in_their_formats(clock):
    with RegloSimulator(clock=clock) as reglo, MtSicsSimulator(clock=clock) as balance:
        with serial.serial_for_url(reglo.port, timeout=0.05) as port:
            assert exchange(port, b"1#\r", b"\r\n") == b"REGLO ICC 0208 404\r\n"
            assert exchange(port, b"1v1200-2\r", b"*") == b"*"
            assert exchange(port, b"1v\r", b"\r\n") == b"1200-2\r\n"
            assert exchange(port, b"1H\r", b"-") == b"-"  # not in volume-at-rate mode yet
            assert exchange(port, b"1xe\r", b"\r\n") == b"R 3500+1\r\n"
        with serial.serial_for_url(balance.port, timeout=0.05) as port:
            assert exchange(port, b"I4\r\n", b"\r\n") == b'I4 A "B812345678"\r\n'
            assert exchange(port, b"XYZ\r\n", b"\r\n") == b"ES\r\n"
