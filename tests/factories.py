"""Small factories that flush rows for tests (no commit)."""

from __future__ import annotations

import itertools
from datetime import date

from sqlalchemy.orm import Session

from dispensing import accounts
from dispensing.models import Clinic, Role, User

_seq = itertools.count(1)
PASSWORD = "correct-horse-42"


def clinic(session: Session, **values) -> Clinic:
    n = next(_seq)
    row = Clinic(code=values.pop("code", f"CL{n:03d}"), name=values.pop("name", f"Phòng khám {n}"), **values)
    session.add(row)
    session.flush()
    return row


def user(session: Session, clinic: Clinic, *roles: Role, username: str | None = None, **values) -> User:
    n = next(_seq)
    extra = {}
    if Role.PHYSICIAN in roles:
        extra = {"practice_start_date": date(2015, 1, 1), "mmt_certificate_no": f"MMT-{n:04d}"}
    extra.update(values)
    return accounts.create_user(
        session,
        actor=None,
        clinic_id=clinic.id,
        username=username or f"{(roles[0].value if roles else 'user')}{n}",
        full_name=values.pop("full_name", f"Nguyễn Văn {n}"),
        password=PASSWORD,
        roles=set(roles),
        **{k: v for k, v in extra.items() if k in {"practice_start_date", "mmt_certificate_no"}},
    )


def methadone(session: Session, clinic: Clinic) -> tuple:
    """Return (product, lot, safe, pump_location) for liquid methadone 10 mg/ml."""
    from decimal import Decimal

    from dispensing.models import Location, LocationKind, Lot, Product, ProductKind

    n = next(_seq)
    product = Product(code=f"MET{n}", name="Methadone 10 mg/ml", kind=ProductKind.LIQUID, unit="ml",
                      controlled=True, active_ingredient="methadone hydrochloride")
    session.add(product)
    session.flush()
    lot = Lot(product_id=product.id, lot_number=f"L{n}", expiry_date=date(2030, 1, 31),
              concentration_mg_per_ml=Decimal("10"), density_g_per_ml=Decimal("1.04"))
    safe = Location(clinic_id=clinic.id, code=f"SAFE{n}", name="Két", kind=LocationKind.SAFE)
    pump = Location(clinic_id=clinic.id, code=f"PUMP{n}", name="Bơm", kind=LocationKind.PUMP)
    session.add_all([lot, safe, pump])
    session.flush()
    return product, lot, safe, pump


def patient(session: Session, clinic: Clinic, **values):
    from dispensing.models import Patient
    from dispensing.names import search_key

    n = next(_seq)
    name = values.pop("full_name", f"Trần Văn Bệnh {n}")
    row = Patient(clinic_id=clinic.id, code=values.pop("code", f"BN{n:05d}"),
                  card_barcode=values.pop("card_barcode", f"P{n:06d}"), full_name=name,
                  search_name=search_key(name), **values)
    session.add(row)
    session.flush()
    return row


def signed_order(session: Session, clinic: Clinic, patient_row, physician: User, mg="60", **values):
    from datetime import UTC, datetime
    from decimal import Decimal

    from dispensing.models import Order, OrderPart, OrderStatus, Phase

    order = Order(clinic_id=clinic.id, patient_id=patient_row.id, status=OrderStatus.SIGNED,
                  phase=values.pop("phase", Phase.MAINTENANCE), daily_total_mg=Decimal(mg),
                  valid_from=values.pop("valid_from", date(2026, 1, 1)),
                  valid_until=values.pop("valid_until", date(2026, 1, 30)),
                  created_by_id=physician.id, signed_by_id=physician.id,
                  signed_at=datetime(2025, 12, 31, 8, tzinfo=UTC),
                  parts=[OrderPart(part_no=1, dose_mg=Decimal(mg))], **values)
    session.add(order)
    session.flush()
    return order


def dose(session: Session, clinic: Clinic, patient_row, order, product, nurse: User, **values):
    import uuid
    from datetime import UTC, datetime
    from decimal import Decimal

    from dispensing.models import Dose, DoseKind, DoseState

    row = Dose(clinic_id=clinic.id, patient_id=patient_row.id, order_id=order.id,
               part_no=values.pop("part_no", 1), business_date=values.pop("business_date", date(2026, 1, 5)),
               kind=values.pop("kind", DoseKind.OBSERVED), state=values.pop("state", DoseState.COMPLETED),
               idempotency_key=uuid.uuid4().hex, product_id=product.id, planned_mg=Decimal("60"),
               planned_ml=Decimal("6.00"), delivered_ml=values.pop("delivered_ml", Decimal("6.00")),
               nurse_id=nurse.id, requested_at=datetime(2026, 1, 5, 0, 30, tzinfo=UTC), **values)
    session.add(row)
    session.flush()
    return row
