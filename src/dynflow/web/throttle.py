"""Slowing down guesses of the console's credentials, per client address.

An address may fail :data:`FREE` times in a row; each failure after that blocks it
for twice as long as the one before (1 s, 2 s, 4 s, ... at most :data:`MAX_BLOCK`),
and an attempt while blocked gets 429 with ``Retry-After``, without its credentials
being checked. A success clears the address. Other addresses are not affected, so an
attacker cannot lock the operator out from another machine. Only attempts that
present credentials count (a wrong Bearer token or Basic password, a wrong token in
the login form): a browser's first request without them is no guess.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

#: failures in a row an address may have before it is blocked
FREE = 5
#: the longest block, in seconds
MAX_BLOCK = 300.0
#: addresses remembered at most (the oldest are forgotten first)
CAPACITY = 10_000


def client_address(request: Request) -> str:
    """The address a request comes from (behind a proxy: the proxy's)."""
    return request.client.host if request.client else "unknown"


class TooManyAttempts(Exception):
    """This address failed too often: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed attempts: try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0


class Throttle:
    """Failed attempts per client address (see the module's text)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Raise :class:`TooManyAttempts` while ``address`` is blocked."""
        with self._lock:
            record = self._records.get(address)
            left = 0.0 if record is None else record.blocked_until - self.clock()
        if left > 0:
            raise TooManyAttempts(max(1.0, left))

    def failed(self, address: str) -> None:
        with self._lock:
            record = self._records.pop(address, None) or _Record()
            record.failures += 1
            if record.failures > FREE:
                block = min(2.0 ** (record.failures - FREE - 1), MAX_BLOCK)
                record.blocked_until = self.clock() + block
            self._records[address] = record  # the latest last: the oldest go first
            while len(self._records) > CAPACITY:
                self._records.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._records.pop(address, None)
