"""Head of unit pages (trưởng đơn vị): the anomaly records (biên bản bất thường) of receipts that
wait for the countersignature, each with its receipt, bottle, kind, description, the deliverer and
the receiver's signature, countersigned with the password re-entered; and, read-only, what is held
in quarantine. Pharmacists see the same page read-only (they cannot countersign).

The quarantine decision itself is the pharmacist's form (``pharmacy.quarantine``), co-signed there
by the head of unit with username and password. Every signature is a service use case
(``stock.countersign_anomaly``) that checks the role and the password again and commits; a refused
signature comes back on the page with its reason, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispensing import stock
from dispensing.errors import DomainError, ValidationFailed
from dispensing.models import (
    Container,
    Location,
    Lot,
    Product,
    QuarantineOutcome,
    Receipt,
    ReceiptAnomaly,
    ReceiptLine,
    Role,
    StockMovement,
    User,
)
from dispensing.permissions import can_sign_as_unit_head
from web import context
from web.auth import role_required
from web.database import db, writer
from web.errors import message_for
from web.navigation import register
from web.pharmacy import ANOMALY_LABELS, LOCATION_KIND_LABELS

bp = Blueprint("unit_head", __name__, url_prefix="/unit-head")

register("unit_head.anomalies", lazy_gettext("Anomaly records"), Role.UNIT_HEAD, order=40)

OUTCOME_LABELS = {
    QuarantineOutcome.RELEASE: lazy_gettext("Release to a safe"),
    QuarantineOutcome.RETURN_TO_SUPPLIER: lazy_gettext("Keep for return to the supplier"),
    QuarantineOutcome.DESTRUCTION: lazy_gettext("Keep for destruction"),
}
RECENT_SIGNED = 10


@dataclass
class AnomalyView:
    """One anomaly record with what the page shows next to it."""

    anomaly: ReceiptAnomaly
    receipt: Receipt
    received_into: Location | None
    lot: Lot | None
    container: Container | None
    # What the ledger line of the receipt booked for this bottle (None: a delivery-level record).
    received_quantity: Decimal | None
    receiver: str
    unit_head: str


def anomaly_views(session: Session, anomalies: list[ReceiptAnomaly]) -> list[AnomalyView]:
    """Return the records with their receipt, lot, bottle and signers, loaded in a few queries."""
    if not anomalies:
        return []
    lot_ids = {a.lot_id for a in anomalies if a.lot_id}
    container_ids = {a.container_id for a in anomalies if a.container_id}
    lots = {lot.id: lot for lot in session.scalars(select(Lot).where(Lot.id.in_(lot_ids)))} if lot_ids else {}
    containers, quantities = {}, {}
    if container_ids:
        containers = {c.id: c for c in session.scalars(select(Container).where(Container.id.in_(container_ids)))}
        quantities = dict(session.execute(
            select(ReceiptLine.container_id, StockMovement.quantity)
            .join(StockMovement, StockMovement.id == ReceiptLine.movement_id)
            .where(ReceiptLine.container_id.in_(container_ids))).all())
    people_ids = {a.receiver_id for a in anomalies} | {a.unit_head_id for a in anomalies if a.unit_head_id}
    people = {u.id: u.full_name for u in session.scalars(select(User).where(User.id.in_(people_ids)))}
    location_ids = {a.receipt.location_id for a in anomalies}
    locations = {loc.id: loc for loc in session.scalars(select(Location).where(Location.id.in_(location_ids)))}
    return [
        AnomalyView(
            anomaly=a, receipt=a.receipt, received_into=locations.get(a.receipt.location_id),
            lot=lots.get(a.lot_id) if a.lot_id else None,
            container=containers.get(a.container_id) if a.container_id else None,
            received_quantity=quantities.get(a.container_id) if a.container_id else None,
            receiver=people.get(a.receiver_id, ""), unit_head=people.get(a.unit_head_id, "") if a.unit_head_id else "",
        )
        for a in anomalies
    ]


def lot_units(session: Session, lot_ids: set[int]) -> dict[int, str]:
    """Return {lot id: the product's unit (ml, tablet)} for showing quantities."""
    if not lot_ids:
        return {}
    return dict(session.execute(select(Lot.id, Product.unit).join(Product, Product.id == Lot.product_id)
                                .where(Lot.id.in_(lot_ids))).all())


def _render(user: User, *, errors: dict[int, str] | None = None, status: int = 200):
    session = db()
    pending = list(session.scalars(select(ReceiptAnomaly).where(
        ReceiptAnomaly.clinic_id == user.clinic_id, ReceiptAnomaly.unit_head_id.is_(None)).order_by(ReceiptAnomaly.id)))
    signed = list(session.scalars(select(ReceiptAnomaly).where(
        ReceiptAnomaly.clinic_id == user.clinic_id, ReceiptAnomaly.unit_head_id.is_not(None))
        .order_by(ReceiptAnomaly.unit_head_signed_at.desc(), ReceiptAnomaly.id.desc()).limit(RECENT_SIGNED)))
    errors = errors or {}
    # A refusal about a record no longer waiting (already countersigned, unknown) shows at the top.
    pending_ids = {a.id for a in pending}
    top_error = next((text for anomaly_id, text in errors.items() if anomaly_id not in pending_ids), None)
    quarantined = stock.quarantined_items(session, clinic_id=user.clinic_id)
    quarantine_names = {loc.id: loc.name for loc in session.scalars(
        select(Location).where(Location.id.in_({item.location_id for item in quarantined})))} if quarantined else {}
    pending_views, signed_views = anomaly_views(session, pending), anomaly_views(session, signed)
    units = lot_units(session, {item.lot_id for item in quarantined} | {v.lot.id for v in pending_views if v.lot})
    return render_template(
        "unit_head/anomalies.html", units=units, pending=pending_views, signed=signed_views,
        quarantined=quarantined, quarantine_names=quarantine_names, can_sign=can_sign_as_unit_head(user),
        is_pharmacist=user.has_role(Role.PHARMACIST), errors=errors, top_error=top_error, anomaly_labels=ANOMALY_LABELS,
        outcome_labels=OUTCOME_LABELS, location_kind_labels=LOCATION_KIND_LABELS,
    ), status


@bp.get("/anomalies", endpoint="anomalies")
@role_required(Role.UNIT_HEAD, Role.PHARMACIST)
def anomalies():
    return _render(context.actor())[0]


@bp.post("/anomalies/<int:anomaly_id>/countersign")
@role_required(Role.UNIT_HEAD, Role.PHARMACIST)
def countersign(anomaly_id: int):
    """Countersign one record with the password re-entered. The service refuses anyone who is not
    an active head of unit of the clinic (a pharmacist sees why on the page), the receiver, a
    record already countersigned, and a wrong password; nothing is written then."""
    user = context.actor()
    try:
        password = request.form.get("password") or ""
        if not password:
            raise ValidationFailed("password", code="SIGNATURE_PASSWORD_REQUIRED")
        row = stock.countersign_anomaly(writer(), user, anomaly_id, password=password)
    except DomainError as exc:
        db().rollback()
        code = str(exc.params.get("code") or exc.code)
        return _render(user, errors={anomaly_id: message_for(code)},
                       status=exc.status if 400 <= exc.status < 500 else 400)
    flash(gettext("Anomaly record of receipt %(no)s countersigned.", no=row.receipt.delivery_note_no), "info")
    return redirect(url_for("unit_head.anomalies"))
