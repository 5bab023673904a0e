"""A failing step pauses the plan; the operator resumes it, or skips the step."""

from typing import Any

from dynflow import Action, World

attempts: dict[str, int] = {}


class Flaky(Action):
    def run(self, event: Any = None) -> None:
        attempts[self.execution_plan_id] = attempts.get(self.execution_plan_id, 0) + 1
        if attempts[self.execution_plan_id] == 1:
            raise RuntimeError("the remote API answered 503")
        self.output["ok"] = True


class Broken(Action):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("this step always fails")


class Job(Action):
    def plan(self, broken: bool) -> None:
        self.plan_action(Broken if broken else Flaky)


if __name__ == "__main__":
    with World("sqlite:///examples.sqlite3") as world:
        paused = world.trigger(Job, broken=False).finished.result(timeout=30)
        print("first run:", paused.state, paused.result, paused.errors[0].message)
        resumed = world.resume(paused.id).result(timeout=30)
        print("after resume:", resumed.state, resumed.result)

        paused = world.trigger(Job, broken=True).finished.result(timeout=30)
        failed = next(s for s in paused.steps.values() if s.state == "error")
        world.skip(paused.id, failed.id)
        skipped = world.resume(paused.id).result(timeout=30)
        print("after skip + resume:", skipped.state, skipped.result)
