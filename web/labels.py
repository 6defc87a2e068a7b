"""Translatable labels for enum values shown on pages."""

from flask_babel import lazy_gettext

from dispensing.models import Role

ROLE_LABELS = {
    Role.NURSE: lazy_gettext("Nurse"),
    Role.PHARMACIST: lazy_gettext("Pharmacist"),
    Role.PHYSICIAN: lazy_gettext("Physician"),
    Role.ADMIN: lazy_gettext("Administrator"),
}
