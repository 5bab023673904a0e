"""The inline executor: runs plans in the calling thread, one step at a time, deterministically."""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Future

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.executor.core import ExecutorCore, Halt, Message, Start, Terminate
from dynflow.executor.runner import StepRunner


class InlineExecutor:
    """Same core as the threaded executor; work runs synchronously when posted."""

    def __init__(self, core: ExecutorCore, runner: StepRunner) -> None:
        self.core = core
        self.runner = runner
        self._inbox: deque[Message] = deque()
        self._draining = False

    def post(self, message: Message) -> None:
        self._inbox.append(message)

    def execute(self, plan: ExecutionPlan) -> Future[ExecutionPlan]:
        future: Future[ExecutionPlan] = Future()
        self.post(Start(plan, future))
        self.drain()
        return future

    def recover(
        self, plan: ExecutionPlan, dead_world: str | None, recovering: bool
    ) -> Future[ExecutionPlan]:
        future: Future[ExecutionPlan] = Future()
        self.post(Start(plan, future, dead_world, recovering))
        self.drain()
        return future

    def halt(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        future: Future[ExecutionPlan] = Future()
        self.post(Halt(execution_plan_id, future))
        self.drain()
        return future

    def running(self, execution_plan_id: str) -> bool:
        return execution_plan_id in self.core.plans

    def terminate(self, timeout: float | None) -> None:
        self.post(Terminate(Future()))
        self.drain()

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
