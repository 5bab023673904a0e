"""The outbox: answers written in the background, in order, in batches, retried."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

import pytest

from dynflow.cluster.connector.messages import Done, Envelope
from dynflow.cluster.connector.outbox import Outbox
from tests.support import eventually


def answer(n: int, receiver: str = "client") -> Envelope:
    return Envelope("executor", receiver, f"request-{n}", Done(n))


class Recorder:
    """A connector that records batches; it may block, fail or know receivers gone."""

    def __init__(self, failures: int = 0, gone: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[Envelope]] = []
        self.failures = failures
        self.gone = gone
        self.release = threading.Event()
        self.release.set()
        self.writing = threading.Event()

    def send_many(self, batch: Sequence[Envelope]) -> set[str]:
        self.writing.set()
        self.release.wait(10)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database went away")
        self.batches.append([e for e in batch if e.receiver_id not in self.gone])
        return {e.receiver_id for e in batch} & self.gone

    @property
    def written(self) -> list[Envelope]:
        return [e for batch in self.batches for e in batch]


def test_answers_posted_while_a_batch_is_written_go_in_the_next_one_in_order() -> None:
    recorder = Recorder()
    outbox = Outbox(recorder, "outbox-test")
    outbox.start()
    recorder.release.clear()
    outbox.post(answer(0))
    assert recorder.writing.wait(5)  # the first write is under way (and held)
    for n in range(1, 101):
        outbox.post(answer(n))
    recorder.release.set()

    eventually(lambda: len(recorder.written) == 101)
    outbox.stop()

    assert recorder.written == [answer(n) for n in range(101)]
    assert [len(b) for b in recorder.batches] == [1, 100]


def test_a_failed_write_is_tried_again_and_nothing_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(failures=2)
    outbox = Outbox(recorder, "outbox-test")
    outbox.start()
    for n in range(3):
        outbox.post(answer(n))

    eventually(lambda: len(recorder.written) == 3)
    outbox.stop()

    assert recorder.written == [answer(n) for n in range(3)]
    assert re.search(r"cannot write [123] answers: trying again", caplog.text)


def test_stop_writes_what_was_posted_and_answers_to_gone_worlds_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dynflow.cluster.connector.outbox")
    recorder = Recorder(gone=frozenset({"left"}))
    outbox = Outbox(recorder, "outbox-test")
    outbox.start()
    posted = [answer(0), answer(1, "left"), answer(2)]
    for envelope in posted:
        outbox.post(envelope)

    outbox.stop()

    assert recorder.written == [posted[0], posted[2]]
    assert "world left is gone" in caplog.text


def test_stop_gives_up_on_a_write_that_keeps_failing(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(failures=10**6)
    outbox = Outbox(recorder, "outbox-test")
    outbox.start()
    outbox.post(answer(0))

    outbox.stop(timeout=0.2)

    assert recorder.written == []
    assert "dropping 1 answers" in caplog.text
