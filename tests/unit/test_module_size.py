"""Modules stay small enough to read in one sitting."""

from __future__ import annotations

from pathlib import Path

import dynflow

LIMIT = 500


def test_no_engine_module_is_longer_than_the_limit() -> None:
    root = Path(dynflow.__file__).parent
    long = {
        str(path.relative_to(root)): n
        for path in root.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert long == {}, f"split these modules (over {LIMIT} lines): {long}"
