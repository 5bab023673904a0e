"""``dynflow demo``: provision a small environment and watch the plan live."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from dynflow import Action, ExecutionPlan, World
from dynflow.errors import DynflowError
from dynflow.execution_plan.states import StepState

PACE = {"seconds": 0.4}
_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


def _work(factor: float = 1.0) -> None:
    time.sleep(PACE["seconds"] * factor)


class CreateNetwork(Action):
    label = "Create network"

    def run(self, event: Any = None) -> None:
        _work()
        self.output["network_id"] = f"net-{self.input['name']}"
        self.output["cidr"] = "10.20.0.0/24"


class AllocateDisk(Action):
    label = "Allocate disk"

    def run(self, event: Any = None) -> None:
        _work(0.5)
        self.output["disk_id"] = f"disk-{self.input['machine']}"


class BootMachine(Action):
    label = "Boot machine"

    def run(self, event: Any = None) -> None:
        for tenth in range(1, 4):
            _work(0.3)
            self.report_progress(tenth / 3)
        self.output["ip"] = f"10.20.0.{10 + self.input['index']}"
        self.output["network_id"] = self.input["network_id"]


class InstallPackages(Action):
    """Fails the first time for the machine named ``flaky``: the mirror times out."""

    label = "Install packages"

    def run(self, event: Any = None) -> None:
        _work(0.6)
        key = f"{self.execution_plan_id}:{self.input['machine']}"
        with _attempts_lock:
            _attempts[key] = _attempts.get(key, 0) + 1
            attempt = _attempts[key]
        if self.input["machine"].endswith("db") and attempt == 1:
            raise ConnectionError("package mirror timed out while installing postgresql")
        self.output["packages"] = list(self.input["packages"])


class ProvisionMachine(Action):
    def plan(self, name: str, index: int, network: Any, packages: list[str]) -> None:
        with self.sequence():
            disk = self.plan_action(AllocateDisk, machine=name)
            boot = self.plan_action(
                BootMachine,
                machine=name,
                index=index,
                disk_id=disk.output["disk_id"],
                network_id=network.output["network_id"],
            )
            self.plan_action(InstallPackages, machine=name, ip=boot.output["ip"], packages=packages)
        self.plan_self(name=name)

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"Provision {self.input.get('name', 'machine')}"


class RegisterInventory(Action):
    label = "Register inventory"

    def plan(self, environment: str, machines: list[str]) -> None:
        self.plan_self(environment=environment, machines=machines)

    def finalize(self) -> None:
        self.output["registered"] = list(self.input["machines"])


class ProvisionEnvironment(Action):
    label = "Provision environment"

    def plan(self, environment: str) -> None:
        machines = {
            f"{environment}-web": ["nginx"],
            f"{environment}-app": ["python3"],
            f"{environment}-db": ["postgresql"],
        }
        with self.sequence():
            network = self.plan_action(CreateNetwork, name=environment)
            with self.concurrence():
                for index, (name, packages) in enumerate(machines.items()):
                    self.plan_action(ProvisionMachine, name, index, network, packages)
        self.plan_action(RegisterInventory, environment, list(machines))


_STYLE = {
    StepState.PENDING: ("·", "dim"),
    StepState.RUNNING: ("▶", "bold yellow"),
    StepState.SUSPENDED: ("⏸", "cyan"),
    StepState.WAITING: ("⟳", "yellow"),
    StepState.SUCCESS: ("✔", "green"),
    StepState.ERROR: ("✖", "bold red"),
    StepState.SKIPPED: ("↷", "magenta"),
    StepState.SKIPPING: ("↷", "magenta"),
    StepState.CANCELLED: ("⊘", "red"),
}


def render(plan: ExecutionPlan) -> Group:
    """A tree of the plan's actions with their run/finalize step states."""
    header = Text.assemble(
        (f"{plan.label} ", "bold"),
        (f"{plan.state}/{plan.result}", _plan_style(plan)),
        f"  progress {plan.progress:5.0%}  plan {plan.id}",
    )
    children: dict[int | None, list[Any]] = {}
    for action in plan.actions:
        children.setdefault(action.parent_action_id, []).append(action)

    def add(node: Tree, parent_id: int | None) -> None:
        for action in children.get(parent_id, []):
            branch = node.add(_action_line(plan, action))
            add(branch, action.id)

    tree = Tree(header)
    add(tree, None)
    return Group(tree)


def _action_line(plan: ExecutionPlan, action: Any) -> Text:
    line = Text(action.label)
    for step_id, phase in ((action.run_step_id, "run"), (action.finalize_step_id, "finalize")):
        if step_id is None:
            continue
        step = plan.steps[step_id]
        symbol, style = _STYLE[step.state]
        line.append(f"  {symbol} {phase}", style=style)
        if step.state is StepState.RUNNING and 0 < step.progress_done < 1:
            line.append(f" {step.progress_done:.0%}", style=style)
        if step.ended_at and step.real_time:
            line.append(f" {step.real_time:.2f}s", style="dim")
        if step.error is not None:
            line.append(f"  {step.error.message}", style="red")
    return line


def _plan_style(plan: ExecutionPlan) -> str:
    return {"success": "green", "warning": "magenta", "error": "red"}.get(
        str(plan.result), "yellow"
    )


def _watch(world: World, plan_id: str, done: Any, live: Live) -> ExecutionPlan:
    while not done.done():
        live.update(render(world.persistence.load_execution_plan(plan_id)))
        time.sleep(0.1)
    plan: ExecutionPlan = done.result()
    live.update(render(world.persistence.load_execution_plan(plan_id)))
    return plan


def run_demo(database_url: str, *, fast: bool = False, console: Console | None = None) -> int:
    """Run the demo; returns the process exit code."""
    console = console or Console()
    PACE["seconds"] = 0.0 if fast else 0.4
    try:
        world = World(database_url)
    except DynflowError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    with world:
        console.print(
            Panel.fit(
                "Provisioning environment [bold]demo[/]: a network, then three machines in "
                "concurrence (disk → boot → packages each), then registering the inventory.\n"
                "Installing packages on [bold]demo-db[/] fails the first time.",
                title="pydynflow demo",
            )
        )
        triggered = world.trigger(ProvisionEnvironment, "demo")
        with Live(console=console, refresh_per_second=10, transient=False) as live:
            plan = _watch(world, triggered.execution_plan_id, triggered.finished, live)
        if plan.state == "paused":
            failed = [s for s in plan.steps.values() if s.state is StepState.ERROR]
            console.print(
                f"\n[bold red]The plan paused[/]: {len(failed)} step(s) failed "
                f"({', '.join(str(s.error) for s in failed)}).\n"
                "An operator fixes the cause and resumes: only the failed step runs again.\n"
            )
            resumed = world.resume(plan.id)
            with Live(console=console, refresh_per_second=10) as live:
                plan = _watch(world, plan.id, resumed, live)
        _summary(console, world, world.persistence.load_execution_plan(plan.id))
        return 0 if plan.result == "success" else 1


def _summary(console: Console, world: World, plan: ExecutionPlan) -> None:
    table = Table(title="Execution history", show_lines=False)
    table.add_column("time (UTC)")
    table.add_column("event")
    table.add_column("world")
    for entry in plan.execution_history:
        table.add_row(entry.time.strftime("%H:%M:%S.%f")[:-3], entry.name, entry.world_id or "")
    console.print(table)
    register = next(a for a in plan.actions if a.action_class.endswith("RegisterInventory"))
    console.print(
        f"Result: [bold]{plan.state}/{plan.result}[/] in {plan.real_time:.2f}s "
        f"({plan.execution_time:.2f}s of step time); registered {register.output.get('registered')}"
    )
    console.print(
        f"The plan, its {len(plan.steps)} steps and {len(plan.actions)} actions are stored in "
        f"[bold]{world.persistence.url}[/] (tables dynflow_*). Plan id: {plan.id}"
    )
