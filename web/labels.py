"""Translatable labels for enum values shown on pages."""

from flask_babel import lazy_gettext

from dispensing.models import DeviceKind, PatientStatus, Phase, Role, Sex

ROLE_LABELS = {
    Role.NURSE: lazy_gettext("Nurse"),
    Role.PHARMACIST: lazy_gettext("Pharmacist"),
    Role.PHYSICIAN: lazy_gettext("Physician"),
    Role.ADMIN: lazy_gettext("Administrator"),
    Role.UNIT_HEAD: lazy_gettext("Head of unit"),
}

# ---- screens: patients, physician, admin ----------------------------------------------------

PHASE_LABELS = {
    Phase.INDUCTION: lazy_gettext("Induction"),
    Phase.TITRATION: lazy_gettext("Titration"),
    Phase.MAINTENANCE: lazy_gettext("Maintenance"),
    Phase.TAPER: lazy_gettext("Taper"),
}

SEX_LABELS = {
    Sex.MALE: lazy_gettext("Male"),
    Sex.FEMALE: lazy_gettext("Female"),
    Sex.OTHER: lazy_gettext("Other"),
}

STATUS_LABELS = {
    PatientStatus.ACTIVE: lazy_gettext("In treatment"),
    PatientStatus.STOPPED: lazy_gettext("Treatment stopped"),
    PatientStatus.TRANSFERRED: lazy_gettext("Transferred"),
}

OUTCOME_LABELS = {
    "ALLOW": lazy_gettext("Allowed"),
    "WARN": lazy_gettext("Warning"),
    "BLOCK": lazy_gettext("Blocked"),
}

DEVICE_KIND_LABELS = {
    DeviceKind.PUMP: lazy_gettext("Pump"),
    DeviceKind.BALANCE: lazy_gettext("Balance"),
    DeviceKind.SCANNER: lazy_gettext("Scanner"),
    DeviceKind.PRINTER: lazy_gettext("Label printer"),
}
