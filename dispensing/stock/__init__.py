"""Controlled-drug stock: receipts, movements, the ledger and the end-of-day reconciliation.

Use cases (each begins its own write transaction, checks the role, signs and commits):
``receive_delivery``, ``countersign_anomaly``, ``verify_lot_concentration``, ``attach_container``,
``detach_container``, ``transfer_stock``, ``record_waste``, ``record_priming``,
``record_calibration_liquid``, ``return_to_supplier``, ``destroy_stock``, ``correct_movement``,
``decide_quarantine`` (release, or keep for return / destruction), ``close_day``.

Building blocks for the dose path, called inside its own transaction (they neither begin nor
commit): ``dispensing_source`` at authorisation, ``book_dose`` with the final state,
``book_priming`` and ``book_calibration_liquid`` from the pump and calibration services.

Reading: ``balance``, ``item_balances``, ``worksheet``, ``preview_close``, ``suggest_bottles``,
``quarantined_items``.
"""

from dispensing.stock.ledger import Term, Terms, balance, item_balances, location_terms
from dispensing.stock.movements import (
    BottleSuggestion,
    DestructionItem,
    DispensingSource,
    attach_container,
    book_calibration_liquid,
    book_dose,
    book_priming,
    correct_movement,
    destroy_stock,
    detach_container,
    dispensing_source,
    open_attachment,
    record_calibration_liquid,
    record_priming,
    record_waste,
    return_to_supplier,
    suggest_bottles,
    transfer_stock,
)
from dispensing.stock.quarantine import QuarantinedItem, decide_quarantine, quarantined_items
from dispensing.stock.receipts import (
    AnomalyIn,
    BottleIn,
    DeliveryIn,
    LotIn,
    ReceiptResult,
    countersign_anomaly,
    receive_delivery,
    verify_lot_concentration,
)
from dispensing.stock.reconciliation import (
    ClosePreview,
    Measurement,
    Worksheet,
    close_day,
    open_worksheets,
    preview_close,
    worksheet,
)
from dispensing.stock.signatures import Cosigner

__all__ = [
    "AnomalyIn",
    "BottleIn",
    "BottleSuggestion",
    "ClosePreview",
    "Cosigner",
    "DeliveryIn",
    "DestructionItem",
    "DispensingSource",
    "LotIn",
    "Measurement",
    "QuarantinedItem",
    "ReceiptResult",
    "Term",
    "Terms",
    "Worksheet",
    "attach_container",
    "balance",
    "book_calibration_liquid",
    "book_dose",
    "book_priming",
    "close_day",
    "correct_movement",
    "countersign_anomaly",
    "decide_quarantine",
    "destroy_stock",
    "detach_container",
    "dispensing_source",
    "item_balances",
    "location_terms",
    "open_attachment",
    "open_worksheets",
    "preview_close",
    "quarantined_items",
    "receive_delivery",
    "record_calibration_liquid",
    "record_priming",
    "record_waste",
    "return_to_supplier",
    "suggest_bottles",
    "transfer_stock",
    "verify_lot_concentration",
    "worksheet",
]
