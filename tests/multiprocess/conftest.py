"""Executor subprocesses (``dynflow executor``) for the multi-process tests.

Every executor started here is stopped after its fixture ends: SIGTERM, wait, then
SIGKILL if it does not exit in time. Its stderr goes to a file under the test's
temporary directory; a failing test shows the stderr of the executors alive during it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dynflow.coordinator import Coordinator, WorldRecord
from dynflow.persistence import Persistence, open_persistence
from tests.support import eventually

#: the repository root: executors start there, so ``tests.multiprocess...`` is importable
REPO_ROOT = Path(__file__).resolve().parents[2]
ACTIONS = "tests.multiprocess.remote_actions"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
#: plans and requests between processes: generous, they normally take milliseconds
TIMEOUT = 15.0

#: executors alive during the current test (their stderr is shown when it fails)
_ACTIVE: list[ExecutorProcess] = []


def executor_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "dynflow.cli.main", "executor", "--database-url", url, *args]


@dataclass
class ExecutorProcess:
    """One ``dynflow executor`` subprocess."""

    name: str
    process: subprocess.Popen[bytes]
    stderr_path: Path
    world_id: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code; kills the process (and fails) if it does not exit in time."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"executor {self.name} did not exit within {timeout}s: killed\n"
                + self.log()[-4000:]
            ) from None

    def stop(self) -> int:
        """SIGTERM, wait; SIGKILL when it does not exit in time. The exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class Executors:
    """Starts executor subprocesses on one database and stops them all in ``close``."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.started: list[ExecutorProcess] = []
        self._observer: Persistence | None = None

    @property
    def observer(self) -> Coordinator:
        """Reads the world registry of the database (it registers nothing)."""
        if self._observer is None:
            self._observer = open_persistence(self.url)
        return Coordinator(self._observer.db, "test-observer")

    def start(
        self,
        *args: str,
        imports: Sequence[str] = (ACTIONS,),
        cwd: Path = REPO_ROOT,
        terminate_timeout: float = 10.0,
        url: str | None = None,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> ExecutorProcess:
        """Start ``dynflow executor``; wait until its world is registered and serving.
        ``url``: the database as the executor reaches it (default: this starter's);
        ``prefix``: a command the executor runs under (e.g. ``ip netns exec HOST``);
        ``env``: variables added to its environment."""
        name = f"executor-{len(self.started) + 1}"
        stderr_path = self.directory / f"{name}.stderr"
        command = [*prefix]
        command += executor_command(url or self.url, "--terminate-timeout", str(terminate_timeout))
        for module in imports:
            command += ["--import", module]
        command += args
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env={**os.environ, "DYNFLOW_LOG_LEVEL": "INFO", **(env or {})},
            )
        executor = ExecutorProcess(name, process, stderr_path)
        self.started.append(executor)
        _ACTIVE.append(executor)
        executor.world_id = self._registered(executor).id
        return executor

    def _registered(self, executor: ExecutorProcess) -> WorldRecord:
        def running() -> None:
            if executor.process.poll() is not None:
                raise AssertionError(
                    f"{executor.name} exited with {executor.process.returncode} while starting:"
                    f"\n{executor.log()[-4000:]}"
                )

        def find() -> WorldRecord | None:
            running()
            try:
                worlds = self.observer.find_worlds(active_executors_only=True)
            except Exception:  # e.g. the schema is not there yet
                return None
            return next((w for w in worlds if w.meta.get("pid") == executor.pid), None)

        try:
            found: WorldRecord = eventually(find, timeout=START_TIMEOUT)
            # registered is not ready: it is serving once its start-up recovery is over
            # (a plan planned meanwhile could be taken by that recovery instead of by the
            # executor the client sends it to, failing the client's request)
            serving = f"executor world {found.id} serving"

            def serving_now() -> bool:
                running()
                return serving in executor.log()

            eventually(serving_now, timeout=START_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{executor.name} did not start: {exc}") from None
        return found

    def close(self) -> None:
        for executor in self.started:
            executor.stop()
            if executor in _ACTIVE:
                _ACTIVE.remove(executor)
        if self._observer is not None:
            self._observer.close()


@pytest.fixture
def executors(tmp_path: Path) -> Iterator[Callable[[str], Executors]]:
    """``executors(url)``: a starter of executor processes on ``url``, stopped after the test."""
    made: list[Executors] = []

    def factory(url: str) -> Executors:
        starter = Executors(url, tmp_path)
        made.append(starter)
        return starter

    yield factory
    for starter in made:
        starter.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.failed:
        for executor in _ACTIVE:
            code = executor.process.poll()
            state = "running" if code is None else f"exited with {code}"
            report.sections.append(
                (
                    f"{executor.name} ({executor.world_id or 'unregistered'}, {state}) stderr",
                    executor.log()[-8000:],
                )
            )
    return report
