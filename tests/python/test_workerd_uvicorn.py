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

    def test_answers_are_counted_by_class(self):
        stats = RequestStats()

        def answering(status):
            async def app(scope, receive, send):
                await send({"type": "http.response.start", "status": status, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            return app

        async def raises(scope, receive, send):
            raise RuntimeError("the app failed")

        async def silent(scope, receive, send):
            return None

        async def gone(scope, receive, send):
            raise ConnectionResetError("the client went away")

        async def sink(message):
            pass

        for status in (200, 201, 302, 404, 500):
            asyncio.run(StatsMiddleware(answering(status), stats)({"type": "http"}, None, sink))
        with self.assertRaises(RuntimeError):
            asyncio.run(StatsMiddleware(raises, stats)({"type": "http"}, None, sink))
        asyncio.run(StatsMiddleware(silent, stats)({"type": "http"}, None, sink))
        with self.assertRaises(ConnectionResetError):
            asyncio.run(StatsMiddleware(gone, stats)({"type": "http"}, None, sink))
        # 2xx, 3xx, 4xx, 5xx (500, the exception, no response), failed (the client went away)
        self.assertEqual(stats.responses, [2, 1, 1, 3, 1])
        self.assertEqual(stats.served, 8)
        self.assertIn(" responses=2,1,1,3,1", stats.format())



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


class QueueTest(unittest.TestCase):
    def test_queue_buckets_match_the_daemon(self):
        # daemon/wire/notify.cpp: 125 us * 2^(k/8), 154 buckets.
        from workerd_uvicorn.protocol import QUEUE_BUCKETS, queue_bucket
        self.assertEqual(queue_bucket(0), 0)
        self.assertEqual(queue_bucket(125), 0)
        self.assertEqual(queue_bucket(126), 1)
        self.assertEqual(queue_bucket(250), 8)
        self.assertEqual(queue_bucket(65_536_000), 152)
        self.assertEqual(queue_bucket(65_536_001), QUEUE_BUCKETS - 1)

    def run_request(self, stats, received):
        from workerd_uvicorn.protocol import received_ns
        sent, ran = [], []

        async def app(scope, receive, send):
            ran.append(scope)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        async def send(message):
            sent.append(message)

        async def request():
            received_ns.set(received)
            await StatsMiddleware(app, stats)({"type": "http"}, None, send)

        asyncio.run(request())
        return sent, ran

    def test_queue_time_is_counted_and_past_the_timeout_shed(self):
        import time
        stats = RequestStats(queue_timeout_ms=100)
        sent, ran = self.run_request(stats, time.time_ns() - 20_000_000)  # waited 20 ms
        self.assertEqual((len(ran), sent[0]["status"], stats.served, stats.shed), (1, 200, 1, 0))
        self.assertEqual(sum(stats.queue), 1)
        self.assertGreaterEqual(stats.queue_sum_us, 20_000)
        sent, ran = self.run_request(stats, time.time_ns() - 300_000_000)  # waited 300 ms
        self.assertEqual((len(ran), sent[0]["status"], stats.served, stats.shed), (0, 503, 1, 1))
        self.assertIn((b"retry-after", b"1"), sent[0]["headers"])
        self.assertEqual(sent[1]["body"], b"Service Unavailable\n")
        self.assertEqual(sum(stats.queue), 2)
        text = stats.format()
        self.assertRegex(text, r" queue_sum_us=\d+ queue=[0-9,]+ shed=1( responses=[0-9,]+)?$")
        # Without a timestamp (not TCP), nothing is measured and nothing shed for waiting.
        sent, ran = self.run_request(stats, 0)
        self.assertEqual((len(ran), sum(stats.queue)), (1, 2))

    def test_past_max_concurrency_is_shed(self):
        stats = RequestStats(max_concurrency=1)
        token, shed = stats.start()
        self.assertFalse(shed)
        second, shed = stats.start()
        self.assertTrue(shed)
        stats.finish(second, shed)
        stats.finish(token)
        self.assertEqual((stats.served, stats.shed, sum(stats.buckets)), (1, 1, 1))

    def test_from_environment(self):
        stats = RequestStats.from_environment({"WORKERD_QUEUE_TIMEOUT_MS": "250", "WORKERD_MAX_CONCURRENCY": "8"})
        self.assertEqual((stats.queue_timeout_us, stats.max_concurrency), (250_000, 8))
        stats = RequestStats.from_environment({})
        self.assertEqual((stats.queue_timeout_us, stats.max_concurrency), (0, 0))

    def test_on_unless_turned_off(self):
        from workerd_uvicorn import timestamps
        self.assertTrue(timestamps.wanted({}))
        self.assertFalse(timestamps.wanted({"WORKERD_UVICORN_QUEUE_TIME": "0"}))
        self.assertTrue(timestamps.wanted({"WORKERD_UVICORN_QUEUE_TIME": "0", "WORKERD_QUEUE_TIMEOUT_MS": "500"}))

    def test_reads_carry_the_kernels_receive_time(self):
        # A real loopback connection through asyncio's transport: the stamp the protocol sees
        # is when the bytes arrived, not when the loop got to them.
        import socket
        import time
        from workerd_uvicorn import timestamps
        from workerd_uvicorn.protocol import received_ns

        seen = []

        class Echo(asyncio.Protocol):
            def data_received(self, data):
                seen.append((received_ns.get(), time.time_ns(), data))

        async def wait_seen():
            for _ in range(200):
                if seen:
                    return seen.pop()
                await asyncio.sleep(0.01)
            self.fail("nothing was read")

        async def main():
            listening = socket.socket()
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            timestamps.enable(listening)
            loop = asyncio.get_running_loop()
            server = await loop.create_server(timestamps.timestamping(Echo), sock=listening)
            # The kernel turns stamping on for the first such socket from a work queue, a moment
            # later (net_enable_timestamp): segments before that carry no stamp. (A worker sets
            # it at start, long before its first request.) Until a read carries one, up to 2 s:
            for _ in range(40):
                with socket.create_connection(listening.getsockname()) as probe:
                    probe.sendall(b"probe")
                    if (await wait_seen())[0] != 0:
                        break
                await asyncio.sleep(0.05)
            client = socket.create_connection(listening.getsockname())
            sent_at = time.time_ns()
            client.sendall(b"hello")
            time.sleep(0.05)  # the loop is busy: the bytes wait in the kernel
            result = await wait_seen()
            client.close()
            server.close()
            return sent_at, result

        sent_at, (stamp, handled, data) = asyncio.run(main())
        self.assertEqual(data, b"hello")
        self.assertLess(abs(stamp - sent_at), 5_000_000)  # within 5 ms of the send
        self.assertGreaterEqual(handled - stamp, 45_000_000)  # it waited the 50 ms


if __name__ == "__main__":
    unittest.main()
