"""The counter screen's pages (issue 7, item 1), measured by ``python -m bench.pages``.

The nurse chooses counter Q1 first (the choice lives in the session the later pages share)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.pages import register


def _q1(session: Session) -> int:
    from dispensing.models import Counter

    return session.scalar(select(Counter.id).where(Counter.code == "Q1").order_by(Counter.id).limit(1))


def _card(session: Session) -> dict:
    """The card of the patient with the longest dose history (the heaviest panel)."""
    from bench.pages import _busiest_patient
    from dispensing.models import Patient

    return {"scan": "]C0" + session.get(Patient, _busiest_patient(session)).card_barcode}


def _latest_dose(session: Session) -> str:
    from dispensing.models import Dose

    return f"/counter/doses/{session.scalar(select(Dose.id).order_by(Dose.id.desc()).limit(1))}"


register("counter: choose the counter", "dieuduong1", "/counter")
register("counter: counter chosen", "dieuduong1", "/counter/choose", method="POST",
         data=lambda s: {"counter_id": _q1(s)}, csrf_from="/counter")
register("counter: scan screen", "dieuduong1", "/counter")
register("counter: card scan → panel (htmx)", "dieuduong1", "/counter/scan", method="POST", data=_card,
         csrf_from="/counter", htmx=True)
register("counter: name search (htmx)", "dieuduong1", "/counter/scan", method="POST", data={"scan": "nguyen"},
         csrf_from="/counter", htmx=True)
register("counter: queue (htmx)", "dieuduong1", "/counter/queue", htmx=True)
register("counter: dose progress poll (htmx)", "dieuduong1", _latest_dose, htmx=True)
