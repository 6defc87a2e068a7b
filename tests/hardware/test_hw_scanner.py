"""Real serial barcode scanner: scan the code named by MMT_HW_SCANNER_EXPECT."""

from __future__ import annotations

import pytest

from devices.scanner import SerialScanner

pytestmark = pytest.mark.hardware


def test_scan_arrives_classified(hw):
    port = hw.text("MMT_HW_SCANNER_PORT")
    expected = hw.text("MMT_HW_SCANNER_EXPECT")
    scanner = SerialScanner.connect(port, device_id="hw/scanner")
    try:
        scan = scanner.read_scan(30)
    finally:
        scanner.close()
    assert scan is not None, "nothing scanned within 30 s"
    assert scan.value == expected
    assert scan.accepted, scan.rejection
