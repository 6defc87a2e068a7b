"""Serial barcode scanner driver against the simulated scanner."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from devices.errors import PortLost
from devices.interfaces import Scanner
from devices.scan import LabelType, ScanKind
from devices.scanner import ScannerSettings, SerialScanner
from devices.simulators import ScannerSimulator


def test_scans_are_classified_with_symbology(scanner, scanner_sim):
    assert isinstance(scanner, Scanner)
    scanner_sim.emit("P000123")
    scanner_sim.emit("T000017")
    scanner_sim.emit("010950600013435217291200102A\x1d21XYZ", symbology="]d2")

    card = scanner.read_scan(1)
    label = scanner.read_scan(1)
    pack = scanner.read_scan(1)

    assert (card.kind, card.value, card.symbology) == (ScanKind.PATIENT_CARD, "P000123", "]C0")
    assert (label.kind, label.label_type) == (ScanKind.CONTAINER_LABEL, LabelType.TAKE_HOME)
    assert pack.kind is ScanKind.MEDICINE_PACK and pack.accepted
    assert (pack.gtin, pack.lot, pack.expiry, pack.serial) == (
        "09506000134352",
        "2A",
        date(2029, 12, 31),
        "XYZ",
    )


def test_no_scan_within_timeout(scanner):
    assert scanner.read_scan(0.05) is None


def test_blank_lines_and_lf_only_terminators(scanner, scanner_sim):
    scanner_sim.emit_raw(b"\r\n\n]C0C000045\n")
    scan = scanner.read_scan(1)
    assert (scan.kind, scan.label_type, scan.value) == (
        ScanKind.CONTAINER_LABEL,
        LabelType.BOTTLE,
        "C000045",
    )


def test_scan_split_across_reads(scanner, scanner_sim):
    scanner_sim.emit_raw(b"]C0P0")
    assert scanner.read_scan(0.05) is None
    scanner_sim.emit_raw(b"00999\r\n")
    assert scanner.read_scan(1).value == "P000999"


def test_invalid_pack_is_rejected_not_guessed(scanner, scanner_sim):
    scanner_sim.emit("010950600013435117291200102A", symbology="]d2")
    scan = scanner.read_scan(1)
    assert scan.kind is ScanKind.MEDICINE_PACK
    assert not scan.accepted and scan.rejection == "INVALID_GTIN_CHECK_DIGIT"


def test_scanner_without_aim_ids(clock):
    with ScannerSimulator(clock=clock, aim_ids=False) as sim:
        scanner = SerialScanner.connect(sim.port, ScannerSettings())
        sim.emit("P000123")
        scan = scanner.read_scan(1)
        scanner.close()
    assert scan.symbology is None and scan.kind is ScanKind.PATIENT_CARD


def test_scans_iterator_stops_on_close(scanner, scanner_sim):
    received = []

    def consume():
        for scan in scanner.scans():
            received.append(scan.value)

    thread = threading.Thread(target=consume)
    thread.start()
    scanner_sim.emit("P000001")
    scanner_sim.emit("P000002")
    deadline = threading.Event()
    for _ in range(100):
        if len(received) == 2:
            break
        deadline.wait(0.01)
    scanner.close()
    thread.join(timeout=2)
    assert received == ["P000001", "P000002"]
    assert not thread.is_alive()


def test_unplugged_scanner_raises_port_lost(scanner, scanner_sim):
    scanner_sim.vanish()
    with pytest.raises(PortLost):
        scanner.read_scan(0.5)
