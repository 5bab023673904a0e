"""The smallest plan: one action, run on the embedded SQLite database."""

from typing import Any

from dynflow import Action, World


class Greet(Action):
    def run(self, event: Any = None) -> None:
        self.output["greeting"] = f"Hello, {self.input['name']}!"


if __name__ == "__main__":
    with World("sqlite:///examples.sqlite3") as world:
        plan = world.trigger(Greet, name="world").finished.result(timeout=30)
        print(plan.state, plan.result, plan.entry_action.output["greeting"])
