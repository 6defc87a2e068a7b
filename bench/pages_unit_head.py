"""Head of unit and quarantine pages: the anomaly records waiting for the countersignature (the unit
head's page, and the pharmacist's read-only view of it) and the pharmacist's quarantine page.

The demo clinic has no anomaly at receipt, so the first of these pages measured receives one
delivery through the services (as ``duocsi1``): four short bottles booked into quarantine with their
anomaly records, two of them countersigned by ``truongdonvi`` and one of those kept for destruction;
every section of both pages then has rows.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.pages import register

NOTE_NO = "BENCH-QUARANTINE"


def _with_anomalies(session: Session) -> None:
    from dispensing import stock
    from dispensing.clock import business_date, utcnow
    from dispensing.demo import DEMO_PASSWORD
    from dispensing.models import (
        AnomalyKind,
        Clinic,
        Location,
        LocationKind,
        Product,
        Receipt,
        User,
    )

    if session.scalar(select(Receipt.id).where(Receipt.delivery_note_no == NOTE_NO)):
        return
    pharmacist = session.scalar(select(User).where(User.username == "duocsi1"))
    head = session.scalar(select(User).where(User.username == "truongdonvi"))
    safe = session.scalar(select(Location).where(Location.kind == LocationKind.SAFE).order_by(Location.id))
    methadone = session.scalar(select(Product).where(Product.unit == "ml").order_by(Product.id))
    now = utcnow()
    today = business_date(now, session.get(Clinic, pharmacist.clinic_id).timezone)
    short = [stock.BottleIn(quantity=Decimal(990 - i), nominal=Decimal(1000), anomaly=stock.AnomalyIn(
        AnomalyKind.SHORT_VOLUME, f"Thiếu {10 + i} ml so với nhãn")) for i in range(4)]
    lot = stock.LotIn(product_id=methadone.id, lot_number="BENCH-Q1", expiry_date=today + timedelta(days=400),
                      bottles=tuple(short), concentration_mg_per_ml=Decimal(10), density_g_per_ml=Decimal("1.04"),
                      concentration_verified=True)
    result = stock.receive_delivery(session, pharmacist, stock.DeliveryIn(
        location_id=safe.id, supplier="CTCP Dược Danapha", delivery_note_no=NOTE_NO,
        deliverer_name="Nguyễn Văn Giao", lots=(lot,)), password=DEMO_PASSWORD, now=now)
    for anomaly in result.anomalies[:2]:
        stock.countersign_anomaly(session, head, anomaly.id, password=DEMO_PASSWORD, now=now)
    stock.decide_quarantine(session, pharmacist, outcome="destruction", reason="Chai nứt", password=DEMO_PASSWORD,
                            unit_head=stock.Cosigner(head.username, DEMO_PASSWORD),
                            container_id=result.quarantined[0].id, now=now)


def _page(path: str):
    def prepared(session: Session) -> str:
        _with_anomalies(session)
        return path
    return prepared


register("unit head: anomaly records to countersign", "truongdonvi", _page("/unit-head/anomalies"))
register("unit head: anomaly records (pharmacist, read-only)", "duocsi1", _page("/unit-head/anomalies"))
register("unit head: quarantine decisions (pharmacist)", "duocsi1", _page("/pharmacy/quarantine"))
