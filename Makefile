# Two commands do all set-up on a fresh Linux machine:
#   make run    virtualenv + install + migrate + demo clinic + serve at http://127.0.0.1:5000
#   make test   virtualenv + install + the whole test suite (SQLite; PostgreSQL with MMT_TEST_DATABASE_URL)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint bench clean translations browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(PY) run.py

test: $(STAMP) browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's chromium + fonts for tests/browser, when missing and installable (root with apt-get).
browser-deps:
	@sh .ci/install-browser

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) instance/*.sqlite3* .pytest_cache

# Extract strings, merge them into the catalogues, fill in the Vietnamese waiting in
# web/translations/pending/*.json, compile. Translate what is still empty in
# web/translations/vi/LC_MESSAGES/messages.po, then run it again to compile.
translations: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k lazy_gettext -o web/translations/messages.pot --no-location --sort-output --project mmt-dispensing .
	$(VENV)/bin/pybabel update -i web/translations/messages.pot -d web/translations --no-fuzzy-matching --ignore-obsolete
	$(PY) -m web.i18n
	$(VENV)/bin/pybabel compile -d web/translations
