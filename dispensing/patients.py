"""Patients: registration, search, photo, flags, ECG results and concomitant medications."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, fields
from datetime import date

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dispensing import audit, rules
from dispensing.clock import business_date, utcnow
from dispensing.db import begin_write
from dispensing.errors import Conflict, NotFound, ValidationFailed
from dispensing.models import (
    Clinic,
    ClinicalTask,
    ConcomitantMedication,
    EcgResult,
    Patient,
    PatientFlag,
    PatientPhoto,
    Role,
    Sex,
    User,
)
from dispensing.names import search_key
from dispensing.permissions import require_role, require_same_clinic

REGISTRARS = (Role.PHYSICIAN, Role.NURSE, Role.ADMIN)
CARD_PREFIX = "P"
PHOTO_MAX_BYTES = 5 * 1024 * 1024
PHOTO_MAX_SIDE = 480
_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,31}$")


@dataclass(frozen=True)
class PatientDetails:
    """Registration and demographic fields; None leaves a field unchanged on update."""

    full_name: str | None = None
    date_of_birth: date | None = None
    sex: Sex | None = None
    national_id: str | None = None
    phone: str | None = None
    address: str | None = None
    treatment_start_date: date | None = None
    pregnant: bool | None = None
    hiv: bool | None = None
    tb: bool | None = None
    take_home_commitment_on: date | None = None


def get_patient(session: Session, actor: User, patient_id: int) -> Patient:
    """Return the patient in the actor's clinic. Raises NotFound, PermissionDenied."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("patient", code="PATIENT_NOT_FOUND")
    require_same_clinic(actor, patient.clinic_id)
    return patient


def _apply(patient: Patient, details: PatientDetails) -> dict:
    changed = {}
    for item in fields(details):
        value = getattr(details, item.name)
        if value is None:
            continue
        if item.name == "full_name":
            value = value.strip()
            if not value:
                raise ValidationFailed("name required", code="PATIENT_NAME_REQUIRED")
            patient.search_name = search_key(value)
        if item.name == "date_of_birth" and value > date.today():  # noqa: DTZ011 - a date, not an instant
            raise ValidationFailed("birth date in the future", code="PATIENT_BIRTH_DATE_INVALID")
        if getattr(patient, item.name) != value:
            setattr(patient, item.name, value)
            # Field names only: the audit record must not copy identifying values around.
            changed[item.name] = True
    return changed


def register_patient(
    session: Session, actor: User, details: PatientDetails, *, code: str | None = None
) -> Patient:
    """Register a patient in the actor's clinic and return it (committed).

    ``code`` is the clinic's patient code; when omitted one is assigned. The card barcode is the
    letter-prefixed internal number. Raises PermissionDenied, ValidationFailed, Conflict.
    """
    require_role(actor, *REGISTRARS)
    if not details.full_name or not details.full_name.strip():
        raise ValidationFailed("name required", code="PATIENT_NAME_REQUIRED")
    if code is not None and not _CODE_RE.match(code):
        raise ValidationFailed("bad code", code="PATIENT_CODE_INVALID")
    begin_write(session)
    clinic = session.get(Clinic, actor.clinic_id)
    number = (session.scalar(select(func.count()).select_from(Patient).where(Patient.clinic_id == clinic.id)) or 0) + 1
    code = code or f"{clinic.code}-{number:05d}"
    if session.scalar(select(Patient.id).where(Patient.clinic_id == clinic.id, Patient.code == code)):
        raise Conflict("code taken", code="PATIENT_CODE_TAKEN")
    patient = Patient(
        clinic_id=clinic.id, code=code, card_barcode=f"pending-{code}", full_name="", search_name=""
    )
    _apply(patient, details)
    session.add(patient)
    session.flush()
    # The card carries the internal id with a letter prefix (python-barcode drops a leading "99").
    patient.card_barcode = f"{CARD_PREFIX}{patient.id:06d}"
    audit.record(session, "patient.registered", actor_id=actor.id, clinic_id=clinic.id, entity=patient)
    session.commit()
    return patient


def update_patient(session: Session, actor: User, patient_id: int, details: PatientDetails) -> Patient:
    """Change demographics and flags (pregnancy, HIV, TB, take-home commitment); committed."""
    require_role(actor, *REGISTRARS)
    begin_write(session)
    patient = get_patient(session, actor, patient_id)
    changed = _apply(patient, details)
    if changed:
        audit.record(session, "patient.updated", actor_id=actor.id, clinic_id=patient.clinic_id,
                     entity=patient, data={"fields": sorted(changed)})
    session.commit()
    return patient


def search_patients(session: Session, actor: User, query: str, *, limit: int = 20) -> list[Patient]:
    """Return patients of the actor's clinic matching a card barcode or code exactly, or whose
    name contains ``query`` (with or without diacritics)."""
    require_role(actor, Role.PHYSICIAN, Role.NURSE, Role.PHARMACIST, Role.ADMIN)
    text = query.strip()
    if not text:
        return []
    in_clinic = Patient.clinic_id == actor.clinic_id
    exact = session.scalars(
        select(Patient).where(in_clinic, or_(Patient.card_barcode == text, func.lower(Patient.code) == text.lower()))
    ).all()
    if exact:
        return list(exact)
    key = search_key(text).replace("%", "").replace("_", "")
    if not key:
        return []
    return list(
        session.scalars(
            select(Patient).where(in_clinic, Patient.search_name.contains(key)).order_by(Patient.search_name).limit(limit)
        )
    )


def set_photo(session: Session, actor: User, patient_id: int, data: bytes) -> PatientPhoto:
    """Store a photo (JPEG/PNG/WebP), re-encoded as a small JPEG without metadata; committed.

    Raises ValidationFailed for anything that is not a readable image or is too large.
    """
    from PIL import Image, UnidentifiedImageError

    require_role(actor, *REGISTRARS)
    if not data or len(data) > PHOTO_MAX_BYTES:
        raise ValidationFailed("photo size", code="PHOTO_INVALID")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in {"JPEG", "PNG", "WEBP"}:
                raise ValidationFailed("photo format", code="PHOTO_INVALID")
            image = image.convert("RGB")
            image.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
            out = io.BytesIO()
            # Re-encoding drops EXIF (GPS position, device serials) from phone photos.
            image.save(out, format="JPEG", quality=85)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValidationFailed("not an image", code="PHOTO_INVALID") from exc
    begin_write(session)
    patient = get_patient(session, actor, patient_id)
    photo = session.scalar(select(PatientPhoto).where(PatientPhoto.patient_id == patient.id))
    if photo is None:
        photo = PatientPhoto(patient_id=patient.id, media_type="image/jpeg", data=out.getvalue())
        session.add(photo)
    else:
        photo.media_type, photo.data = "image/jpeg", out.getvalue()
    audit.record(session, "patient.photo_set", actor_id=actor.id, clinic_id=patient.clinic_id, entity=patient)
    session.commit()
    return photo


def record_ecg(session: Session, actor: User, patient_id: int, taken_on: date, qtc_ms: int,
               note: str | None = None) -> EcgResult:
    """Record an ECG result (QTc in ms); committed. Raises ValidationFailed for an implausible QTc
    or a future date."""
    require_role(actor, Role.PHYSICIAN, Role.NURSE)
    if not 200 <= qtc_ms <= 800:
        raise ValidationFailed("qtc", code="ECG_QTC_OUT_OF_RANGE")
    begin_write(session)
    patient = get_patient(session, actor, patient_id)
    clinic = session.get(Clinic, patient.clinic_id)
    if taken_on > business_date(utcnow(), clinic.timezone):
        raise ValidationFailed("future ECG", code="ECG_DATE_IN_FUTURE")
    ecg = EcgResult(patient_id=patient.id, taken_on=taken_on, qtc_ms=qtc_ms, recorded_by_id=actor.id, note=note)
    session.add(ecg)
    audit.record(session, "ecg.recorded", actor_id=actor.id, clinic_id=patient.clinic_id, entity=ecg,
                 data={"qtc_ms": qtc_ms, "taken_on": taken_on})
    session.commit()
    return ecg


def raise_interaction_follow_ups(session: Session, patient: Patient, outcome: rules.InteractionOutcome) -> None:
    """Add the physician tasks and watch flags an interaction outcome asks for (not committed)."""
    for task in outcome.tasks:
        session.add(ClinicalTask(
            clinic_id=patient.clinic_id, patient_id=patient.id, code=task.code.value, due_on=task.due_on,
            subject=task.subject, message_vi=task.message_vi, message_en=task.message_en,
            rule_table_version=task.table_version))
    for found in outcome.flags:
        session.add(PatientFlag(
            patient_id=patient.id, code=found.code.value, starts_on=found.starts_on, ends_on=found.ends_on,
            subject=found.subject, message_vi=found.message_vi, message_en=found.message_en,
            rule_table_version=found.table_version))


def start_medication(session: Session, actor: User, rule_set: rules.RuleSet, patient_id: int, drug_name: str,
                     started_on: date, note: str | None = None) -> ConcomitantMedication:
    """Record a medicine the patient started; an interacting drug raises a physician task and a
    watch flag as the interactions table says. Committed."""
    require_role(actor, Role.PHYSICIAN)
    drug_name = drug_name.strip()
    if not drug_name:
        raise ValidationFailed("drug", code="MEDICATION_NAME_REQUIRED")
    begin_write(session)
    patient = get_patient(session, actor, patient_id)
    medication = ConcomitantMedication(patient_id=patient.id, drug_name=drug_name, started_on=started_on,
                                       recorded_by_id=actor.id, note=note)
    session.add(medication)
    outcome = rules.evaluate_medication_change(
        rule_set, rules.MedicationChange(drug_name, rules.MedicationChangeKind.STARTED, started_on))
    raise_interaction_follow_ups(session, patient, outcome)
    audit.record(session, "medication.started", actor_id=actor.id, clinic_id=patient.clinic_id,
                 entity=medication, data={"drug": drug_name, "interacting": outcome.drug is not None})
    session.commit()
    return medication


def stop_medication(session: Session, actor: User, rule_set: rules.RuleSet, medication_id: int,
                    stopped_on: date) -> ConcomitantMedication:
    """Record that a medicine was stopped; stopping an inducer raises an overdose-risk task."""
    require_role(actor, Role.PHYSICIAN)
    begin_write(session)
    medication = session.get(ConcomitantMedication, medication_id)
    if medication is None:
        raise NotFound("medication", code="MEDICATION_NOT_FOUND")
    patient = get_patient(session, actor, medication.patient_id)
    if medication.stopped_on is not None:
        raise Conflict("already stopped", code="MEDICATION_ALREADY_STOPPED")
    if stopped_on < medication.started_on:
        raise ValidationFailed("dates", code="MEDICATION_DATES_INVALID")
    medication.stopped_on = stopped_on
    outcome = rules.evaluate_medication_change(
        rule_set, rules.MedicationChange(medication.drug_name, rules.MedicationChangeKind.STOPPED, stopped_on))
    raise_interaction_follow_ups(session, patient, outcome)
    audit.record(session, "medication.stopped", actor_id=actor.id, clinic_id=patient.clinic_id,
                 entity=medication, data={"drug": medication.drug_name})
    session.commit()
    return medication
