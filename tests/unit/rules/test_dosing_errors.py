"""§11 Dosing errors: a dose larger than ordered (any excess in the first 2 weeks, > 50 %
afterwards) opens an incident with ≥ 4 h observation and a physician alert."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispensing.rules import Reason, check_recorded_dose

from .builders import TODAY, D, at, day, rules


def _check(ordered: str, recorded: str, treatment_day: int | None):
    return check_recorded_dose(
        rules(),
        ordered_mg=D(ordered),
        recorded_mg=D(recorded),
        given_at=at(TODAY, 7, 30),
        given_on=TODAY,
        treatment_started_on=day(-treatment_day) if treatment_day is not None else None,
    )


@pytest.mark.parametrize(
    ("ordered", "recorded", "treatment_day", "incident"),
    [
        pytest.param("30", "30", 5, False, id="exact-dose-first-weeks"),
        pytest.param("30", "30.1", 5, True, id="0.1mg-excess-in-first-2-weeks"),
        pytest.param("30", "30.1", 13, True, id="0.1mg-excess-on-day-13"),
        pytest.param("30", "30.1", 14, False, id="small-excess-from-day-14"),
        pytest.param("60", "90", 100, False, id="50pct-excess-later"),
        pytest.param("60", "90.1", 100, True, id="over-50pct-excess-later"),
        pytest.param("60", "59", 100, False, id="smaller-dose-is-no-incident"),
        pytest.param("60", "60.5", None, True, id="unknown-start-counts-as-first-weeks"),
    ],
)
def test_dose_larger_than_ordered_opens_an_incident(ordered, recorded, treatment_day, incident):
    found = _check(ordered, recorded, treatment_day)
    assert (found is not None) is incident


def test_incident_observes_4_hours_and_alerts_the_physician():
    found = _check("60", "100", 100)
    assert found.code is Reason.DOSING_ERROR_INCIDENT
    assert found.excess_mg == D("40")
    given = at(TODAY, 7, 30)
    assert (found.observation.start_at, found.observation.min_end_at) == (
        given,
        given + timedelta(hours=4),
    )
    assert found.observation.max_end_at is None
    assert found.physician_alert.code is Reason.DOSING_ERROR_PHYSICIAN_ALERT
    assert found.physician_alert.due_on == TODAY
    assert found.message_vi == "Sự cố liều: đã cho 100 mg trong khi y lệnh là 60 mg (thừa 40 mg)."
