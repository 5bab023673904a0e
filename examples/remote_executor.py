"""A client world hands a plan to an executor running in another process.

Needs PostgreSQL (default: postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
or give a URL as the first argument). Starts `dynflow executor` as a subprocess,
triggers a plan from this process (a client world: executor=False), and shows
which world ran it.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

from remote_actions import Thumbnails

from dynflow import World

URL = sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HERE = Path(__file__).parent

executor = subprocess.Popen(
    [
        sys.executable,
        "-m",
        "dynflow.cli.main",
        "executor",
        "--database-url",
        URL,
        "--import",
        "remote_actions",
    ],
    cwd=HERE,
)
try:
    with World(URL, executor=False) as client:
        deadline = time.monotonic() + 30
        while not client.coordinator.find_worlds(active_executors_only=True):
            if time.monotonic() > deadline:
                raise SystemExit("the executor did not start")
            time.sleep(0.1)
        plan = client.trigger(Thumbnails, "cat.png").finished.result(timeout=30)
        print(f"client world   {client.id}")
        for entry in plan.execution_history:
            print(f"{entry.name:<17} by world {entry.world_id}")
        print(plan.state, plan.result, sorted(a.output["size"] for a in plan.actions[1:]))
finally:
    executor.send_signal(signal.SIGTERM)
    executor.wait(30)
