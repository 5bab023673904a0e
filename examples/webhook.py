"""Webhooks: another system starts a plan over HTTP, and later wakes its waiting step.

The console app is served in-process here (with Starlette's test client, so the
example needs no port); in production serve ``create_app(...)`` with any ASGI
server and let the other system send ``Authorization: Bearer <token>``.
Needs the ``web`` extra: ``pip install 'pydynflow[web]'``.
"""

import time
from typing import Any

from starlette.testclient import TestClient

from dynflow import Action, World
from dynflow.web import TokenAuth, create_app

TOKEN = "change-me"


class DeployWhenApproved(Action):
    """Plans a deployment, then waits for the approval webhook before it goes on."""

    def plan(self, service: str) -> None:
        self.plan_self(service=service)

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()  # wake me with POST /api/plans/{id}/steps/{step}/event
        self.output["deployed"] = self.input["service"] if event["approved"] else None
        self.output["approved_by"] = event["by"]


def waiting_step(world: World, plan_id: str) -> int:
    for _ in range(100):
        plan = world.persistence.load_execution_plan(plan_id)
        for step in plan.steps.values():
            if step.state == "suspended":
                return step.id
        time.sleep(0.05)
    raise RuntimeError(f"plan {plan_id} never waited for its approval")


if __name__ == "__main__":
    with World("sqlite:///examples.sqlite3") as world:
        app = create_app(world, auth=TokenAuth(TOKEN), triggerable=[DeployWhenApproved])
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with TestClient(app) as http:
            started = http.post(
                "/api/plans",
                json={"action": "DeployWhenApproved", "args": ["billing"]},
                headers=headers,
            )
            plan_id = started.json()["execution_plan_id"]
            print("triggered:", started.status_code, plan_id)

            step_id = waiting_step(world, plan_id)
            approval = {"approved": True, "by": "release-manager"}
            woken = http.post(
                f"/api/plans/{plan_id}/steps/{step_id}/event", json=approval, headers=headers
            )
            print("event:", woken.status_code, woken.json()["message"])

        for _ in range(100):
            plan = world.persistence.load_execution_plan(plan_id)
            if plan.state == "stopped":
                break
            time.sleep(0.05)
        print(plan.state, plan.result, plan.entry_action.output)
