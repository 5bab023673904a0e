"""The documentation's samples work: every ```python block of docs/ runs, and every
``dynflow ...`` command line shown in a shell block is one the CLI accepts.

A page's Python blocks run in order, in one namespace, in a fresh temporary directory
with ``$DYNFLOW_DATABASE_URL`` unset (so ``World()`` makes its SQLite file there). A
block preceded by ``<!-- no-run -->`` is only compiled; use it for code that serves
forever, nothing else.
"""

from __future__ import annotations

import gc
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dynflow import World
from dynflow.cli.main import app

DOCS = Path(__file__).parents[2] / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)
NO_RUN = "<!-- no-run -->"
SHELLS = {"console", "bash", "sh", "shell"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str
    runs: bool


def blocks(page: str) -> list[Block]:
    text = (DOCS / page).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        language = match["info"].strip().split(" ")[0].lower()
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["body"].splitlines())
        before = text[: match.start()].rstrip()
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, language, code, not before.endswith(NO_RUN)))
    return found


def python_pages() -> list[str]:
    return [p for p in PAGES if any(b.language == "python" for b in blocks(p))]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("page", python_pages())
def test_python_samples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNFLOW_DATABASE_URL", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = "docs_" + re.sub(r"\W", "_", page.removesuffix(".md"))
    namespace: dict[str, Any] = {"__name__": module}
    try:
        for block in blocks(page):
            if block.language != "python":
                continue
            where = f"{page}:{block.line}"
            compiled = compile(block.code, where, "exec")
            if block.runs:
                try:
                    exec(compiled, namespace)
                except Exception as exc:
                    raise AssertionError(f"the sample at {where} failed: {exc!r}") from exc
    finally:
        for value in list(namespace.values()):
            if isinstance(value, World):
                value.terminate()
        namespace.clear()
        gc.collect()


def test_no_run_is_rare() -> None:
    """Only code that never returns (a server) may be left unrun."""
    unrun = [f"{b.page}:{b.line}" for p in PAGES for b in blocks(p) if not b.runs]
    assert len(unrun) <= 3, unrun


def test_every_page_is_in_the_site() -> None:
    nav = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p for p in PAGES if f": {p}" not in nav]
    assert not missing, f"pages left out of mkdocs.yml's nav: {missing}"


# -- shell samples ---------------------------------------------------------------------


def command_lines(block: Block) -> list[str]:
    """The ``dynflow ...`` commands of a shell block (continuations joined, prompts and
    comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block.code)
    commands = []
    for raw in joined.splitlines():
        line = raw.strip().removeprefix("$ ")
        if line.startswith("dynflow ") or line == "dynflow":
            commands.append(line)
    return commands


def shell_commands() -> list[tuple[str, str]]:
    return [
        (f"{b.page}:{b.line}", command)
        for p in PAGES
        for b in blocks(p)
        if b.language in SHELLS
        for command in command_lines(b)
    ]


def test_the_docs_show_commands() -> None:
    assert len(shell_commands()) >= 20


@pytest.mark.parametrize(("where", "command"), shell_commands())
def test_shell_commands_parse(where: str, command: str) -> None:
    """Each command shown exists and takes the options shown: the CLI parses it (with
    ``--help`` added, so that nothing runs)."""
    args = shlex.split(command, comments=True)[1:]
    args = args[: args.index("|")] if "|" in args else args
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="dynflow")
    assert result.exit_code == 0, f"{where}: {command!r} does not parse:\n{result.output}"
    assert "Usage: dynflow" in result.output
