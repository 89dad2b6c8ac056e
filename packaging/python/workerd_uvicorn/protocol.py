"""The worker protocol, version 3: see docs/worker-protocol.md in the workerd repository."""

import asyncio
import bisect
import contextvars
import itertools
import os
import time

PROTOCOL_VERSION = 3
LATENCY_BUCKETS = 36
# Upper bounds in microseconds: 500 * 2^(k/2), k = 0..34; bucket 35 is everything slower.
_BOUNDS_US = [round(500 * 2 ** (k / 2)) for k in range(LATENCY_BUCKETS - 1)]
QUEUE_BUCKETS = 154
# Queue times (version 2): 125 * 2^(k/8), k = 0..152; bucket 153 is everything slower.
_QUEUE_BOUNDS_US = [round(125 * 2 ** (k / 8)) for k in range(QUEUE_BUCKETS - 1)]

# When the kernel received the bytes being handled (CLOCK_REALTIME, ns; 0: unknown). Set by the
# transport's read (workerd_uvicorn.timestamps) before the HTTP protocol parses them, so the task
# that runs the request inherits it.
received_ns = contextvars.ContextVar("workerd_received_ns", default=0)


def latency_bucket(micros):
    """The protocol's bucket for a latency in microseconds."""
    return bisect.bisect_left(_BOUNDS_US, micros)


def queue_bucket(micros):
    """The protocol's bucket for a queue time in microseconds."""
    return bisect.bisect_left(_QUEUE_BOUNDS_US, micros)


# Version 3: served requests by how they were answered: 1xx-2xx, 3xx, 4xx, 5xx, and failed (no
# status line: the client went away, the connection failed).
RESPONSE_CLASSES = 5
FAILED = 4


def response_class(status):
    """The protocol's class index for a status code (None: no response, failed)."""
    if status is None or not 100 <= status < 600:
        return FAILED
    return max(0, status // 100 - 2)


def _counts(buckets):
    last = max((k for k, n in enumerate(buckets) if n), default=0)
    return ",".join(str(n) for n in buckets[: last + 1])


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
    """Cumulative request counts, in-flight requests, latency and queue-time histograms.

    `queue_timeout_ms` and `max_concurrency` (0: off) come from WORKERD_QUEUE_TIMEOUT_MS and
    WORKERD_MAX_CONCURRENCY: past them, a request is shed (503 at once).
    """

    def __init__(self, queue_timeout_ms=0, max_concurrency=0):
        self.draining = False  # set at shutdown: responses then say Connection: close
        self.served = 0
        self.sum_us = 0
        self.buckets = [0] * LATENCY_BUCKETS
        self.queue = [0] * QUEUE_BUCKETS
        self.queue_sum_us = 0
        self.shed = 0
        self.responses = [0] * RESPONSE_CLASSES  # 2xx (and 1xx), 3xx, 4xx, 5xx, failed
        self.queue_timeout_us = queue_timeout_ms * 1000
        self.max_concurrency = max_concurrency
        self._inflight = {}
        self._ids = itertools.count()

    @classmethod
    def from_environment(cls, environ=os.environ):
        def number(name):
            text = environ.get(name, "")
            return int(text) if text.isdigit() else 0
        return cls(number("WORKERD_QUEUE_TIMEOUT_MS"), number("WORKERD_MAX_CONCURRENCY"))

    def start(self, queued_us=None):
        """Counts a request in; returns (token, shed): shed when it waited past queue_timeout
        or would be one too many in flight."""
        token = next(self._ids)
        self._inflight[token] = time.monotonic()
        shed = False
        if queued_us is not None:
            self.queue[queue_bucket(queued_us)] += 1
            self.queue_sum_us += queued_us
            shed = 0 < self.queue_timeout_us < queued_us
        if 0 < self.max_concurrency < len(self._inflight):
            shed = True
        return token, shed

    def finish(self, token, shed=False, status=None):
        """`status`: the response's status code; None when no response was sent (failed)."""
        started = self._inflight.pop(token, None)
        if started is None:
            return
        if shed:
            self.shed += 1
            return
        micros = int((time.monotonic() - started) * 1e6)
        self.served += 1
        self.responses[response_class(status)] += 1
        self.sum_us += micros
        self.buckets[latency_bucket(micros)] += 1

    def format(self):
        now = time.monotonic()
        oldest = min(self._inflight.values(), default=now)
        text = (f"served={self.served} inflight={len(self._inflight)} "
                f"oldest_ms={int((now - oldest) * 1000)} sum_us={self.sum_us} buckets={_counts(self.buckets)}")
        if any(self.queue):
            text += f" queue_sum_us={self.queue_sum_us} queue={_counts(self.queue)}"
        if self.shed:
            text += f" shed={self.shed}"
        if any(self.responses):
            text += f" responses={_counts(self.responses)}"
        return text


_SHED_BODY = b"Service Unavailable\n"


class StatsMiddleware:
    """ASGI middleware that counts HTTP requests into a RequestStats."""

    def __init__(self, app, stats):
        self.app = app
        self.stats = stats

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        stamp = received_ns.get()
        queued_us = max(0, (time.time_ns() - stamp) // 1000) if stamp else None
        token, shed = self.stats.start(queued_us)
        stats = self.stats
        status = None

        async def send_closing(message):
            nonlocal status
            # While draining, every response ends its connection, so clients move to a worker
            # that is staying instead of having an idle connection closed under them.
            if stats.draining and message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = dict(message, headers=headers + [(b"connection", b"close")])
            if message["type"] == "http.response.start":
                status = message.get("status", 200)
            await send(message)

        try:
            if shed:
                return await send_unavailable(send_closing)
            await self.app(scope, receive, send_closing)
            if status is None:
                status = 500  # the app returned without a response: uvicorn answers 500
        except (asyncio.CancelledError, OSError):
            raise  # the client went away, or the connection failed: no answer (failed)
        except Exception:
            if status is None:
                status = 500  # uvicorn answers an exception before the response with 500
            raise
        finally:
            self.stats.finish(token, shed, status)


async def send_unavailable(send):
    """503 with Retry-After, without running the app: a shed request."""
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"1"),
                            (b"content-length", str(len(_SHED_BODY)).encode())]})
    await send({"type": "http.response.body", "body": _SHED_BODY})
