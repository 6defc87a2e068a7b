from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispensing.clock import business_date, day_bounds
from dispensing.models.types import Millilitres, UTCDateTime
from dispensing.names import search_key


class _Dialect:
    def __init__(self, name):
        self.name = name


@given(st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False))
def test_millilitres_round_trip_exactly(value):
    stored = Millilitres.process_bind_param(value, _Dialect("sqlite"))
    assert isinstance(stored, int)
    assert Millilitres.process_result_value(stored, _Dialect("sqlite")) == value


def test_millilitres_refuse_float_and_excess_precision():
    with pytest.raises(TypeError):
        Millilitres.process_bind_param(8.0, _Dialect("sqlite"))
    with pytest.raises(ValueError, match="decimal places"):
        Millilitres.process_bind_param(Decimal("8.0001"), _Dialect("sqlite"))


def test_utc_datetime_refuses_naive_and_normalises_to_utc():
    column = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2026, 1, 1, 8, 0), _Dialect("postgresql"))  # noqa: DTZ001
    hanoi = datetime(2026, 1, 1, 7, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    stored = column.process_bind_param(hanoi, _Dialect("sqlite"))
    assert stored == datetime(2026, 1, 1, 0, 0)  # noqa: DTZ001 - SQLite stores naive UTC
    assert column.process_result_value(stored, _Dialect("sqlite")) == hanoi


@pytest.mark.parametrize(
    "instant, expected",
    [
        # 23:30 UTC on 1 March is 06:30 on 2 March in Hanoi: the morning session's business date.
        (datetime(2026, 3, 1, 23, 30, tzinfo=UTC), date(2026, 3, 2)),
        (datetime(2026, 3, 1, 16, 59, 59, tzinfo=UTC), date(2026, 3, 1)),
        (datetime(2026, 3, 1, 17, 0, tzinfo=UTC), date(2026, 3, 2)),
        (datetime(2026, 3, 2, 0, 0, tzinfo=timezone(timedelta(hours=-5))), date(2026, 3, 2)),
    ],
)
def test_business_date_is_the_clinic_calendar_day(instant, expected):
    assert business_date(instant, "Asia/Ho_Chi_Minh") == expected


def test_business_date_refuses_naive():
    with pytest.raises(ValueError):
        business_date(datetime(2026, 3, 1, 8), "Asia/Ho_Chi_Minh")  # noqa: DTZ001


def test_day_bounds_cover_the_local_day():
    start, end = day_bounds(date(2026, 3, 2), "Asia/Ho_Chi_Minh")
    assert start == datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
    assert end - start == timedelta(days=1)


@pytest.mark.parametrize(
    "name, key",
    [("Nguyễn Thị Đào", "nguyen thi dao"), ("  TRẦN   văn  Ân ", "tran van an"), ("Lê", "le")],
)
def test_search_key_folds_vietnamese_diacritics(name, key):
    assert search_key(name) == key
