"""The README's examples, run for real."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, ROOT


def console_block(text: str) -> tuple[list[str], list[str]]:
    block = re.search(r"```console\n(.*?)```", text, re.S)
    assert block, "README has no console example"
    lines = block.group(1).splitlines()
    assert lines[0].startswith("$ ")
    return shlex.split(lines[0][2:]), lines[1:]


def test_validate_example_matches_real_output(tmp_path: Path) -> None:
    argv, expected = console_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert argv[:2] == ["bmhub", "validate"]
    # Build the example's broken file from the small valid fixture, with the two faults the README shows.
    lines = (FIXTURES / "site" / "minimal.yaml").read_text(encoding="utf-8").splitlines()
    text = "\n".join(lines)
    text = text.replace("    security_level: 4\n", "    security_level: 7\n").replace("unit_id: 3}", "unit_id: 300}")
    (tmp_path / argv[2]).write_text(text + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "hub", *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    got = result.stdout.splitlines()
    # The README shows the faults at the lines where the fixture has them.
    assert [re.sub(r":\d+:", ":N:", g) for g in got] == [re.sub(r":\d+:", ":N:", e) for e in expected]
    assert got == expected, "README line numbers are out of date"
