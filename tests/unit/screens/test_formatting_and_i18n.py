"""Dates dd/mm/yyyy, Vietnamese numbers, and merging pending translations."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask_babel import Babel, force_locale

from web import formatting, i18n
from web.forms import format_day, parse_day


@pytest.fixture
def babel_app():
    app = Flask(__name__)
    app.config.update(BABEL_DEFAULT_LOCALE="vi", BABEL_DEFAULT_TIMEZONE="Asia/Ho_Chi_Minh")
    Babel(app)
    return app


def test_dates_are_dd_mm_yyyy_in_the_clinic_timezone(babel_app):
    with babel_app.test_request_context():
        assert formatting.date_vn(date(2026, 3, 5)) == "05/03/2026"
        assert formatting.date_vn(None) == ""
        # 23:30 UTC is already the next morning in Hà Nội.
        assert formatting.datetime_vn(datetime(2026, 3, 5, 23, 30, tzinfo=UTC)) == "06/03/2026 06:30"
        assert formatting.date_vn(datetime(2026, 3, 5, 23, 30, tzinfo=UTC)) == "06/03/2026"


def test_numbers_the_vietnamese_way(babel_app):
    with babel_app.test_request_context():
        assert formatting.number(Decimal("1234.5")) == "1.234,5"
        assert formatting.number(Decimal("20.000")) == "20"
        assert formatting.number(Decimal("8.3"), 2) == "8,30"
        assert formatting.milligrams(Decimal("22.5")) == "22,5 mg"
    with babel_app.test_request_context(), force_locale("en"):
        assert formatting.number(Decimal("1234.5")) == "1,234.5"


def test_day_fields_parse_both_ways():
    assert parse_day("5/1/2026") == parse_day("2026-01-05") == date(2026, 1, 5)
    assert parse_day("  ") is None
    assert format_day(date(2026, 1, 5)) == "05/01/2026"
    with pytest.raises(ValueError):
        parse_day("31/02/2026")


def test_pending_translations_merge_and_compile(tmp_path):
    source = tmp_path / "translations"
    (source / "vi" / "LC_MESSAGES").mkdir(parents=True)
    (source / "en" / "LC_MESSAGES").mkdir(parents=True)
    (source / "pending").mkdir()
    po = 'msgid ""\nmsgstr ""\n"Language: vi\\n"\n\nmsgid "Save"\nmsgstr ""\n\nmsgid "Kept"\nmsgstr "Giữ"\n'
    (source / "vi" / "LC_MESSAGES" / "messages.po").write_text(po, encoding="utf-8")
    (source / "en" / "LC_MESSAGES" / "messages.po").write_text('msgid ""\nmsgstr ""\n', encoding="utf-8")
    (source / "pending" / "screens.json").write_text(json.dumps({"Save": "Lưu", "Kept": "Khác", "New": "Mới"}),
                                                     encoding="utf-8")
    target = i18n.compile_with_pending(tmp_path / "out", source)
    with (target / "vi" / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
        catalog = read_mo(handle)
    assert catalog.get("Save").string == "Lưu" and catalog.get("New").string == "Mới"
    assert catalog.get("Kept").string == "Giữ"  # an existing translation wins
    assert not (target / "pending").exists()
    # The source catalogue is untouched until ``make translations`` merges for real.
    with (source / "vi" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        assert read_po(handle).get("Save").string == ""
    assert i18n.merge(source / "vi" / "LC_MESSAGES" / "messages.po", {"Save": "Lưu"}) == 1


def test_the_screens_pending_file_is_well_formed():
    pending = i18n.pending_translations()
    assert pending["Patients"] == "Bệnh nhân" and pending["Tasks"] == "Việc cần làm"
    assert all(value.strip() for value in pending.values())
