"""Login rate limits (issue 13: guesses were unlimited).

Wrong tokens are counted per client address, on the login form and on the API's bearer header
alike: after :data:`FAILURES_PER_ADDRESS` in :data:`FAILURE_WINDOW_S` that address gets 429 until
the oldest failure leaves the window. Logins are also counted per token name, since each one
opens a server-side session: :data:`LOGINS_PER_NAME` an hour is far above a person's needs and
stops a leaked token from filling the sessions table.

Counts live in memory, per process, in a bounded table (the least recently seen keys are dropped
first), so a flood of spoofed addresses costs at most ``max_keys * limit`` timestamps. The
stdlib suffices; the rate-limit libraries for Starlette add storage back-ends we do not need.
Behind a reverse proxy, start uvicorn with ``--forwarded-allow-ips`` so the client address is the
caller's, not the proxy's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

FAILURES_PER_ADDRESS = 10
FAILURE_WINDOW_S = 300.0
LOGINS_PER_NAME = 20
LOGIN_WINDOW_S = 3600.0


class SlidingWindow:
    """At most ``limit`` events per key in any ``window_s`` seconds.

    Examples
    --------
    >>> now = [0.0]
    >>> window = SlidingWindow(limit=2, window_s=60, clock=lambda: now[0])
    >>> window.hit("10.0.0.1"); window.hit("10.0.0.1")
    >>> window.retry_after("10.0.0.1")
    60
    >>> now[0] = 61.0
    >>> window.retry_after("10.0.0.1")
    0
    """

    def __init__(
        self,
        *,
        limit: int,
        window_s: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # sync routes run in a thread pool

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 if it may now."""
        with self._lock:
            events = self._events.get(key)
            if events is None:
                return 0
            now = self.clock()
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) < self.limit:
                return 0
            return max(1, int(events[0] + self.window_s - now + 0.999))

    def hit(self, key: str) -> None:
        """Count one event for ``key``."""
        with self._lock:
            events = self._events.pop(key, None) or deque(maxlen=self.limit)
            events.append(self.clock())
            self._events[key] = events  # most recently seen last
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)

    def __len__(self) -> int:
        return len(self._events)


@dataclass
class LoginLimits:
    """The service's two windows (``app.state.login_limits``)."""

    failures_per_address: SlidingWindow = field(
        default_factory=lambda: SlidingWindow(limit=FAILURES_PER_ADDRESS, window_s=FAILURE_WINDOW_S)
    )
    logins_per_name: SlidingWindow = field(
        default_factory=lambda: SlidingWindow(limit=LOGINS_PER_NAME, window_s=LOGIN_WINDOW_S)
    )
