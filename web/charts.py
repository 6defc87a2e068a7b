"""The dose-history plot on the patient chart: inline SVG drawn on the server (no chart library).

Bars are the mg taken each day, red marks the days an order was in force and nothing was taken,
dashed lines the phase changes, diamonds the ECGs with their QTc on the right-hand scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape

from markupsafe import Markup

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 52, 24, 40
QTC_MIN, QTC_MAX = 350, 550


@dataclass(frozen=True)
class ChartLabels:
    """Translated texts the chart shows."""

    title: str
    mg_axis: str = "mg"
    qtc_axis: str = "QTc ms"
    dose: str = "dose"
    missed: str = "missed"
    phase_change: str = "phase"
    ecg: str = "ECG"
    phases: dict = field(default_factory=dict)  # phase value → short label


@dataclass(frozen=True)
class ChartData:
    start: date
    end: date  # inclusive
    doses: dict[date, Decimal]  # mg taken on each day
    missed: frozenset[date]
    phase_changes: tuple[tuple[date, str], ...]  # (first day, phase value)
    ecgs: tuple[tuple[date, int], ...]  # (taken on, QTc ms)


def _nice_max(value: Decimal) -> int:
    for step in (20, 40, 60, 80, 100, 120, 150, 200, 250, 300, 400):
        if value <= step:
            return step
    return int(value) + 50


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def dose_history_svg(data: ChartData, labels: ChartLabels, number=str, day_label=None) -> Markup:
    """Return the chart as an ``<svg>`` element; ``number`` formats axis numbers for the locale,
    ``day_label`` formats a date for the axis (default dd/mm)."""
    day_label = day_label or (lambda d: f"{d.day:02d}/{d.month:02d}")
    days = (data.end - data.start).days + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(days, 1)
    top_mg = _nice_max(max(data.doses.values(), default=Decimal(0)))

    def x_of(day: date) -> float:
        return LEFT + (day - data.start).days * slot

    def y_of_mg(mg: Decimal) -> float:
        return TOP + plot_h - float(mg) / top_mg * plot_h

    def y_of_qtc(qtc: int) -> float:
        clamped = min(max(qtc, QTC_MIN), QTC_MAX)
        return TOP + plot_h - (clamped - QTC_MIN) / (QTC_MAX - QTC_MIN) * plot_h

    taken_days = sum(1 for d in data.doses if data.start <= d <= data.end)
    summary = f"{labels.title}: {day_label(data.start)}–{day_label(data.end)}, {labels.dose} {taken_days}, " \
              f"{labels.missed} {len(data.missed)}, {labels.ecg} {len(data.ecgs)}"
    out = [
        f'<svg class="dose-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(summary, {chr(34): "&quot;"})}">',
        f"<title>{escape(summary)}</title>",
    ]
    # Grid and the mg axis.
    for step in range(5):
        mg = Decimal(top_mg) * step / 4
        y = y_of_mg(mg)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(y)}" y2="{_fmt(y)}"/>')
        out.append(f'<text class="axis" x="{LEFT - 4}" y="{_fmt(y + 4)}" text-anchor="end">{escape(number(mg))}</text>')
    out.append(f'<text class="axis" x="{LEFT - 4}" y="{TOP - 8}" text-anchor="end">{escape(labels.mg_axis)}</text>')
    # The QTc axis on the right.
    for qtc in (400, 450, 500):
        y = y_of_qtc(qtc)
        out.append(f'<text class="axis qtc" x="{WIDTH - RIGHT + 4}" y="{_fmt(y + 4)}">{escape(number(qtc))}</text>')
    out.append(f'<line class="qtc-limit" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(y_of_qtc(500))}" '
               f'y2="{_fmt(y_of_qtc(500))}"/>')
    out.append(f'<text class="axis qtc" x="{WIDTH - RIGHT + 4}" y="{TOP - 8}">{escape(labels.qtc_axis)}</text>')
    # Bars and missed days.
    bar_w = max(slot * 0.7, 1)
    for day, mg in sorted(data.doses.items()):
        if not data.start <= day <= data.end or mg <= 0:
            continue
        y = y_of_mg(min(mg, Decimal(top_mg)))
        out.append(f'<rect class="dose" x="{_fmt(x_of(day) + (slot - bar_w) / 2)}" y="{_fmt(y)}" '
                   f'width="{_fmt(bar_w)}" height="{_fmt(TOP + plot_h - y)}"><title>{escape(day_label(day))}: '
                   f'{escape(number(mg))} mg</title></rect>')
    for day in sorted(data.missed):
        if data.start <= day <= data.end:
            out.append(f'<rect class="missed" x="{_fmt(x_of(day) + (slot - bar_w) / 2)}" y="{TOP + plot_h - 8}" '
                       f'width="{_fmt(bar_w)}" height="8"><title>{escape(day_label(day))}: '
                       f'{escape(labels.missed)}</title></rect>')
    # Phase changes.
    for day, phase in data.phase_changes:
        if not data.start <= day <= data.end:
            continue
        x = x_of(day)
        text = labels.phases.get(phase, phase)
        out.append(f'<line class="phase" x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{TOP}" y2="{TOP + plot_h}"/>')
        out.append(f'<text class="phase" x="{_fmt(x + 3)}" y="{TOP + 10}">{escape(text)}</text>')
    # ECGs.
    for day, qtc in data.ecgs:
        if not data.start <= day <= data.end:
            continue
        x, y = x_of(day) + slot / 2, y_of_qtc(qtc)
        out.append(f'<path class="ecg{" high" if qtc >= 450 else ""}" d="M{_fmt(x)} {_fmt(y - 6)} l6 6 l-6 6 l-6 -6 z">'
                   f'<title>{escape(labels.ecg)} {escape(day_label(day))}: QTc {qtc} ms</title></path>')
    # Date axis: about eight labels.
    every = max(1, days // 8)
    for n in range(0, days, every):
        day = data.start + timedelta(days=n)
        out.append(f'<text class="axis" x="{_fmt(x_of(day) + slot / 2)}" y="{HEIGHT - BOTTOM + 16}" '
                   f'text-anchor="middle">{escape(day_label(day))}</text>')
    # Legend: each entry as wide as its text (about 7 px a character at 12 px).
    legend_y, x = HEIGHT - 8, float(LEFT)
    for kind, text in (("dose", labels.dose), ("missed", labels.missed), ("phase", labels.phase_change),
                       ("ecg", labels.ecg)):
        if kind == "phase":
            out.append(f'<line class="phase" x1="{_fmt(x + 5)}" x2="{_fmt(x + 5)}" y1="{legend_y - 10}" '
                       f'y2="{legend_y + 1}"/>')
        elif kind == "ecg":
            out.append(f'<path class="ecg" d="M{_fmt(x + 5)} {legend_y - 10} l5 5 l-5 5 l-5 -5 z"/>')
        else:
            out.append(f'<rect class="{kind}" x="{_fmt(x)}" y="{legend_y - 9}" width="10" height="10"/>')
        out.append(f'<text class="legend" x="{_fmt(x + 14)}" y="{legend_y}">{escape(text)}</text>')
        x += 14 + 7 * len(text) + 18
    out.append("</svg>")
    return Markup("".join(out))
