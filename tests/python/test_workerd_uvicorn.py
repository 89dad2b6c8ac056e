"""Unit tests of the Python side of the worker protocol."""
import asyncio
import os
import unittest

from workerd_uvicorn.protocol import (LATENCY_BUCKETS, Notifier, RequestStats, StatsMiddleware,
                                      latency_bucket)


class Buckets(unittest.TestCase):
    def test_same_bounds_as_the_daemon(self):
        # The daemon's bounds (daemon/wire/notify.cpp): 500 us * 2^(k/2).
        self.assertEqual(latency_bucket(0), 0)
        self.assertEqual(latency_bucket(500), 0)
        self.assertEqual(latency_bucket(501), 1)
        self.assertEqual(latency_bucket(1000), 2)
        self.assertEqual(latency_bucket(1001), 3)
        self.assertEqual(latency_bucket(65_536_000), 34)
        self.assertEqual(latency_bucket(65_536_001), LATENCY_BUCKETS - 1)


class NotifierTest(unittest.TestCase):
    def test_outside_workerd_it_is_silent(self):
        n = Notifier(environ={})
        self.assertFalse(n.active)
        n.send("READY", "1")  # no-op, no error
        self.assertEqual(n.interval, 1.0)

    def test_writes_lines_and_drops_when_full(self):
        r, w = os.pipe()
        try:
            n = Notifier(environ={"WORKERD_NOTIFY_FD": str(w), "WORKERD_WATCHDOG_USEC": "1500000"})
            self.assertTrue(n.active)
            self.assertAlmostEqual(n.interval, 0.5)
            n.send("READY", "1")
            self.assertEqual(os.read(r, 100), b"READY=1\n")
            for _ in range(100_000):  # far past the pipe's capacity: never blocks
                n.send("WATCHDOG", "1")
        finally:
            os.close(r)
            os.close(w)


class StatsTest(unittest.TestCase):
    def test_middleware_counts_requests(self):
        stats = RequestStats()
        seen = []

        async def app(scope, receive, send):
            seen.append(stats.format())

        mw = StatsMiddleware(app, stats)
        asyncio.run(mw({"type": "http"}, None, None))
        asyncio.run(mw({"type": "lifespan"}, None, None))  # not a request
        self.assertIn("inflight=1", seen[0])
        self.assertEqual(stats.served, 1)
        self.assertTrue(stats.format().startswith("served=1 inflight=0 oldest_ms=0 sum_us="))
        self.assertEqual(sum(stats.buckets), 1)


if __name__ == "__main__":
    unittest.main()


class DrainingTest(unittest.TestCase):
    def test_responses_close_their_connection_while_draining(self):
        stats = RequestStats()
        sent = []

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"), (b"connection", b"keep-alive")]})
            await send({"type": "http.response.body", "body": b"ok"})

        async def send(message):
            sent.append(message)

        mw = StatsMiddleware(app, stats)
        asyncio.run(mw({"type": "http"}, None, send))
        self.assertNotIn((b"connection", b"close"), sent[0]["headers"])
        stats.draining = True
        sent.clear()
        asyncio.run(mw({"type": "http"}, None, send))
        self.assertIn((b"connection", b"close"), sent[0]["headers"])
        self.assertNotIn((b"connection", b"keep-alive"), sent[0]["headers"])
        self.assertEqual(sent[1]["body"], b"ok")


class HangDumpTest(unittest.TestCase):
    def test_busy_threads_in_full_idle_pool_threads_counted(self):
        import concurrent.futures
        import threading

        from workerd_uvicorn.hang_dump import format_other_threads

        release = threading.Event()
        started = threading.Event()

        def busy_somewhere_deep():
            started.set()
            release.wait(10)

        busy = threading.Thread(target=busy_somewhere_deep, name="busy-one")
        busy.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            # Three pool threads that ran something and now wait for work.
            list(pool.map(lambda _: threading.get_ident(), range(30)))
            started.wait(5)
            text = format_other_threads()
            release.set()
        busy.join()
        self.assertIn("busy-one", text)
        self.assertIn("busy_somewhere_deep", text)
        self.assertRegex(text, r"[1-3] idle pool thread\(s\) waiting for work")
        self.assertNotIn("concurrent/futures/thread.py", text)  # idle pool threads are not printed
