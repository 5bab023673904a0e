"""``dynflow executor``: an executor world in its own process."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from dynflow import logs
from dynflow.errors import DynflowError

log = logging.getLogger(__name__)


def parse_queues(specs: Sequence[str]) -> dict[str, int]:
    queues = {}
    for spec in specs:
        name, _, size = spec.partition("=")
        if not name or not size.isdigit() or int(size) < 1:
            raise ValueError(f"--queue {spec!r}: expected NAME=SIZE with SIZE >= 1")
        queues[name] = int(size)
    return queues


def serve(
    database_url: str,
    *,
    imports: Sequence[str],
    queues: Sequence[str],
    pool_size: int,
    terminate_timeout: float,
    heartbeat_interval: float = 5.0,
    lease: float = 15.0,
    validity_check_interval: float = 5.0,
    ping_timeout: float = 2.0,
    log_level: str | None = None,
    log_format: str = "text",
    metrics_port: int | None = None,
    auto_execute: bool = True,
    code_version: str | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; the process exit code."""
    try:
        logs.configure(log_level or os.environ.get("DYNFLOW_LOG_LEVEL", "INFO"), log_format)
    except ValueError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    if metrics_port is not None:
        try:
            import prometheus_client
        except ImportError:
            log.error(
                "cannot start: --metrics-port needs prometheus-client: "
                "pip install 'pydynflow[metrics]'"
            )
            return 2
    sys.path.insert(0, os.getcwd())  # modules next to where the executor is started
    try:
        extra = parse_queues(queues)
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        return 2
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            log.error("cannot start: --import %s: %s", module, exc)
            return 2
        except Exception as exc:  # the module itself is broken: show where
            log.error(
                "cannot start: --import %s failed: %s: %s",
                module,
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            return 2
    if not imports:
        log.warning("no --import given: only action classes importable by name can run here")
    from dynflow.world import World

    try:
        world = World(
            database_url,
            executor=True,
            pool_size=pool_size,
            queues=extra,
            connector="database",
            terminate_timeout=terminate_timeout,
            heartbeat_interval=heartbeat_interval,
            lease=lease,
            validity_check_interval=validity_check_interval,
            ping_timeout=ping_timeout,
            metrics=metrics_port is not None,
            auto_execute=auto_execute,
            code_version=code_version,
        )
    except DynflowError as exc:
        log.error("cannot start: %s", exc)
        return 1
    server = None
    if metrics_port is not None and world.observe.metrics is not None:
        try:
            server, _ = prometheus_client.start_http_server(
                metrics_port, registry=world.observe.metrics.registry
            )
        except OSError as exc:
            log.error("cannot start: --metrics-port %d: %s", metrics_port, exc)
            world.terminate()
            return 1
        log.info("metrics of world %s on port %d, at /metrics", world.id, metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: terminating", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "executor world %s serving queues %s on %s, code version %s",
        world.id,
        ", ".join(f"{name}={size}" for name, size in world.config.all_queues.items()),
        world.persistence.url,
        world.config.code_version or "any",
    )
    while not stop.wait(1.0):
        pass
    world.terminate()
    if server is not None:
        server.shutdown()
        server.server_close()
    log.info("executor world %s terminated", world.id)
    return 0
