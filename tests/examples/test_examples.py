"""The scripts in examples/ run and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("hello.py", "stopped success Hello, world!"),
        (
            "orchestrate.py",
            "stopped success ['core-pkg-0.rpm', 'core-pkg-1.rpm', 'core-pkg-2.rpm']",
        ),
        ("resume_and_skip.py", "after skip + resume: stopped warning"),
        (
            "webhook.py",
            "stopped success {'deployed': 'billing', 'approved_by': 'release-manager'}",
        ),
    ],
)
def test_example_runs(script: str, expected: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert (tmp_path / "examples.sqlite3").exists()
