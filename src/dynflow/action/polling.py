"""Polling actions: start external work, then poll it until it is done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from dynflow.action.events import POLL, is_engine_event


class Polling:
    """Mixin: ``run`` starts the external task, then suspends and polls it.

    Implement ``invoke_external_task()`` (start the work, return its state as
    JSON), ``poll_external_task()`` (return the new state) and ``done()``
    (read ``self.external_task``). Polls wait ``poll_intervals`` seconds (the
    last one repeats); an error while polling is retried ``poll_max_retries``
    times before it fails the step. ``external_task_progress()`` may return
    0.0-1.0 to report progress.
    """

    poll_intervals: ClassVar[Sequence[float]] = (0.5, 1, 2, 4, 8, 16)
    #: delivered to a suspended step when its plan starts again (resume, recovery):
    #: the clock's pending poll was lost with the previous executor
    resume_event: ClassVar[Any] = POLL
    poll_max_retries: ClassVar[int] = 3

    # provided by dynflow.Action
    output: Any
    suspend: Any
    plan_event: Any
    report_progress: Any

    def invoke_external_task(self) -> Any:
        """Start the external work; return its state (JSON), kept as ``external_task``."""
        raise NotImplementedError(f"{type(self).__name__} must implement invoke_external_task()")

    def poll_external_task(self) -> Any:
        """Ask the external work how it is going; return its new state (JSON)."""
        raise NotImplementedError(f"{type(self).__name__} must implement poll_external_task()")

    def done(self) -> bool:
        """Whether the external work is finished, judged from ``self.external_task``."""
        raise NotImplementedError(f"{type(self).__name__} must implement done()")

    def external_task_progress(self) -> float | None:
        """How far the external work is, 0.0-1.0, reported as the step's progress;
        None (the default) reports nothing."""
        return None

    @property
    def external_task(self) -> Any:
        """The external work's last known state, kept in the action's output."""
        return self.output.get("external_task")

    @external_task.setter
    def external_task(self, value: Any) -> None:
        self.output["external_task"] = value

    def run(self, event: Any = None) -> None:
        if event is None and "external_task" not in self.output:
            self.external_task = self.invoke_external_task()
        elif event is None or is_engine_event(event, POLL):
            self._poll()
        else:
            self.on_event(event)
        progress = self.external_task_progress()
        if progress is not None:
            self.report_progress(progress)
        if not self.done():
            self.plan_event(POLL, self.poll_interval())
            self.suspend()

    def on_event(self, event: Any) -> None:
        """An event other than a poll arrived; default: poll now."""
        self._poll()

    def poll_interval(self) -> float:
        attempts = int(self.output.get("poll_attempts", {}).get("total", 0))
        intervals = list(self.poll_intervals) or [1.0]
        return float(intervals[min(attempts, len(intervals) - 1)])

    def _poll(self) -> None:
        attempts = dict(self.output.get("poll_attempts", {"total": 0, "failed": 0}))
        attempts["total"] = attempts.get("total", 0) + 1
        try:
            self.external_task = self.poll_external_task()
            attempts["failed"] = 0
        except Exception:
            attempts["failed"] = attempts.get("failed", 0) + 1
            self.output["poll_attempts"] = attempts
            if attempts["failed"] > self.poll_max_retries:
                raise
            return
        finally:
            self.output["poll_attempts"] = attempts
