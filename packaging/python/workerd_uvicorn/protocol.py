"""The worker protocol, version 1: see docs/worker-protocol.md in the workerd repository."""

import itertools
import os
import time

PROTOCOL_VERSION = 1
LATENCY_BUCKETS = 36
# Upper bounds in microseconds: 500 * 2^(k/2), k = 0..34; bucket 35 is everything slower.
_BOUNDS_US = [round(500 * 2 ** (k / 2)) for k in range(LATENCY_BUCKETS - 1)]


def latency_bucket(micros):
    """The protocol's bucket for a latency in microseconds."""
    lo, hi = 0, LATENCY_BUCKETS - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if micros <= _BOUNDS_US[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


class Notifier:
    """Writes protocol messages to the pipe named by WORKERD_NOTIFY_FD, never blocking.

    Without that variable (running outside workerd) every send is a no-op.
    """

    def __init__(self, environ=os.environ):
        self.fd = None
        fd = environ.get("WORKERD_NOTIFY_FD")
        if fd is not None and fd.isdigit():
            try:
                os.set_blocking(int(fd), False)
                os.set_inheritable(int(fd), False)
                self.fd = int(fd)
            except OSError:
                self.fd = None
        usec = environ.get("WORKERD_WATCHDOG_USEC", "")
        watchdog = int(usec) / 1e6 if usec.isdigit() else 0.0
        # A heartbeat every third of the deadline, at most once a second.
        self.interval = min(1.0, max(0.01, watchdog / 3)) if watchdog else 1.0

    @property
    def active(self):
        return self.fd is not None

    def send(self, key, value):
        if self.fd is None:
            return
        try:
            os.write(self.fd, f"{key}={value}\n".encode())
        except BlockingIOError:
            pass  # the daemon is behind: drop this one, the next heartbeat will do
        except OSError:
            self.fd = None  # the daemon is gone


class RequestStats:
    """Cumulative request counts, in-flight requests and the latency histogram."""

    def __init__(self):
        self.draining = False  # set at shutdown: responses then say Connection: close
        self.served = 0
        self.sum_us = 0
        self.buckets = [0] * LATENCY_BUCKETS
        self._inflight = {}
        self._ids = itertools.count()

    def start(self):
        token = next(self._ids)
        self._inflight[token] = time.monotonic()
        return token

    def finish(self, token):
        started = self._inflight.pop(token, None)
        if started is None:
            return
        micros = int((time.monotonic() - started) * 1e6)
        self.served += 1
        self.sum_us += micros
        self.buckets[latency_bucket(micros)] += 1

    def format(self):
        now = time.monotonic()
        oldest = min(self._inflight.values(), default=now)
        last = max((k for k, n in enumerate(self.buckets) if n), default=0)
        buckets = ",".join(str(n) for n in self.buckets[: last + 1])
        return (f"served={self.served} inflight={len(self._inflight)} "
                f"oldest_ms={int((now - oldest) * 1000)} sum_us={self.sum_us} buckets={buckets}")


class StatsMiddleware:
    """ASGI middleware that counts HTTP requests into a RequestStats."""

    def __init__(self, app, stats):
        self.app = app
        self.stats = stats

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = self.stats.start()
        stats = self.stats

        async def send_closing(message):
            # While draining, every response ends its connection, so clients move to a worker
            # that is staying instead of having an idle connection closed under them.
            if stats.draining and message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = dict(message, headers=headers + [(b"connection", b"close")])
            await send(message)

        try:
            return await self.app(scope, receive, send_closing)
        finally:
            self.stats.finish(token)
