"""A malformed rule table stops start-up with a message naming the file and key."""

import shutil
from pathlib import Path

import pytest

import run
from dispensing.rules import RuleTableError
from dispensing.settings import PROJECT_ROOT, load_settings


@pytest.fixture
def broken_rules(tmp_path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(PROJECT_ROOT / "config" / "rules", rules)
    core = rules / "core" / "vn-3140.toml"
    text = core.read_text(encoding="utf-8")
    assert "first_dose_max_mg" in text
    # Replace the value of first_dose_max_mg with text where a number belongs.
    lines = [
        line.replace(line.split("value", 1)[1].split(",", 1)[0], ' = "thirty"')
        if line.strip().startswith("first_dose_max_mg") and "value" in line else line
        for line in text.splitlines()
    ]
    core.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rules


def test_create_app_refuses_a_malformed_table(broken_rules, database):
    from web import create_app

    settings = load_settings(environ={}, overrides={"env": "testing", "rules_dir": broken_rules})
    with pytest.raises(RuleTableError) as caught:
        create_app({"TESTING": True}, settings=settings, database=database)
    assert "vn-3140.toml" in str(caught.value)
    assert "first_dose_max_mg" in str(caught.value)


def test_run_py_prints_the_file_and_key_and_exits(broken_rules, monkeypatch, capsys):
    monkeypatch.setenv("MMT_RULES_DIR", str(broken_rules))
    assert run.main(["serve", "--port", "0"]) == 78
    err = capsys.readouterr().err
    assert "cannot start" in err and "vn-3140.toml" in err and "first_dose_max_mg" in err
