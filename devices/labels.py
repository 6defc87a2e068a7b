"""Patient cards and take-home/container labels: SVG, PNG and PDF, Code 128 barcodes.

The bar pattern comes from python-barcode's Code 128 encoder; this module lays the
label out once (in millimetres) and draws it to SVG or to a Pillow image, so the
two outputs carry the same bars and the same text lines. PDF is the PNG at print
resolution, so what tests decode is exactly what gets printed.

Identifiers always start with a letter (``P`` card, ``C`` bottle, ``T`` take-home):
python-barcode 0.16.1 silently drops a leading "99" (issue #251), and a barcode
value must classify back to the right kind with ``devices.scan.classify_scan``.
Tests decode every label with an independent decoder (zxing-cpp).

Text is Vietnamese; it is NFC-normalised and drawn with DejaVu Sans, which covers
Vietnamese (Debian package ``fonts-dejavu-core``).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from barcode import Code128
from PIL import Image, ImageDraw, ImageFont

from devices.clock import SYSTEM_CLOCK, Clock
from devices.scan import LabelType, ScanKind, classify_scan

DEFAULT_WARNING_VI = (
    "CẢNH BÁO: Thuốc gây nghiện. Chỉ người có tên trên nhãn được dùng. "
    "Để xa tầm tay trẻ em. Dùng quá liều có thể gây tử vong."
)

_FONT_CANDIDATES = {
    False: (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ),
    True: (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    ),
}
_MONO_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/dejavu/DejaVuSansMono.ttf",
)
FONT_PACKAGE = "fonts-dejavu-core"

MM_PER_INCH = Decimal("25.4")
PT_PER_INCH = 72
# One bar module is this many printer dots at 300 dpi (0.34 mm): wide enough for
# any counter scanner, and an integer number of pixels so bars stay crisp.
MODULE_DOTS_AT_300 = 4
QUIET_MODULES = 10


class LabelDataError(ValueError):
    """The label data cannot be printed safely (bad identifier, inconsistent dose)."""


class LabelFontMissing(RuntimeError):
    """No font with Vietnamese glyphs was found."""


@lru_cache(maxsize=8)
def find_font(bold: bool = False, mono: bool = False) -> str:
    """Return the path of a DejaVu font; raises LabelFontMissing naming the package."""
    candidates = _MONO_CANDIDATES if mono else _FONT_CANDIDATES[bold]
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate
    family = "DejaVu Sans Mono" if mono else ("DejaVu Sans:bold" if bold else "DejaVu Sans")
    if shutil.which("fc-match"):
        found = subprocess.run(
            ["fc-match", "--format=%{file}", family], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found and "dejavu" in found.lower() and Path(found).is_file():
            return found
    raise LabelFontMissing(f"no DejaVu font found; install the Debian package {FONT_PACKAGE}")


# -- label data ---------------------------------------------------------------------------


def _text(value: str) -> str:
    # Pillow draws precomposed characters reliably; decomposed input (e.g. from some
    # keyboards) would put tone marks in the wrong place.
    return unicodedata.normalize("NFC", value).strip()


def vn_decimal(value: Decimal, places: int | None = None) -> str:
    """Return ``value`` written the Vietnamese way (decimal comma): 8,30 / 83."""
    if places is not None:
        text = f"{value:.{places}f}"
    else:
        text = format(value.normalize(), "f")
    return text.replace(".", ",")


def vn_date(value: date) -> str:
    return value.strftime("%d/%m/%Y")


@dataclass(frozen=True)
class PatientCard:
    patient_code: str
    patient_name: str
    clinic_name: str
    issued_on: date

    @property
    def barcode_value(self) -> str:
        return self.patient_code

    def validate(self) -> None:
        """Raise LabelDataError if the card cannot be printed safely."""
        scan = classify_scan(self.patient_code)
        if scan.kind is not ScanKind.PATIENT_CARD or scan.value != self.patient_code:
            raise LabelDataError(
                "patient code must be 'P' followed by upper-case letters or digits"
            )
        if not _text(self.patient_name):
            raise LabelDataError("patient name is empty")


@dataclass(frozen=True)
class ContainerLabel:
    """A bottle (``C...``) or take-home (``T...``) label for one dose."""

    label_id: str
    patient_code: str
    patient_name: str
    dose_mg: Decimal
    dose_ml: Decimal
    dose_date: date
    lot: str
    concentration_mg_per_ml: Decimal = Decimal("10")
    clinic_name: str = ""
    warning: str = field(default=DEFAULT_WARNING_VI)

    @property
    def barcode_value(self) -> str:
        return self.label_id

    @property
    def take_home(self) -> bool:
        return self.label_id.startswith("T")

    def validate(self) -> None:
        """Raise LabelDataError if the label cannot be printed safely."""
        scan = classify_scan(self.label_id)
        if scan.kind is not ScanKind.CONTAINER_LABEL or scan.value != self.label_id:
            raise LabelDataError("label id must be 'C' or 'T' followed by digits")
        expected = LabelType.TAKE_HOME if self.take_home else LabelType.BOTTLE
        if scan.label_type is not expected:
            raise LabelDataError("label id prefix does not match the label type")
        if classify_scan(self.patient_code).kind is not ScanKind.PATIENT_CARD:
            raise LabelDataError("patient code must be 'P' followed by letters or digits")
        for name in ("dose_mg", "dose_ml", "concentration_mg_per_ml"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise LabelDataError(f"{name} must be a positive Decimal")
        if self.dose_ml != self.dose_ml.quantize(Decimal("0.01")):
            raise LabelDataError("dose_ml has more than two decimals")
        # mg and ml must describe the same dose (to within half a 0.01 ml step).
        if abs(
            self.dose_ml * self.concentration_mg_per_ml - self.dose_mg
        ) > self.concentration_mg_per_ml * Decimal("0.005"):
            raise LabelDataError("dose in mg and ml disagree at this concentration")
        if not _text(self.patient_name) or not _text(self.lot):
            raise LabelDataError("patient name and lot are required")


Label = PatientCard | ContainerLabel


# -- layout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TextOp:
    x_mm: float
    baseline_mm: float
    size_pt: float
    text: str
    bold: bool = False
    mono: bool = False


@dataclass(frozen=True)
class _BarsOp:
    x_mm: float
    y_mm: float
    module_mm: float
    height_mm: float
    modules: str  # "1" = bar, "0" = space, python-barcode's Code 128 pattern


@dataclass(frozen=True)
class _Layout:
    width_mm: float
    height_mm: float
    ops: tuple[_TextOp | _BarsOp, ...]
    barcode_value: str


def code128_modules(value: str) -> str:
    """Return the Code 128 module pattern for ``value`` from python-barcode."""
    return Code128(value).build()[0]


def _font(
    size_pt: float, *, bold: bool = False, mono: bool = False, dpi: int = 300
) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(find_font(bold=bold, mono=mono), round(size_pt * dpi / PT_PER_INCH))


def _wrap(text: str, size_pt: float, width_mm: float, *, bold: bool = False) -> list[str]:
    font = _font(size_pt, bold=bold)
    limit_px = width_mm / 25.4 * 300
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > limit_px:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _layout(label: Label) -> _Layout:
    label.validate()
    module_mm = MODULE_DOTS_AT_300 * 25.4 / 300
    modules = code128_modules(label.barcode_value)
    ops: list[_TextOp | _BarsOp] = []
    margin = 3.0
    if isinstance(label, PatientCard):
        width, height = 85.6, 54.0
        y = margin + 4
        ops.append(_TextOp(margin, y, 8, _text(label.clinic_name), bold=True))
        y += 5.5
        ops.append(_TextOp(margin, y, 10, "THẺ ĐIỀU TRỊ METHADONE", bold=True))
        y += 6.5
        ops.append(_TextOp(margin, y, 10, _text(label.patient_name), bold=True))
        y += 5
        ops.append(_TextOp(margin, y, 8, f"Mã bệnh nhân: {label.patient_code}"))
        y += 4.5
        ops.append(_TextOp(margin, y, 8, f"Ngày cấp: {vn_date(label.issued_on)}"))
        bars_y = y + 3
        bars_height = 12.0
    else:
        width, height = 70.0, 50.0
        title = "METHADONE – LIỀU MANG VỀ" if label.take_home else "METHADONE – CHAI LIỀU"
        y = margin + 3.5
        ops.append(_TextOp(margin, y, 9, title, bold=True))
        y += 4.5
        ops.append(_TextOp(margin, y, 8, f"Bệnh nhân: {_text(label.patient_name)}", bold=True))
        y += 4
        ops.append(_TextOp(margin, y, 7, f"Mã BN: {label.patient_code}"))
        y += 4
        dose = (
            f"Liều: {vn_decimal(label.dose_mg)} mg = {vn_decimal(label.dose_ml, 2)} ml "
            f"({vn_decimal(label.concentration_mg_per_ml)} mg/ml)"
        )
        ops.append(_TextOp(margin, y, 8, dose, bold=True))
        y += 4
        when = "Ngày uống" if label.take_home else "Ngày cấp"
        ops.append(
            _TextOp(margin, y, 7, f"{when}: {vn_date(label.dose_date)}    Lô: {_text(label.lot)}")
        )
        y += 3.5
        for line in _wrap(_text(label.warning), 6, width - 2 * margin):
            ops.append(_TextOp(margin, y, 6, line))
            y += 2.8
        bars_y = y
        bars_height = 9.0
    bars_width = (len(modules) + 2 * QUIET_MODULES) * module_mm
    bars_x = max(margin, (width - bars_width) / 2) + QUIET_MODULES * module_mm
    ops.append(_BarsOp(bars_x, bars_y, module_mm, bars_height, modules))
    ops.append(_TextOp(bars_x, bars_y + bars_height + 3.2, 7, label.barcode_value, mono=True))
    needed = bars_y + bars_height + 4.5
    if needed > height:
        raise LabelDataError("label text does not fit the label")
    return _Layout(width, height, tuple(ops), label.barcode_value)


def _bar_runs(modules: str) -> list[tuple[int, int]]:
    """Return (start, length) of each run of bar modules."""
    runs = []
    start = None
    for index, module in enumerate(modules + "0"):
        if module == "1" and start is None:
            start = index
        elif module != "1" and start is not None:
            runs.append((start, index - start))
            start = None
    return runs


# -- renderers -------------------------------------------------------------------------------


def render_svg(label: Label) -> str:
    """Return the label as an SVG document (millimetre coordinates).

    Raises LabelDataError for data that cannot be printed safely.
    """
    layout = _layout(label)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{layout.width_mm}mm" '
        f'height="{layout.height_mm}mm" viewBox="0 0 {layout.width_mm} {layout.height_mm}">',
        f'<rect x="0" y="0" width="{layout.width_mm}" height="{layout.height_mm}" fill="white"/>',
    ]
    for op in layout.ops:
        if isinstance(op, _TextOp):
            family = "DejaVu Sans Mono" if op.mono else "DejaVu Sans"
            weight = ' font-weight="bold"' if op.bold else ""
            size_mm = op.size_pt * 25.4 / PT_PER_INCH
            parts.append(
                f'<text x="{op.x_mm:.3f}" y="{op.baseline_mm:.3f}" font-family="{family}" '
                f'font-size="{size_mm:.3f}"{weight}>{escape(op.text)}</text>'
            )
        else:
            parts.append(
                f'<g class="barcode" data-value="{escape(layout.barcode_value)}" fill="black">'
            )
            for start, length in _bar_runs(op.modules):
                parts.append(
                    f'<rect class="bar" x="{op.x_mm + start * op.module_mm:.4f}" y="{op.y_mm:.3f}" '
                    f'width="{length * op.module_mm:.4f}" height="{op.height_mm:.3f}"/>'
                )
            parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render_image(label: Label, *, dpi: int = 300) -> Image.Image:
    """Return the label as a grayscale Pillow image at ``dpi``."""
    layout = _layout(label)
    scale = dpi / 25.4
    image = Image.new("L", (round(layout.width_mm * scale), round(layout.height_mm * scale)), 255)
    draw = ImageDraw.Draw(image)
    for op in layout.ops:
        if isinstance(op, _TextOp):
            font = _font(op.size_pt, bold=op.bold, mono=op.mono, dpi=dpi)
            draw.text(
                (op.x_mm * scale, op.baseline_mm * scale), op.text, font=font, fill=0, anchor="ls"
            )
        else:
            module_px = max(1, round(MODULE_DOTS_AT_300 * dpi / 300))
            x0 = round(op.x_mm * scale)
            y0 = round(op.y_mm * scale)
            y1 = round((op.y_mm + op.height_mm) * scale)
            for start, length in _bar_runs(op.modules):
                draw.rectangle(
                    (x0 + start * module_px, y0, x0 + (start + length) * module_px - 1, y1), fill=0
                )
    return image


def render_png(label: Label, *, dpi: int = 300) -> bytes:
    """Return the label as PNG bytes."""
    buffer = io.BytesIO()
    render_image(label, dpi=dpi).save(buffer, format="PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


def render_pdf(label: Label, *, dpi: int = 300) -> bytes:
    """Return a one-page PDF of the label at its physical size."""
    buffer = io.BytesIO()
    render_image(label, dpi=dpi).save(buffer, format="PDF", resolution=dpi)
    return buffer.getvalue()


class FileLabelPrinter:
    """A ``LabelPrinter`` that writes PDF (and optionally PNG/SVG) files to a folder.

    File names are a timestamp and a random id, never patient data.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        formats: tuple[str, ...] = ("pdf",),
        dpi: int = 300,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        unknown = set(formats) - {"pdf", "png", "svg"}
        if unknown or "pdf" not in formats:
            raise ValueError("formats must include 'pdf' and only pdf/png/svg")
        self.directory = Path(directory)
        self.formats = formats
        self.dpi = dpi
        self._clock = clock

    def print_label(self, label: Label) -> Path:
        """Write the label and return the PDF path; raises LabelDataError for bad data."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = f"{self._clock.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        outputs = {
            "pdf": lambda: render_pdf(label, dpi=self.dpi),
            "png": lambda: render_png(label, dpi=self.dpi),
            "svg": lambda: render_svg(label).encode("utf-8"),
        }
        rendered = {fmt: outputs[fmt]() for fmt in self.formats}
        for fmt, data in rendered.items():
            (self.directory / f"{stem}.{fmt}").write_bytes(data)
        return self.directory / f"{stem}.pdf"
