"""The morning forecast: the volume each pump needs today and the bottles to bring from the safe.

Today's total comes from the orders in force (daily total ÷ the lot's concentration); it is split
between the pumps by their share of what they dispensed over the last two weeks (evenly without
history), plus each pump's average priming, calibration and spill liquid. What the pump already
holds is subtracted; the shortfall is covered by whole bottles, first-expiry first.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing.jobs.plans import dosing_orders_on
from dispensing.jobs.runs import JobContext
from dispensing.models import (
    Device,
    Location,
    LocationKind,
    Lot,
    Product,
    ProductKind,
    StockForecast,
    StockMovement,
)
from dispensing.stock.ledger import ZERO, Term, balance, location_terms
from dispensing.stock.movements import open_attachment, suggest_bottles

HISTORY_DAYS = 14
ML = Decimal("0.01")


def _pump_product(session: Session, pump: Location, liquids: list[Product]) -> Product | None:
    attachment = open_attachment(session, pump.id)
    if attachment is not None:
        return session.get(Product, attachment.container.lot.product_id)
    last = session.scalar(
        select(StockMovement.product_id).where(StockMovement.to_location_id == pump.id)
        .order_by(StockMovement.id.desc()).limit(1)
    )
    return session.get(Product, last) if last else (liquids[0] if liquids else None)


def morning_forecast(session: Session, ctx: JobContext) -> dict:
    clinic, day = ctx.clinic, ctx.business_date
    pumps = session.scalars(
        select(Location).where(Location.clinic_id == clinic.id, Location.kind == LocationKind.PUMP,
                               Location.active.is_(True)).order_by(Location.id)
    ).all()
    liquids = session.scalars(
        select(Product).where(Product.kind == ProductKind.LIQUID, Product.controlled.is_(True)).order_by(Product.id)
    ).all()
    by_product: dict[int, list[Location]] = {}
    for pump in pumps:
        product = _pump_product(session, pump, liquids)
        if product is not None:
            by_product.setdefault(product.id, []).append(pump)
    orders = dosing_orders_on(session, clinic.id, day)
    planned_mg = sum((order.daily_total_mg for order in orders.values()), Decimal(0))
    written = []
    for product_id, product_pumps in by_product.items():
        bottles = suggest_bottles(session, clinic_id=clinic.id, product_id=product_id, day=day)
        concentration = _concentration(session, product_id, product_pumps, bottles)
        planned_ml = (planned_mg / concentration) if concentration else ZERO
        history = {
            pump.id: location_terms(session, location_id=pump.id, product_id=product_id,
                                    first=day - timedelta(days=HISTORY_DAYS), last=day - timedelta(days=1))
            for pump in product_pumps
        }
        dispensed = sum((terms[Term.ISSUED] for terms in history.values()), ZERO)
        taken: set[int] = set()
        for pump in product_pumps:
            share = (history[pump.id][Term.ISSUED] / dispensed) if dispensed > 0 else Decimal(1) / len(product_pumps)
            allowance = history[pump.id][Term.WASTE] / HISTORY_DAYS
            needed = (planned_ml * share + allowance).quantize(ML, rounding=ROUND_UP)
            on_hand = balance(session, location_id=pump.id, product_id=product_id, end_of=day)
            shortfall = max(ZERO, needed - on_hand)
            chosen, covered = [], ZERO
            for bottle in bottles:
                if covered >= shortfall:
                    break
                if bottle.container_id in taken:
                    continue
                taken.add(bottle.container_id)
                chosen.append(bottle.label_code)
                covered += bottle.balance
            counter_id = session.scalar(select(Device.counter_id).where(Device.id == pump.device_id)) \
                if pump.device_id else None
            row = session.scalar(select(StockForecast).where(
                StockForecast.location_id == pump.id, StockForecast.product_id == product_id,
                StockForecast.business_date == day))
            if row is None:
                row = StockForecast(clinic_id=clinic.id, location_id=pump.id, product_id=product_id,
                                    business_date=day)
                session.add(row)
            row.counter_id = counter_id
            row.needed = needed
            row.on_hand = on_hand
            row.shortfall = shortfall
            row.bottles = chosen
            row.detail = {"planned_ml_clinic": str(planned_ml.quantize(ML)), "share": str(share.quantize(
                Decimal("0.0001"))), "allowance_ml": str(allowance.quantize(ML)), "patients": len(orders),
                "concentration_mg_per_ml": str(concentration) if concentration else None}
            written.append(row)
    session.flush()
    return {"pumps": len(written), "patients": len(orders)}


def _concentration(session, product_id, pumps, bottles) -> Decimal | None:
    for pump in pumps:
        attachment = open_attachment(session, pump.id)
        if attachment is not None and attachment.container.lot.concentration_mg_per_ml:
            return attachment.container.lot.concentration_mg_per_ml
    if bottles:
        return session.get(Lot, bottles[0].lot_id).concentration_mg_per_ml
    return session.scalar(
        select(Lot.concentration_mg_per_ml).where(Lot.product_id == product_id,
                                                  Lot.concentration_verified_at.is_not(None)).limit(1)
    )
