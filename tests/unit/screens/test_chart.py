"""The dose-history plot is plain, valid SVG with one mark per fact."""

from datetime import date, timedelta
from decimal import Decimal
from xml.etree import ElementTree

from web.charts import ChartData, ChartLabels, dose_history_svg

SVG = "{http://www.w3.org/2000/svg}"
END = date(2026, 11, 22)


def _render(**changes):
    values = {
        "start": END - timedelta(days=59), "end": END,
        "doses": {END - timedelta(days=n): Decimal("60") for n in range(1, 40)} | {END - timedelta(days=45): Decimal("0")},
        "missed": frozenset({END - timedelta(days=41), END - timedelta(days=40)}),
        "phase_changes": ((END - timedelta(days=30), "maintenance"), (END - timedelta(days=400), "induction")),
        "ecgs": ((END - timedelta(days=10), 462), (END - timedelta(days=50), 420)),
    }
    values.update(changes)
    labels = ChartLabels(title="Diễn biến liều", dose="Liều", missed="Bỏ liều", phase_change="Giai đoạn", ecg="ECG",
                         phases={"maintenance": "Duy trì"})
    return dose_history_svg(ChartData(**values), labels)


def test_one_bar_per_dosed_day_and_one_mark_per_missed_day():
    root = ElementTree.fromstring(str(_render()))
    rects = root.findall(f"{SVG}rect")
    # 39 dosed days, the zero day draws nothing; 2 missed days; plus two legend swatches.
    assert sum(1 for r in rects if r.get("class") == "dose") == 39 + 1
    assert sum(1 for r in rects if r.get("class") == "missed") == 2 + 1
    phase_texts = [t.text for t in root.findall(f"{SVG}text") if t.get("class") == "phase"]
    assert phase_texts == ["Duy trì"]  # the change outside the window is not drawn
    ecgs = [p for p in root.findall(f"{SVG}path") if (p.get("class") or "").startswith("ecg")]
    assert [p.get("class") for p in ecgs] == ["ecg high", "ecg", "ecg"]  # two ECGs and the legend


def test_accessible_summary_and_escaping():
    svg = str(_render(phase_changes=((END, "<script>"),)))
    root = ElementTree.fromstring(svg)
    assert root.get("role") == "img" and "Diễn biến liều" in root.get("aria-label")
    assert "<script>" not in svg


def test_empty_history_still_draws_axes():
    root = ElementTree.fromstring(str(_render(doses={}, missed=frozenset(), phase_changes=(), ecgs=())))
    assert root.findall(f"{SVG}line")
    assert len(str(_render())) < 30_000
