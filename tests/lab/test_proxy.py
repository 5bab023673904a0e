"""The lab's proxy against an echo server: it forwards, delays, caps, cuts and heals."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.lab.proxy import Link, LinkThread, ProxyProcess
from tests.support import eventually


class _Echo(socketserver.BaseRequestHandler):
    server: EchoServer

    def handle(self) -> None:
        self.server.opened += 1
        try:
            while data := self.request.recv(65536):
                self.server.received += len(data)
                self.request.sendall(data)
        except OSError:
            pass
        finally:
            self.server.closed += 1


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.opened = self.closed = self.received = 0


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def link(echo: EchoServer) -> Iterator[Link]:
    links = LinkThread()
    yield links.add(("127.0.0.1", 0), echo.server_address[:2])  # type: ignore[arg-type]
    links.close()


def connect(link: Link | tuple[str, int]) -> socket.socket:
    address = link if isinstance(link, tuple) else link.address
    sock = socket.create_connection(address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    began = time.perf_counter()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "closed by the proxy"
        got += chunk
    assert got == payload
    return time.perf_counter() - began


def silent(sock: socket.socket, seconds: float = 0.5) -> bool:
    """Nothing arrives for ``seconds``, and the connection is neither closed nor reset."""
    sock.settimeout(seconds)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(5)
    raise AssertionError(f"expected silence, got {data!r}")


def test_it_forwards_both_ways(link: Link, echo: EchoServer) -> None:
    with connect(link) as sock:
        round_trip(sock, b"x" * 200_000)
    assert echo.received == 200_000
    eventually(lambda: link.stats()["forwarded"] == 400_000, timeout=5)


def test_the_delay_is_added_to_each_direction(link: Link) -> None:
    with connect(link) as sock:
        round_trip(sock)
        link.set_delay(50)
        delayed = min(round_trip(sock) for _ in range(3))
        link.set_delay(0)
        plain = min(round_trip(sock) for _ in range(3))
    assert delayed >= 0.100  # 50 ms each way
    assert delayed < 2.0
    assert plain < delayed - 0.05


def test_pipelined_chunks_are_not_delayed_one_after_another(link: Link) -> None:
    link.set_delay(100)
    with connect(link) as sock:
        began = time.perf_counter()
        for _ in range(10):
            sock.sendall(b"y" * 10)
            time.sleep(0.01)
        got = b""
        while len(got) < 100:
            got += sock.recv(65536)
    assert 0.2 <= time.perf_counter() - began < 1.0  # ~0.3 s, not 10 x 0.2 s


def test_the_bandwidth_cap_slows_a_transfer(link: Link) -> None:
    link.set_bandwidth(200_000)
    with connect(link) as sock:
        took = round_trip(sock, b"z" * 100_000)
    assert took >= 0.45  # 100 kB at 200 kB/s: 0.5 s (the two directions overlap)


def test_a_cut_link_is_silent_and_heal_delivers_what_it_held(link: Link, echo: EchoServer) -> None:
    with connect(link) as sock:
        round_trip(sock)
        link.cut()
        assert link.stats()["cut"]
        sock.sendall(b"during the cut")
        late = connect(link)  # accepted, never answered
        late.sendall(b"new")
        assert silent(sock)
        assert silent(late)
        assert echo.received == 4  # nothing passed the proxy
        assert echo.opened == 1
        link.heal()
        got = b""
        while len(got) < len(b"during the cut"):
            got += sock.recv(65536)
        assert got == b"during the cut"
        assert late.recv(65536) == b"new"
        round_trip(late)
        late.close()
    assert echo.opened == 2


def test_a_dropping_cut_closes_the_server_side_and_resets_the_client_at_heal(
    link: Link, echo: EchoServer
) -> None:
    with connect(link) as sock:
        round_trip(sock)
        link.cut(drop=True)
        eventually(lambda: echo.closed == 1, timeout=5)  # the server forgot it
        assert silent(sock)  # the client does not know yet
        link.heal()
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)
    with connect(link) as sock:  # new connections work
        round_trip(sock)


def test_a_proxy_process_is_steered_through_its_control_socket(echo: EchoServer) -> None:
    proxy = ProxyProcess()
    try:
        remote = proxy.add("db", ("127.0.0.1", 0), echo.server_address[:2])  # type: ignore[arg-type]
        with connect(remote.address) as sock:
            round_trip(sock)
            remote.set_delay(40)
            assert round_trip(sock) >= 0.08
            remote.cut()
            sock.sendall(b"held")
            assert silent(sock)
            assert remote.stats()["cut"]
            remote.heal()
            assert sock.recv(65536) == b"held"
    finally:
        proxy.close()
