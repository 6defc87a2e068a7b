"""Registers read from the ledger: the daily dispensing register, the receipts/issues/stock register
of a controlled drug, and one patient's dose history. Every total is a sum of ledger lines
(corrections included, with their sign), so it equals the ledger to the last 0.001.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from dispensing.errors import NotFound, ValidationFailed
from dispensing.models import (
    Clinic,
    DestructionRecord,
    Dose,
    DoseKind,
    DoseState,
    Location,
    Lot,
    MovementKind,
    Patient,
    Product,
    Receipt,
    Role,
    StockMovement,
    User,
)
from dispensing.permissions import require_role
from dispensing.reports.documents import (
    Column,
    ColumnKind,
    ReportDocument,
    format_date,
    format_time,
    place_and_date,
)
from dispensing.stock.ledger import (
    PATIENT_KINDS,
    ZERO,
    Term,
    balance,
    clinic_terms_by_day,
    sum_terms,
)
from dispensing.stock.signatures import require_same_clinic

Q = ColumnKind.QUANTITY
MAX_RANGE_DAYS = 366
KIND_NAMES = {
    MovementKind.DOSE: "Uống tại chỗ",
    MovementKind.TAKE_HOME: "Mang về",
    MovementKind.REPLACEMENT: "Liều bù",
}
DOSE_KIND_NAMES = {
    DoseKind.OBSERVED: "Uống tại chỗ",
    DoseKind.TAKE_HOME: "Mang về",
    DoseKind.REPLACEMENT: "Liều bù",
    DoseKind.COMPLETION: "Cấp bổ sung",
}
DOSE_STATE_NAMES = {
    DoseState.REQUESTED: "Đã yêu cầu",
    DoseState.PROGRAMMED: "Đã cài bơm",
    DoseState.RUNNING: "Đang cấp",
    DoseState.COMPLETED: "Hoàn tất",
    DoseState.PARTIAL: "Cấp một phần",
    DoseState.FAILED: "Thất bại",
    DoseState.UNKNOWN: "Chưa rõ",
}
STOCK_READERS = (Role.PHARMACIST, Role.PHYSICIAN, Role.ADMIN)


def _clinic(session: Session, user: User) -> Clinic:
    return session.get(Clinic, user.clinic_id)


def _product(session: Session, product_id: int | None) -> Product:
    product = None
    if product_id is not None:
        product = session.get(Product, product_id)
    else:
        product = session.scalar(select(Product).where(Product.controlled.is_(True)).order_by(Product.id).limit(1))
    if product is None:
        raise NotFound("product", code="PRODUCT_NOT_FOUND")
    return product


def _range(first: date, last: date) -> None:
    if last < first or (last - first).days >= MAX_RANGE_DAYS:
        raise ValidationFailed("a period of one day to one year", code="PERIOD_INVALID")


def _organisation(clinic: Clinic) -> list[str]:
    return [clinic.name.upper(), f"Mã cơ sở: {clinic.code}"]


def _product_line(product: Product) -> str:
    strength = f" {product.strength}" if product.strength else ""
    return f"Thuốc: {product.name}{strength} — đơn vị tính: {product.unit}"


# ---------------------------------------------------------------------------------------------
# Daily dispensing register


def daily_dispensing_register(session: Session, user: User, *, day: date, product_id: int | None = None
                              ) -> ReportDocument:
    """Return the register of every dose, take-home and replacement of ``day`` (and corrections of
    them booked that day), from the ledger; the total equals the day's ledger issues."""
    require_role(user, *STOCK_READERS, Role.NURSE)
    clinic = _clinic(session, user)
    product = _product(session, product_id)
    m, o = StockMovement, aliased(StockMovement)
    nurse = aliased(User)
    rows = session.execute(
        select(m, o.kind, o.from_location_id, Dose.planned_mg, Dose.part_no, Patient.code, Patient.full_name,
               Lot.lot_number, Location.name, nurse.full_name)
        .outerjoin(o, m.corrects_id == o.id)
        .outerjoin(Dose, Dose.id == m.dose_id)
        .outerjoin(Patient, Patient.id == Dose.patient_id)
        .join(Lot, Lot.id == m.lot_id)
        .outerjoin(Location, Location.id == m.from_location_id)
        .join(nurse, nurse.id == m.recorded_by_id)
        .where(m.clinic_id == clinic.id, m.product_id == product.id, m.business_date == day,
               or_(m.kind.in_(list(PATIENT_KINDS)),
                   and_(m.kind == MovementKind.CORRECTION, o.kind.in_(list(PATIENT_KINDS)))))
        .order_by(m.occurred_at, m.id)
    ).all()
    table, total = [], ZERO
    for number, (line, root_kind, root_from, planned_mg, part_no, code, name, lot, location, by) in enumerate(
            rows, start=1):
        sign = 1
        kind_name = KIND_NAMES.get(line.kind, "")
        if line.kind is MovementKind.CORRECTION:
            sign = 1 if line.from_location_id == root_from else -1
            kind_name = f"Điều chỉnh ({KIND_NAMES[root_kind].lower()})"
            if line.amends_date:
                kind_name += f" ngày {format_date(line.amends_date)}"
        quantity = sign * line.quantity
        total += quantity
        table.append({
            "no": number, "time": format_time(line.occurred_at, clinic.timezone), "patient_code": code or "",
            "patient_name": name or "", "kind": kind_name, "part": part_no,
            "mg": planned_mg if line.kind is not MovementKind.CORRECTION else None, "quantity": quantity,
            "lot": lot, "location": location or "", "by": by,
        })
    columns = [
        Column("no", "STT", ColumnKind.INTEGER, 6), Column("time", "Giờ", ColumnKind.TIME, 8),
        Column("patient_code", "Mã người bệnh", width=14), Column("patient_name", "Họ và tên", width=26),
        Column("kind", "Hình thức", width=18), Column("part", "Lần", ColumnKind.INTEGER, 6),
        Column("mg", "Liều (mg)", Q, 10), Column("quantity", f"Số lượng ({product.unit})", Q, 12),
        Column("lot", "Số lô", width=12), Column("location", "Bơm/quầy", width=18),
        Column("by", "Người cấp phát", width=22),
    ]
    patients = len({row["patient_code"] for row in table if row["patient_code"]})
    return ReportDocument(
        code=f"so-cap-phat-{day.isoformat()}",
        title="SỔ CẤP PHÁT THUỐC HẰNG NGÀY",
        subtitle=[_product_line(product), f"Ngày {format_date(day)}"],
        columns=columns, rows=table, totals={"quantity": total, "patient_name": f"{patients} người bệnh"},
        organisation=_organisation(clinic), place_and_date=place_and_date("", day).lstrip(", ").capitalize(),
        signatures=["NGƯỜI CẤP PHÁT", "DƯỢC SĨ PHỤ TRÁCH"],
        summary={"issued": total, "lines": len(table), "patients": patients},
    )


# ---------------------------------------------------------------------------------------------
# Receipts / issues / stock register (sổ theo dõi xuất, nhập, tồn)


def stock_register(session: Session, user: User, *, first: date, last: date, product_id: int | None = None
                   ) -> ReportDocument:
    """Return the clinic's receipts/issues/stock register of one product, one row per day with
    movement; opening and closing are ledger balances, each row rolls forward to the next."""
    require_role(user, *STOCK_READERS)
    _range(first, last)
    clinic = _clinic(session, user)
    product = _product(session, product_id)
    opening = balance(session, clinic_id=clinic.id, product_id=product.id, end_of=first - timedelta(days=1))
    by_day = clinic_terms_by_day(session, clinic_id=clinic.id, product_id=product.id, first=first, last=last)
    documents: dict[date, list[str]] = {}
    for day, note_no in session.execute(select(Receipt.business_date, Receipt.delivery_note_no).where(
            Receipt.clinic_id == clinic.id, Receipt.business_date.between(first, last)).order_by(Receipt.id)):
        documents.setdefault(day, []).append(f"PN {note_no}")
    for day, record_no in session.execute(select(DestructionRecord.business_date, DestructionRecord.record_no).where(
            DestructionRecord.clinic_id == clinic.id, DestructionRecord.business_date.between(first, last))):
        documents.setdefault(day, []).append(f"BBH {record_no}")
    rows, running = [], opening
    for day in sorted(by_day):
        terms = by_day[day]
        row = {
            "date": day, "documents": ", ".join(documents.get(day, [])), "opening": running,
            "received": terms[Term.RECEIVED], "issued": terms[Term.ISSUED], "other_out": terms[Term.OTHER_OUT],
            "loss": terms[Term.WASTE] + terms[Term.LOSS], "surplus": terms[Term.SURPLUS],
        }
        running = running + terms.net
        row["closing"] = running
        rows.append(row)
    closing = balance(session, clinic_id=clinic.id, product_id=product.id, end_of=last)
    if closing != running:  # pragma: no cover - a line of a kind the terms do not know
        raise RuntimeError(f"register does not roll forward to the ledger: {running} != {closing}")
    total = sum_terms(by_day.values())
    totals = {
        "opening": opening, "received": total[Term.RECEIVED], "issued": total[Term.ISSUED],
        "other_out": total[Term.OTHER_OUT], "loss": total[Term.WASTE] + total[Term.LOSS],
        "surplus": total[Term.SURPLUS], "closing": closing,
    }
    columns = [
        Column("date", "Ngày", ColumnKind.DATE, 12), Column("documents", "Số chứng từ", width=22),
        Column("opening", "Tồn đầu", Q, 12), Column("received", "Nhập", Q, 12),
        Column("issued", "Xuất (cấp cho người bệnh)", Q, 14), Column("other_out", "Xuất khác (trả, hủy)", Q, 12),
        Column("loss", "Hao hụt", Q, 11), Column("surplus", "Dư thừa", Q, 11), Column("closing", "Tồn cuối", Q, 12),
    ]
    return ReportDocument(
        code=f"so-xuat-nhap-ton-{first.isoformat()}-{last.isoformat()}",
        title="SỔ THEO DÕI XUẤT, NHẬP, TỒN KHO THUỐC GÂY NGHIỆN",
        subtitle=[_product_line(product), f"Từ ngày {format_date(first)} đến ngày {format_date(last)}"],
        columns=columns, rows=rows, totals=totals, organisation=_organisation(clinic),
        signatures=["NGƯỜI GHI SỔ", "TRƯỞNG KHOA DƯỢC"],
        summary={key: value for key, value in totals.items()},
    )


# ---------------------------------------------------------------------------------------------
# One patient's dose history


def patient_dose_history(session: Session, user: User, *, patient_id: int, first: date, last: date
                         ) -> ReportDocument:
    """Return a patient's doses in a period with what the ledger booked for each (corrections
    included); the total equals the patient's ledger lines."""
    require_role(user, *STOCK_READERS, Role.NURSE)
    _range(first, last)
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("patient", code="PATIENT_NOT_FOUND")
    require_same_clinic(user, patient.clinic_id)
    clinic = _clinic(session, user)
    doses = session.scalars(
        select(Dose).where(Dose.patient_id == patient.id, Dose.business_date.between(first, last))
        .order_by(Dose.business_date, Dose.requested_at, Dose.id)
    ).all()
    booked: dict[int, Decimal] = {}
    lots: dict[int, str] = {}
    if doses:
        m, o = StockMovement, aliased(StockMovement)
        for dose_id, quantity, m_from, root_from, lot_number in session.execute(
            select(m.dose_id, m.quantity, m.from_location_id, o.from_location_id, Lot.lot_number)
            .outerjoin(o, m.corrects_id == o.id).join(Lot, Lot.id == m.lot_id)
            .where(m.dose_id.in_([dose.id for dose in doses]))
        ):
            sign = 1 if root_from is None or m_from == root_from else -1
            booked[dose_id] = booked.get(dose_id, ZERO) + sign * quantity
            lots.setdefault(dose_id, lot_number)
    nurses = {u.id: u.full_name for u in session.scalars(select(User).where(
        User.id.in_({dose.nurse_id for dose in doses})))} if doses else {}
    rows = []
    for number, dose in enumerate(doses, start=1):
        rows.append({
            "no": number, "date": dose.business_date, "time": format_time(dose.finished_at or dose.requested_at,
                                                                           clinic.timezone),
            "part": dose.part_no, "kind": DOSE_KIND_NAMES[dose.kind], "state": DOSE_STATE_NAMES[dose.state],
            "mg": dose.planned_mg, "quantity": booked.get(dose.id, ZERO), "lot": lots.get(dose.id, ""),
            "by": nurses.get(dose.nurse_id, ""),
        })
    total = sum((row["quantity"] for row in rows), ZERO)
    columns = [
        Column("no", "STT", ColumnKind.INTEGER, 6), Column("date", "Ngày", ColumnKind.DATE, 12),
        Column("time", "Giờ", ColumnKind.TIME, 8), Column("part", "Lần", ColumnKind.INTEGER, 6),
        Column("kind", "Hình thức", width=16), Column("state", "Trạng thái", width=14),
        Column("mg", "Liều chỉ định (mg)", Q, 12), Column("quantity", "Đã cấp (theo sổ kho)", Q, 14),
        Column("lot", "Số lô", width=12), Column("by", "Người cấp phát", width=22),
    ]
    return ReportDocument(
        code=f"lich-su-dung-thuoc-{patient.code}",
        title="LỊCH SỬ DÙNG THUỐC CỦA NGƯỜI BỆNH",
        subtitle=[f"Người bệnh: {patient.full_name} — mã {patient.code}",
                  f"Từ ngày {format_date(first)} đến ngày {format_date(last)}"],
        columns=columns, rows=rows, totals={"quantity": total}, organisation=_organisation(clinic),
        summary={"issued": total, "doses": len(rows)},
    )
