"""axe-core, the accessibility checker, installed from npm into ``.cache/axe`` on first
use and injected only into the browser tests' pages."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "axe"
SCRIPT = CACHE / "node_modules" / "axe-core" / "axe.min.js"
VERSION = "4"
#: the impacts a page may not have
FORBIDDEN = {"serious", "critical"}


def axe_script() -> Path:
    """The path of axe.min.js, installing axe-core with npm when missing (failing, never
    skipping, when npm is not there: ``.ci/run`` installs it).

    The test processes (pytest-xdist's workers) share the cache: one installs while the
    others wait on a lock, so that none reads a half-written script."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if SCRIPT.exists():
            return SCRIPT
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install axe-core: apt-get install npm")
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(CACHE),
                f"axe-core@{VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        assert SCRIPT.exists(), f"npm did not install {SCRIPT}"
        return SCRIPT


def violations(page: Page) -> list[dict[str, Any]]:
    """The serious and critical violations axe finds on the page as it is."""
    page.add_script_tag(path=str(axe_script()))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return [v for v in found if v["impact"] in FORBIDDEN]
