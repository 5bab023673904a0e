"""A TCP proxy that adds latency and faults between a world and its database.

Each :class:`Link` listens on one address and forwards every connection to a target
(PostgreSQL). Its knobs change at run time:

- ``delay``: seconds added to each direction (a round trip gets twice that);
- ``bandwidth``: bytes per second per direction and connection (None: no cap);
- ``cut()``: the link goes dead like a pulled cable. Nothing is read, nothing is
  written, no FIN or RST is sent; a new connection is accepted (the proxy's kernel
  does that) but never answered. With ``drop=True`` the database side of every open
  connection is closed at once (the server forgets it, as after its keepalive gave
  up), and at ``heal()`` the client side is reset (as a host answers packets of a
  connection it forgot): the client sees its connections fail only once the link is
  back, as on a real network;
- ``heal()``: forwarding resumes; data held during the cut flows on (TCP would have
  retransmitted it), connections opened during the cut are connected to the target.

Links run on an asyncio loop in a thread of their own (:class:`LinkThread`); their
methods may be called from any thread. ``python -m tests.lab.proxy`` runs links in a
process of their own, steered through a control socket (:class:`ProxyProcess`), so
that a benchmark can count the proxy's CPU apart from the worlds'.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 65536
#: seconds a blocked call on the proxy's loop may take before the caller gives up
CALL_TIMEOUT = 10.0


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Link:
    """One listening address forwarding to one target, with its knobs."""

    def __init__(self, thread: LinkThread, name: str, target: tuple[str, int]) -> None:
        self._thread = thread
        self.name = name
        self.target = target
        self.address: tuple[str, int] = ("", 0)
        self.delay = 0.0
        self.bandwidth: float | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._drop_at_heal = False
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        #: counters: connections accepted, bytes forwarded (both directions), chunks
        #: read from clients (about one per request: a round trip to the database)
        self.accepted = 0
        self.forwarded = 0
        self.requests = 0

    # -- control, from any thread ----------------------------------------------

    @property
    def is_cut(self) -> bool:
        return not self._flowing.is_set()

    def set_delay(self, one_way_ms: float) -> None:
        """Milliseconds added to each direction (the round trip gets twice that)."""
        self.delay = one_way_ms / 1000.0

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        self.bandwidth = bytes_per_second

    def cut(self, drop: bool = False) -> None:
        """Stop forwarding, silently (see the module's docstring for ``drop``)."""
        self._thread.call(self._cut, drop)

    def heal(self) -> None:
        """Forward again."""
        self._thread.call(self._heal)

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": list(self.address),
            "delay_ms": self.delay * 1000,
            "bandwidth": self.bandwidth,
            "cut": self.is_cut,
            "connections": len(self._connections),
            "accepted": self.accepted,
            "forwarded": self.forwarded,
            "requests": self.requests,
        }

    # -- on the loop -------------------------------------------------------------

    async def _listen(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])

    async def _cut(self, drop: bool) -> None:
        self._flowing.clear()
        if drop:
            self._drop_at_heal = True
            for connection in list(self._connections):
                if connection.server is not None:
                    connection.server.transport.abort()

    async def _heal(self) -> None:
        if self._drop_at_heal:
            self._drop_at_heal = False
            for connection in list(self._connections):
                if connection.server is not None:  # opened before the cut: forgotten
                    _reset(connection.client)
        self._flowing.set()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            for task in connection.tasks:
                task.cancel()
            connection.client.transport.abort()
            if connection.server is not None:
                connection.server.transport.abort()
        self._connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            await self._flowing.wait()  # during a cut: accepted, never answered
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            connection.server = up_writer
            connection.tasks = [
                asyncio.ensure_future(self._pipe(reader, up_writer, upstream=True)),
                asyncio.ensure_future(self._pipe(up_reader, writer, upstream=False)),
            ]
            await asyncio.wait(connection.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in connection.tasks:
                task.cancel()
            self._connections.discard(connection)
            writer.transport.abort()
            if connection.server is not None:
                connection.server.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool
    ) -> None:
        """One direction: a reader stamps each chunk with its arrival, a writer delivers
        it ``delay`` later, so that pipelined chunks are not delayed one after another."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(queue, writer))
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                if upstream:
                    self.requests += 1
                await queue.put((time.monotonic(), data))
            await queue.put((0.0, b""))  # end of stream, after what is queued
            await deliver
        finally:
            deliver.cancel()

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], writer: Any) -> None:
        free_at = 0.0  # with a bandwidth cap: when the "wire" is free again
        while True:
            arrived, data = await queue.get()
            if not data:  # the end of the stream: passed on when the link is up
                await self._flowing.wait()
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            due = arrived + self.delay
            if self.bandwidth:  # a chunk is through once all its bytes are
                free_at = max(free_at, arrived) + len(data) / self.bandwidth
                due = max(due, free_at)
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._flowing.wait()
            writer.write(data)
            self.forwarded += len(data)
            await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST (SO_LINGER 0), as a host does for a connection it forgot."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class LinkThread:
    """An asyncio loop in a daemon thread, serving any number of links."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: dict[str, Link] = {}
        self._thread = threading.Thread(target=self._run, name="lab-proxy", daemon=True)
        self._started = threading.Event()
        self.native_id: int | None = None
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        self.loop.close()

    def call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run ``function(*args)`` on the loop; its result."""
        return asyncio.run_coroutine_threadsafe(function(*args), self.loop).result(CALL_TIMEOUT)

    def add(
        self, listen: tuple[str, int], target: tuple[str, int], name: str | None = None
    ) -> Link:
        """A new link listening on ``listen`` (port 0: any free port) forwarding to
        ``target``; its ``address`` is the one it listens on."""
        link = Link(self, name or f"link-{len(self.links) + 1}", target)
        self.call(link._listen, *listen)
        self.links[link.name] = link
        return link

    def close(self) -> None:
        for link in self.links.values():
            self.call(link._close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT)


# -- a proxy process steered through a control socket --------------------------------


def _control_server(links: LinkThread, path: str) -> None:
    """Answer one JSON request per line: {"op": ..., "link": name, ...}."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()
        print("ready", flush=True)
        while True:
            connection, _ = server.accept()
            with connection, connection.makefile("rw") as stream:
                for line in stream:
                    stream.write(json.dumps(_handle(links, json.loads(line))) + "\n")
                    stream.flush()


def _handle(links: LinkThread, request: dict[str, Any]) -> Any:
    try:
        op = request["op"]
        if op == "add":
            listen = (request["host"], int(request.get("port", 0)))
            target = (request["target_host"], int(request["target_port"]))
            return links.add(listen, target, request["link"]).stats()
        if op == "cpu":
            return {"pid": os.getpid()}
        link = links.links[request["link"]]
        if op == "delay":
            link.set_delay(float(request["ms"]))
        elif op == "bandwidth":
            link.set_bandwidth(request.get("bytes_per_second"))
        elif op == "cut":
            link.cut(bool(request.get("drop", False)))
        elif op == "heal":
            link.heal()
        elif op != "stats":
            return {"error": f"unknown op {op!r}"}
        return link.stats()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


class RemoteLink:
    """A link of a :class:`ProxyProcess`: the knobs of :class:`Link`, over its socket."""

    def __init__(self, process: ProxyProcess, name: str, address: tuple[str, int]) -> None:
        self.process = process
        self.name = name
        self.address = address

    def set_delay(self, one_way_ms: float) -> None:
        self.process.request(op="delay", link=self.name, ms=one_way_ms)

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        self.process.request(op="bandwidth", link=self.name, bytes_per_second=bytes_per_second)

    def cut(self, drop: bool = False) -> None:
        self.process.request(op="cut", link=self.name, drop=drop)

    def heal(self) -> None:
        self.process.request(op="heal", link=self.name)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.process.request(op="stats", link=self.name)
        return result


class ProxyProcess:
    """``python -m tests.lab.proxy`` in a process of its own; ``add`` makes links."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or Path(tempfile.gettempdir())
        self.path = str(directory / f"lab-proxy-{os.getpid()}-{time.monotonic_ns()}.sock")
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.lab.proxy", "--control", self.path],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            self.close()
            raise RuntimeError("the proxy process did not start")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(self.path)
        self._stream = self._socket.makefile("rw")

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, **request: Any) -> Any:
        self._stream.write(json.dumps(request) + "\n")
        self._stream.flush()
        answer = json.loads(self._stream.readline())
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def add(self, name: str, listen: tuple[str, int], target: tuple[str, int]) -> RemoteLink:
        stats = self.request(
            op="add",
            link=name,
            host=listen[0],
            port=listen[1],
            target_host=target[0],
            target_port=target[1],
        )
        return RemoteLink(self, name, (stats["address"][0], stats["address"][1]))

    def close(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self._stream.close()
            self._socket.close()
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def main() -> None:
    parser = argparse.ArgumentParser(description="latency- and fault-injecting TCP proxy")
    parser.add_argument("--control", required=True, help="path of the control socket")
    args = parser.parse_args()
    _control_server(LinkThread(), args.control)


if __name__ == "__main__":
    main()
