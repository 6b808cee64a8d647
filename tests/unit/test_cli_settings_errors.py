"""A wrong setting stops the command with one line per problem, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def test_invalid_settings_are_named_with_value_and_rule() -> None:
    env = {**os.environ, "EAI_PORT": "abc", "EAI_MAX_WEBHOOK_BYTES": "1000", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "topics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out
    assert "EAI_PORT='abc': Input should be a valid integer" in out
    assert "EAI_MAX_WEBHOOK_BYTES='1000': Input should be greater than or equal to 1024" in out
