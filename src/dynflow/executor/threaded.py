"""The threaded executor: one core thread, a worker pool per queue, an event loop for async."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from dynflow.errors import PersistenceError
from dynflow.executor.commit import Batch
from dynflow.executor.core import ExecutorCore
from dynflow.executor.front import ExecutorFront
from dynflow.executor.messages import Abandon, Message, Terminate
from dynflow.executor.runner import StepRunner
from dynflow.executor.work import Work

log = logging.getLogger(__name__)

_BATCH = 1000  # messages handled before one commit at most
_RETRY_SECONDS = 0.5


class WorkerPool:
    """``size`` threads running the phases of one queue.

    Waiting work runs by its plan's priority, the highest first, and in order of
    arrival among equal priorities. The priority is strict: while work of a higher
    priority keeps coming, work of a lower one waits (it can starve).

    A thread whose step timed out (``run_timeout``) cannot be killed: :meth:`abandon`
    starts a thread in its place, and the stuck one ends once its step returns. At
    most ``size`` such extra threads live at a time per queue; past that, a timed-out
    step keeps its thread until it returns (its attempt has failed all the same).
    """

    def __init__(self, name: str, size: int, runner: StepRunner, done: Any) -> None:
        self.name = name
        self.size = size
        #: (-priority, arrival, work); None (stop) comes after any work
        self._queue: queue.PriorityQueue[tuple[float, int, Work | None]] = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._runner = runner
        self._done = done
        self._lock = threading.Lock()
        #: the thread running each hand-out: (plan, step, run, sequence) -> thread
        self._busy: dict[tuple[str, int, int, int], threading.Thread] = {}
        #: threads replaced by abandon(), ending when their step returns
        self._abandoned: set[threading.Thread] = set()
        self._count = 0
        self._threads: list[threading.Thread] = []
        for _ in range(size):
            self._start_thread()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"dynflow-{self.name}-{self._count}", daemon=True
        )
        self._count += 1
        self._threads.append(thread)
        thread.start()

    def submit(self, work: Work) -> None:
        self._queue.put((-work.priority, next(self._arrivals), work))

    def waiting(self) -> int:
        """Work items waiting for a thread now."""
        return self._queue.qsize()

    def busy(self) -> int:
        """Workers running a step now (read without the lock: a gauge, not a count)."""
        return len(self._busy)

    def threads(self) -> int:
        """Threads alive in the pool now (``size`` plus those replacing stuck ones)."""
        with self._lock:
            return len(self._threads)

    def abandon(self, key: tuple[str, int, int, int]) -> bool:
        """Give the slot of the thread running hand-out ``key`` back: start another
        thread (False if the bound of ``size`` extra threads is reached, or the step
        already returned)."""
        with self._lock:
            thread = self._busy.get(key)
            if thread is None or thread in self._abandoned or len(self._abandoned) >= self.size:
                return False
            self._abandoned.add(thread)
            self._start_thread()
            return True

    def _work(self) -> None:
        me = threading.current_thread()
        while (work := self._queue.get()[2]) is not None:
            key = (work.execution_plan_id, work.step_id, work.run, work.sequence)
            with self._lock:
                self._busy[key] = me
            try:
                done = self._runner.run(work)
            except BaseException as exc:  # the runner's own failure: the step fails, not the pool
                log.exception(
                    "running step %s of plan %s failed", work.step_id, work.execution_plan_id
                )
                done = self._runner.failed(work, exc)
            self._done(done)
            with self._lock:
                self._busy.pop(key, None)
                if me in self._abandoned:  # replaced while stuck: the pool has its size
                    self._abandoned.discard(me)
                    self._threads.remove(me)
                    return

    def alive(self) -> bool:
        with self._lock:
            return all(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float | None) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put((math.inf, next(self._arrivals), None))
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))


class ThreadedExecutor(ExecutorFront):
    #: a batch made when no message waits is written by the core thread itself, which
    #: saves the hand-over to the writer thread; False: every batch goes to the writer
    write_when_idle = True

    def __init__(self, core: ExecutorCore, runner: StepRunner, queues: dict[str, int]) -> None:
        self.core = core
        self.runner = runner
        runner.report = self.post
        core.post = self.post
        core.release = self._release
        core.limits.gate.post = self.post
        core.limits.gate.start()
        #: async steps running on the loop, by hand-out (cancelled at their run_timeout)
        self._async: dict[tuple[str, int, int, int], Future[Any]] = {}
        self._inbox: queue.SimpleQueue[Message | _Written] = queue.SimpleQueue()
        self.pools = {
            name: WorkerPool(name, size, runner, self.post) for name, size in queues.items()
        }
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self.loop.run_forever, name="dynflow-asyncio", daemon=True
        )
        self._loop_thread.start()
        #: what killed the core thread, if anything did
        self.failure: BaseException | None = None
        #: batches for the writer thread (one at a time), None to stop it
        self._writes: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._writer_thread = threading.Thread(
            target=self._writer, name="dynflow-executor-writer", daemon=True
        )
        self._writer_thread.start()
        self._thread = threading.Thread(target=self._run, name="dynflow-executor", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """False once the core thread or a worker died: the world must stop heartbeating
        (so that other worlds take its plans over), never beat over a dead executor."""
        return (
            self.failure is None
            and self._thread.is_alive()
            and self._loop_thread.is_alive()
            and self._writer_thread.is_alive()
            and all(pool.alive() for pool in self.pools.values())
        )

    def post(self, message: Message) -> None:
        self._inbox.put(message)

    def pool_use(self) -> dict[str, int]:
        """Workers running a step now, per queue (a gauge: read without locks)."""
        return {name: pool.busy() for name, pool in self.pools.items()}

    def terminate(self, timeout: float | None) -> None:
        done: Future[None] = Future()
        self.post(Terminate(done))
        abandoned = not self._thread.is_alive()  # a dead core cannot terminate its plans
        try:
            if not abandoned:
                done.result(timeout)
        except TimeoutError:
            log.warning("steps still running after %ss: abandoning them", timeout)
            self.post(Abandon())
            done.result(30)
            abandoned = True
        self._inbox.put(Terminate(Future()))  # wakes the loop to notice it is done
        self._thread.join(30)
        self._writes.put(None)
        self._writer_thread.join(5)
        self.core.limits.gate.stop()
        for pool in self.pools.values():  # abandoned steps' threads are not waited for
            pool.stop(0 if timeout == 0 or abandoned else 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(5)
        self.loop.close()

    def _forget(self, key: tuple[str, int, int, int], _: Future[Any]) -> None:
        self._async.pop(key, None)

    def _release(self, plan_id: str, step_id: int, run: int, sequence: int) -> None:
        """A hand-out timed out: cancel it if it is async, else give its thread's slot
        back (see :meth:`WorkerPool.abandon`)."""
        key = (plan_id, step_id, run, sequence)
        running = self._async.get(key)
        if running is not None:
            running.cancel()
            return
        for pool in self.pools.values():
            if pool.abandon(key):
                return

    # -- the core thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # recorded: alive() reports it
            self.failure = exc
            log.critical(
                "the executor core thread died: this world stops heartbeating, so "
                "that other worlds take its plans over",
                exc_info=exc,
            )

    def _serve(self) -> None:
        """Handle messages; commit what they changed. While a batch is being written
        (by the writer thread) the next messages are handled into the next batch, so
        the core is not idle during commits under load; a batch made when no message
        waits is written here, which saves the hand-over to the writer (latency)."""
        writing = False
        while writing or not self.core.terminated:
            messages = [self._inbox.get()]
            while len(messages) < _BATCH:
                try:
                    messages.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            for message in messages:
                if isinstance(message, _Written):
                    self._hand_out(*self._settle(message.batch))
                    writing = False
                    continue
                try:
                    self.core.handle(message)
                except Exception:
                    log.exception("executor failed to handle %r", message)
            if writing or not self.core.pending():
                continue
            batch = self.core.begin_flush()
            if self.write_when_idle and self._inbox.empty():
                self._write(batch)
                self._hand_out(*self._settle(batch))
            else:
                writing = True
                self._writes.put(batch)

    def _writer(self) -> None:
        while (batch := self._writes.get()) is not None:
            self._write(batch)
            self._inbox.put(_Written(batch))

    def _write(self, batch: Batch) -> None:
        while True:
            try:
                self.core.write(batch)
                return
            except PersistenceError as exc:  # keep everything and retry: nothing is lost
                log.error("cannot persist executor state, retrying: %s", exc)
                time.sleep(_RETRY_SECONDS)

    def _settle(self, batch: Batch) -> tuple[list[Work], list[Callable[[], None]]]:
        while True:
            try:
                return self.core.end_flush(batch)
            except PersistenceError as exc:  # written plan by plan when it went away
                log.error("cannot persist executor state, retrying: %s", exc)
                time.sleep(_RETRY_SECONDS)
                self._write(batch)

    def _hand_out(self, work: list[Work], callbacks: list[Callable[[], None]]) -> None:
        for item in work:
            if self.runner.is_async(item):
                key = (item.execution_plan_id, item.step_id, item.run, item.sequence)
                self._async[key] = self.runner.run_on_loop(item, self.loop, self.post)
                self._async[key].add_done_callback(partial(self._forget, key))
            else:
                self.pools[item.queue].submit(item)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a future's callback failed")


class _Written:
    """Posted to the core by the writer thread: ``batch`` was written."""

    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
