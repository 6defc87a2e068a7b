"""Every user-facing string in the code has a Vietnamese translation, compiled into the .mo."""

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[3]
TRANSLATIONS = ROOT / "web" / "translations"
KEYWORDS = {"_": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2), "lazy_ngettext": (1, 2)}
METHOD_MAP = [
    ("dispensing/**.py", "python"),
    ("web/**.py", "python"),
    ("devices/**.py", "python"),
    ("web/templates/**.html", "jinja2"),
]


def _source_messages() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), METHOD_MAP, keywords=KEYWORDS, options_map={"web/templates/**.html": {}}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _catalog(kind: str, locale: str):
    path = TRANSLATIONS / locale / "LC_MESSAGES" / f"messages.{kind}"
    with path.open("rb") as handle:
        return read_po(handle, locale=locale) if kind == "po" else read_mo(handle)


def test_every_source_string_has_a_vietnamese_translation():
    catalog = _catalog("po", "vi")
    missing = sorted(
        message for message in _source_messages()
        if not (catalog.get(message) and catalog.get(message).string and not catalog.get(message).fuzzy)
    )
    assert missing == [], "run `make translations` and translate: " + "; ".join(missing)


def test_compiled_catalogues_match_their_sources():
    for locale in ("vi", "en"):
        po, mo = _catalog("po", locale), _catalog("mo", locale)
        for message in po:
            if message.id and message.string and not message.fuzzy:
                assert mo.get(message.id) is not None and mo.get(message.id).string == message.string, (
                    f"{locale}: {message.id!r} not compiled; run `make translations`"
                )
