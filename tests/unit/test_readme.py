"""README.md documents every setting: the table between the settings-table markers has one row
per field of hub.settings.Settings, with the right environment variable and default, and no row
for a setting that no longer exists. Adding or changing a setting without updating the README
fails here, with the row to write."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import PydanticUndefined

from hub.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
ROW = re.compile(r"^\|\s*`(?P<env>[A-Z][A-Z0-9_]*)`\s*\|\s*(?P<default>[^|]*?)\s*\|")


def env_name(field: str) -> str:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def shown(default: Any) -> str:
    """How the README writes a default: `value`, or *(empty)* / *(unset)*."""
    if default is None:
        return "*(unset)*"
    if default == "":
        return "*(empty)*"
    return f"`{default}`"


def table() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"README.md lacks the {START} ... {END} markers"
    body = text.split(START, 1)[1].split(END, 1)[0]
    rows: dict[str, str] = {}
    for line in body.splitlines():
        m = ROW.match(line.strip())
        if m is None:
            continue
        assert m["env"] not in rows, f"README.md lists {m['env']} twice"
        rows[m["env"]] = m["default"]
    return rows


def fields() -> dict[str, Any]:
    out = {}
    for name, info in Settings.model_fields.items():
        default = info.default
        if default is PydanticUndefined:
            pytest.fail(f"setting {name} has no default; the README table cannot show one")
        out[env_name(name)] = default
    return out


def test_every_setting_is_in_the_readme_table() -> None:
    rows = table()
    missing = {env: d for env, d in fields().items() if env not in rows}
    assert not missing, "README.md settings table lacks:\n" + "\n".join(
        f"| `{env}` | {shown(d)} | <what it does> |" for env, d in missing.items()
    )


def test_readme_defaults_match_the_code() -> None:
    rows = table()
    wrong = {
        env: (rows[env], shown(d))
        for env, d in fields().items()
        if env in rows and rows[env] != shown(d)
    }
    assert not wrong, "README.md settings table has stale defaults:\n" + "\n".join(
        f"{env}: README says {readme}, code says {code}" for env, (readme, code) in wrong.items()
    )


def test_readme_table_has_no_setting_that_does_not_exist() -> None:
    stale = sorted(set(table()) - set(fields()))
    assert not stale, f"README.md documents settings that hub/settings.py no longer has: {stale}"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert "make run" in head and "make test" in head
