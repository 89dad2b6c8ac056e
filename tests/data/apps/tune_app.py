"""A FastAPI app with the three kinds of route `workerd tune` is judged on (tests/bench/bench_tune.sh).

- /cpu       `async def` that computes for ~20 ms of CPU on the event loop (`?ms=N`: N ms): CPU-bound work
             (templating, JSON, hashing). A worker serves one such request at a time, so more
             workers help only while there are idle cores.
- /io        `async def` that awaits 50 ms (`asyncio.sleep`): a request waiting on a database or
             an API with an async client. One worker overlaps hundreds of them; the limit is the
             Python overhead per request, not the wait.
- /blocking  `def` that sleeps 50 ms (`time.sleep`), run in anyio's thread pool (40 threads by
             default): a blocking client (requests, a sync DB driver). One worker holds at most
             40 at once, i.e. at most 800 req/s, and the threads cost CPU and the GIL.
- /spin      `async def` that computes on the event loop until N ms of wall-clock time have passed
             (`?ms=N`, default 10): a service time that stays the same when the process is
             preempted, for the queue-time test (tests/e2e/queue_test.cpp).
- /healthz   answers at once.

Run it under workerd through workerd_uvicorn (docs/python.md):
    app: {command: [/usr/bin/python3, -m, workerd_uvicorn, tune_app:app, --no-access-log],
          cwd: tests/data/apps, env: {PYTHONPATH: <repo>/packaging/python}}
"""
import asyncio
import time

from fastapi import FastAPI

CPU_SECONDS = 0.020
WAIT_SECONDS = 0.050

app = FastAPI()


def burn(seconds: float) -> int:
    """Computes until this thread has used `seconds` of CPU (not wall time: a busy machine
    stretches the request, not the work). Returns how many rounds it took."""
    end = time.thread_time() + seconds
    rounds = 0
    x = 1
    while time.thread_time() < end:
        for _ in range(200):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        rounds += 1
    return rounds


@app.get("/cpu")
async def cpu(ms: float = CPU_SECONDS * 1000):
    return {"rounds": burn(min(ms, 60_000) / 1000)}


@app.get("/spin")
async def spin(ms: float = 10):
    end = time.perf_counter() + min(ms, 60_000) / 1000
    x = 1
    while time.perf_counter() < end:
        for _ in range(50):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return {"spun_ms": ms}


@app.get("/io")
async def io():
    await asyncio.sleep(WAIT_SECONDS)
    return {"waited_ms": WAIT_SECONDS * 1000}


@app.get("/blocking")
def blocking():
    time.sleep(WAIT_SECONDS)
    return {"slept_ms": WAIT_SECONDS * 1000}


@app.get("/healthz")
async def healthz():
    return {"ok": True}
