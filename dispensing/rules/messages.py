"""Bilingual message texts (``config/rules/messages.toml``) and how values appear in them.

Vietnamese texts write decimals with a comma and dates as dd/mm/yyyy; English texts use a point
and ISO dates. Enum values (phases, checklist signs, medication changes) are shown by their label.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from dispensing.rules.reasons import Reason

LANGUAGES = ("vi", "en")


@dataclass(frozen=True)
class DoseRange:
    """A dose or a range of doses in mg, e.g. a suggestion of 40 mg or 15–30 mg."""

    min_mg: Decimal
    max_mg: Decimal

    @property
    def single(self) -> bool:
        return self.min_mg == self.max_mg

    def __str__(self) -> str:
        return (
            format_decimal(self.min_mg)
            if self.single
            else f"{format_decimal(self.min_mg)}-{format_decimal(self.max_mg)}"
        )


def format_decimal(value: Decimal) -> str:
    """Return ``value`` without exponent or trailing zeros: 100 → "100", 30.50 → "30.5"."""
    return f"{value.normalize():f}"


@dataclass(frozen=True)
class MessageCatalog:
    """Texts by reason code and labels by enum value, each as (vi, en)."""

    version: str
    texts: Mapping[Reason, tuple[str, str]]
    labels: Mapping[str, tuple[str, str]]

    def render(self, reason: Reason, params: Mapping[str, object]) -> tuple[str, str]:
        """Return the (vi, en) texts for ``reason`` with ``params`` filled in."""
        vi, en = self.texts[reason]
        return (
            vi.format_map({k: self._show(v, 0) for k, v in params.items()}),
            en.format_map({k: self._show(v, 1) for k, v in params.items()}),
        )

    def label(self, value: str, lang: str = "vi") -> str:
        return self.labels[value][LANGUAGES.index(lang)]

    def _show(self, value: object, lang: int) -> str:
        if isinstance(value, bool):
            raise TypeError("booleans are not message values")
        if isinstance(value, enum.Enum):
            return self.labels[str(value.value)][lang]
        if isinstance(value, Decimal):
            text = format_decimal(value)
            return text.replace(".", ",") if lang == 0 else text
        if isinstance(value, DoseRange):
            low, high = self._show(value.min_mg, lang), self._show(value.max_mg, lang)
            return low if value.single else f"{low}–{high}"
        if isinstance(value, date):
            return value.strftime("%d/%m/%Y") if lang == 0 else value.isoformat()
        if isinstance(value, tuple):
            return ", ".join(self._show(item, lang) for item in value)
        return str(value)


def raw_params(params: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """Return ``params`` as sorted (name, canonical text) pairs, for storing with a decision."""

    def raw(value: object) -> str:
        if isinstance(value, enum.Enum):
            return str(value.value)
        if isinstance(value, Decimal):
            return format_decimal(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, tuple):
            return ",".join(raw(item) for item in value)
        return str(value)

    return tuple(sorted((name, raw(value)) for name, value in params.items()))
