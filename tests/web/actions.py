"""Actions the web console tests run (module level: stored plans name them by path)."""

from __future__ import annotations

from typing import Any

from dynflow import Action, Cancellable, Retry
from tests.support import Gate

#: payloads a hostile action could put in its label, input, output and error
XSS = "<script>alert('xss')</script>"
XSS_IMG = '<img src=x onerror="alert(1)">'
XSS_SVG = "<svg onload=alert(2)>"
#: keys of Flaky plans that still fail
FAILING: set[str] = set()


class Flaky(Action):
    """Fails (and so pauses its plan) while its key is in FAILING."""

    def run(self, event: Any = None) -> None:
        if self.input["key"] in FAILING:
            raise RuntimeError(f"{self.input['key']} is still failing")
        self.output["done"] = True


class Two(Action):
    """A sequence of two Flaky steps and a concurrence of two more."""

    def plan(self, key: str) -> None:
        with self.sequence():
            self.plan_action(Flaky, key=key)
            with self.concurrence():
                self.plan_action(Flaky, key=f"{key}-a")
                self.plan_action(Flaky, key=f"{key}-b")


class Hostile(Action):
    """Every field it controls carries markup; its run fails so the plan pauses."""

    label = XSS

    def plan(self, payload: str) -> None:
        self.plan_self(payload=payload, html=XSS_IMG)

    def run(self, event: Any = None) -> None:
        self.output["html"] = XSS_IMG
        self.output[XSS] = "key too"
        raise RuntimeError(XSS_SVG)


class Waiting(Cancellable, Action):
    """Suspends until an event or a cancel comes."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["event"] = event


#: gates Blocking steps wait at, by their key
GATES: dict[str, Gate] = {}


class Blocking(Action):
    """Holds its worker thread until the test opens its gate."""

    def run(self, event: Any = None) -> None:
        GATES[self.input["key"]].pass_through()


class Retried(Action):
    """Fails with ConnectionError while its key is in FAILING, retried 3 times."""

    retry = Retry(attempts=3, backoff=60.0, jitter=0.0, on=(ConnectionError,))

    def run(self, event: Any = None) -> None:
        if self.input["key"] in FAILING:
            raise ConnectionError(f"{self.input['key']} refused")
        self.output["done"] = True


#: keys of Undone plans whose revert fails
REVERT_FAILING: set[str] = set()


class Undone(Action):
    """Runs, and knows how to undo itself (its revert fails while its key is in
    REVERT_FAILING)."""

    def run(self, event: Any = None) -> None:
        self.output["done"] = True

    def revert(self) -> None:
        if self.input["key"] in REVERT_FAILING:
            raise RuntimeError(f"{self.input['key']}: cannot undo")
        self.output["undone"] = True
