"""The inline executor: runs plans in the calling thread, one step at a time, deterministically."""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Future

from dynflow.executor.core import ExecutorCore
from dynflow.executor.front import ExecutorFront
from dynflow.executor.messages import Message, Terminate
from dynflow.executor.runner import StepRunner


class InlineExecutor(ExecutorFront):
    """Same core as the threaded executor; posting a request runs it to the end."""

    #: the world runs plan hooks in the calling thread too
    inline = True

    def __init__(self, core: ExecutorCore, runner: StepRunner) -> None:
        self.core = core
        self.runner = runner
        runner.report = self.post
        core.post = self.post
        core.limits.gate.post = self.post
        self._inbox: deque[Message] = deque()
        self._draining = False

    def post(self, message: Message) -> None:
        self._inbox.append(message)
        self.drain()

    def terminate(self, timeout: float | None) -> None:
        self.post(Terminate(Future()))

    def alive(self) -> bool:
        """Always: it runs in its callers' threads."""
        return True

    def drain(self) -> None:
        """Handle messages and run released work until nothing is left."""
        if self._draining:  # posted from inside a running step: the outer drain handles it
            return
        self._draining = True
        try:
            while self._inbox:
                while self._inbox:
                    self.core.handle(self._inbox.popleft())
                work, callbacks = self.core.flush()
                for item in work:
                    if self.runner.is_async(item):
                        self._inbox.append(asyncio.run(self.runner.run_async(item)))
                    else:
                        self._inbox.append(self.runner.run(item))
                for callback in callbacks:
                    callback()
        finally:
            self._draining = False
