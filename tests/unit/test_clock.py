"""Clocks: the manual clock fires only when advanced, the thread clock in real time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from dynflow.clock import ManualClock, ThreadClock

# -- ManualClock ---------------------------------------------------------------------------


def recorder(log: list[str], name: str, clock: ManualClock) -> Callable[[], None]:
    return lambda: log.append(f"{name}@{clock.now()}")


def test_manual_clock_fires_nothing_until_advanced() -> None:
    clock = ManualClock()
    log: list[str] = []
    clock.schedule(0, recorder(log, "now", clock))
    clock.schedule(1, recorder(log, "later", clock))
    assert log == []
    assert clock.pending() == 2
    assert clock.now() == 0.0


def test_manual_clock_fires_due_callbacks_in_time_order() -> None:
    clock = ManualClock(start=100.0)
    log: list[str] = []
    clock.schedule(5, recorder(log, "c", clock))
    clock.schedule(1, recorder(log, "a", clock))
    clock.schedule(3, recorder(log, "b", clock))
    clock.schedule(10, recorder(log, "d", clock))

    assert clock.advance(0.5) == 0
    assert log == []
    assert clock.advance(4.5) == 3  # now 105: a, b and c (exactly due) fire
    assert log == ["a@101.0", "b@103.0", "c@105.0"]
    assert clock.now() == 105.0
    assert clock.pending() == 1
    assert clock.advance(5) == 1
    assert log[-1] == "d@110.0"
    assert clock.pending() == 0


def test_manual_clock_keeps_scheduling_order_for_equal_times() -> None:
    clock = ManualClock()
    log: list[str] = []
    for name in ("first", "second", "third"):
        clock.schedule(2, recorder(log, name, clock))
    clock.advance(2)
    assert log == ["first@2.0", "second@2.0", "third@2.0"]


def test_negative_delay_is_due_now() -> None:
    clock = ManualClock(start=10)
    log: list[str] = []
    clock.schedule(-5, recorder(log, "x", clock))
    assert clock.advance(0) == 1
    assert log == ["x@10"]


def test_manual_clock_cancel() -> None:
    clock = ManualClock()
    log: list[str] = []
    timer = clock.schedule(1, recorder(log, "cancelled", clock))
    clock.schedule(2, recorder(log, "kept", clock))
    timer.cancel()
    assert clock.pending() == 1
    assert clock.advance(5) == 1
    assert log == ["kept@2.0"]


def test_callback_scheduled_by_a_callback_fires_within_the_same_advance() -> None:
    clock = ManualClock()
    log: list[str] = []

    def poll() -> None:
        log.append(f"poll@{clock.now()}")
        if len(log) < 5:
            clock.schedule(1, poll)

    clock.schedule(1, poll)
    assert clock.advance(3.5) == 3
    assert log == ["poll@1.0", "poll@2.0", "poll@3.0"]
    assert clock.now() == 3.5
    assert clock.advance(10) == 2
    assert log[3:] == ["poll@4.0", "poll@5.0"]


def test_manual_clock_stop_drops_timers() -> None:
    clock = ManualClock()
    log: list[str] = []
    clock.schedule(1, recorder(log, "x", clock))
    clock.stop()
    assert clock.advance(5) == 0
    assert log == []


# -- ThreadClock ---------------------------------------------------------------------------


@pytest.fixture
def thread_clock() -> Iterator[ThreadClock]:
    clock = ThreadClock()
    yield clock
    clock.stop()


def test_thread_clock_fires_a_scheduled_callback(thread_clock: ThreadClock) -> None:
    fired = threading.Event()
    thread_clock.schedule(0.01, fired.set)
    assert fired.wait(5)


def test_thread_clock_fires_in_time_order_never_early(thread_clock: ThreadClock) -> None:
    fired: list[tuple[float, float]] = []  # (due, fired at)
    all_fired = threading.Event()
    delays = [0.06, 0.0, 0.03, 0.01]

    def schedule(delay: float) -> None:
        due = thread_clock.now() + delay

        def callback() -> None:
            fired.append((due, thread_clock.now()))
            if len(fired) == len(delays):
                all_fired.set()

        thread_clock.schedule(delay, callback)

    for delay in delays:
        schedule(delay)
    assert all_fired.wait(5)
    dues = [due for due, _ in fired]
    assert dues == sorted(dues)
    assert all(at >= due for due, at in fired)


def test_thread_clock_cancel(thread_clock: ThreadClock) -> None:
    cancelled = threading.Event()
    after = threading.Event()
    timer = thread_clock.schedule(0.02, cancelled.set)
    timer.cancel()
    thread_clock.schedule(0.05, after.set)
    assert after.wait(5)
    assert not cancelled.is_set()


def test_a_failing_callback_does_not_stop_the_clock(
    thread_clock: ThreadClock, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    fired = threading.Event()
    thread_clock.schedule(0, boom)
    thread_clock.schedule(0.01, fired.set)
    assert fired.wait(5)
    assert "clock callback failed" in caplog.text


def test_thread_clock_stops() -> None:
    clock = ThreadClock()
    fired = threading.Event()
    clock.schedule(60, fired.set)
    clock.stop()
    assert not clock._thread.is_alive()
    assert not fired.is_set()


def test_thread_clock_now_is_monotonic(thread_clock: ThreadClock) -> None:
    first = thread_clock.now()
    assert thread_clock.now() >= first
