"""Sequence and concurrence, with outputs of earlier actions passed by reference."""

from typing import Any

from dynflow import Action, World


class FetchRepository(Action):
    def run(self, event: Any = None) -> None:
        self.output["packages"] = [f"{self.input['name']}-pkg-{i}" for i in range(3)]


class BuildPackage(Action):
    def run(self, event: Any = None) -> None:
        self.output["artifact"] = f"{self.input['package']}.rpm"


class Publish(Action):
    def run(self, event: Any = None) -> None:
        self.output["published"] = sorted(self.input["artifacts"])


class Release(Action):
    def plan(self, repository: str) -> None:
        with self.sequence():
            fetch = self.plan_action(FetchRepository, name=repository)
            with self.concurrence():
                builds = [
                    self.plan_action(BuildPackage, package=fetch.output["packages"][i])
                    for i in range(3)
                ]
            self.plan_action(Publish, artifacts=[b.output["artifact"] for b in builds])


if __name__ == "__main__":
    with World("sqlite:///examples.sqlite3") as world:
        plan = world.trigger(Release, "core").finished.result(timeout=30)
        publish = next(a for a in plan.actions if a.action_class.endswith("Publish"))
        print(plan.state, plan.result, publish.output["published"])
