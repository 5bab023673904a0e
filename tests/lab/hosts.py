"""Hosts as network namespaces: each ``dfhost<i>-<pid>`` has a veth pair to the root
namespace on a /30 of its own in 10.77.0.0/16, and reaches the database only through
a proxy :class:`~tests.lab.proxy.Link` listening on its root-side address (PostgreSQL
listens on 127.0.0.1 of the root namespace, which a namespace cannot reach).

Names carry the test run's pid, so two runs at once do not meet; :class:`Lab` deletes
its namespaces on exit, and deletes those left by runs whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "dfhost"
_NAME = re.compile(rf"^{PREFIX}(\d+)-(\d+)$")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    index: int
    #: the namespace
    name: str
    #: the root namespace's end of the veth pair: where this host's proxy listens
    root_address: str
    #: this host's own address
    address: str
    veth: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


def _used_blocks() -> set[int]:
    """/30 blocks of 10.77.0.0/16 that have an address in the root namespace."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used = set()
    for third, fourth in re.findall(r"inet 10\.77\.(\d+)\.(\d+)", out):
        used.add(int(third) * 64 + int(fourth) // 4)
    return used


def sweep_stale() -> None:
    """Delete namespaces left by test runs whose process is gone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        match = _NAME.match(line.split()[0]) if line.strip() else None
        if match is None:
            continue
        pid = int(match.group(2))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            subprocess.run(["ip", "netns", "del", match.group(0)], capture_output=True)
        except PermissionError:
            pass


class Lab:
    """``count`` hosts; a context manager that always deletes them."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.hosts: list[Host] = []

    def __enter__(self) -> Lab:
        sweep_stale()
        try:
            for index in range(1, self.count + 1):
                self.hosts.append(self._make(index))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self, index: int) -> Host:
        pid = os.getpid()
        name = f"{PREFIX}{index}-{pid}"
        veth = f"dfv{pid}h{index}"  # interface names: at most 15 characters
        _ip("netns", "add", name)
        # the namespace counts as made from here on: close() deletes it, and its veth
        self.hosts.append(Host(index, name, "", "", veth))
        for _ in range(20):
            block = random.choice(sorted(set(range(1, 16384)) - _used_blocks()))
            third, base = divmod(block * 4, 256)
            root, inside = f"10.77.{third}.{base + 1}", f"10.77.{third}.{base + 2}"
            try:
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
                _ip("addr", "add", f"{root}/30", "dev", veth)
                break
            except RuntimeError:  # another run took the block meanwhile: another one
                with contextlib.suppress(RuntimeError):
                    _ip("link", "del", veth)
        else:
            raise RuntimeError("no free /30 in 10.77.0.0/16")
        _ip("link", "set", veth, "up")
        _ip("-n", name, "addr", "add", f"{inside}/30", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        self.hosts.pop()
        return Host(index, name, root, inside, veth)

    def close(self) -> None:
        for host in self.hosts:
            # deleting the namespace deletes its end of the pair, and with it ours
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True)
        self.hosts.clear()
