"""Vietnamese translations waiting in ``web/translations/pending/*.json`` ({"English": "Tiếng Việt"}).

Features add their new strings there while several people work at once; ``make translations``
merges them into ``vi/LC_MESSAGES/messages.po`` (``python -m web.i18n``) before compiling. Tests
and benchmarks that must show Vietnamese before that merge call ``compile_with_pending`` to build a
private copy of the catalogues.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

TRANSLATIONS = Path(__file__).parent / "translations"
PENDING = TRANSLATIONS / "pending"


def pending_translations(directory: Path = PENDING) -> dict[str, str]:
    """Return every pending msgid → Vietnamese text (files in name order; later files win)."""
    found: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.json")):
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError(f"{path}: expected one JSON object of strings")
        found.update(data)
    return found


def merge(po_path: Path, pending: dict[str, str], *, only_untranslated: bool = True) -> int:
    """Fill ``po_path`` with the pending translations; return how many entries changed."""
    with po_path.open("rb") as handle:
        catalog = read_po(handle, locale="vi")
    changed = 0
    for msgid, text in pending.items():
        message = catalog.get(msgid)
        if message is None:
            catalog.add(msgid, text)
            changed += 1
        elif not message.string or message.fuzzy or (not only_untranslated and message.string != text):
            message.string, message.flags = text, set(message.flags) - {"fuzzy"}
            changed += 1
    if changed:
        with po_path.open("wb") as handle:
            write_po(handle, catalog, sort_output=True)
    return changed


def compile_with_pending(target: Path, source: Path = TRANSLATIONS) -> Path:
    """Copy the catalogues to ``target``, merge the pending Vietnamese strings, compile the .mo
    files, and return ``target`` (use it as BABEL_TRANSLATION_DIRECTORIES)."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("pending", "*.pot"))
    merge(target / "vi" / "LC_MESSAGES" / "messages.po", pending_translations(source / "pending"))
    for po_path in target.glob("*/LC_MESSAGES/messages.po"):
        with po_path.open("rb") as handle:
            catalog = read_po(handle, locale=po_path.parts[-3])
        with po_path.with_suffix(".mo").open("wb") as handle:
            write_mo(handle, catalog)
    return target


def main() -> int:
    pending = pending_translations()
    changed = merge(TRANSLATIONS / "vi" / "LC_MESSAGES" / "messages.po", pending)
    print(f"{changed} Vietnamese translations merged from {PENDING.relative_to(Path.cwd()) if PENDING.is_relative_to(Path.cwd()) else PENDING}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
