"""Vietnamese names: a search key that matches with or without diacritics."""

from __future__ import annotations

import unicodedata


def search_key(text: str) -> str:
    """Return ``text`` lower-cased, without diacritics (đ → d), spaces collapsed.

    >>> search_key("  Nguyễn  Thị Đào ")
    'nguyen thi dao'
    """
    folded = text.replace("Đ", "D").replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", folded)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.lower().split())
