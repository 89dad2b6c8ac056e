"""A FastAPI app with the seeds' two kinds of slow route, for the heartbeat tests."""
import os
import time

from fastapi import FastAPI

app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.get("/whoami")
async def whoami():
    return {"pid": os.getpid()}


@app.get("/block")
async def block():
    # The classic mistake: a blocking call inside `async def` stalls the whole event loop.
    time.sleep(30)
    return {"slept": 30}


@app.get("/sleep-in-thread")
def sleep_in_thread():
    # A plain `def` route runs in the thread pool; the event loop stays free.
    time.sleep(5)
    return {"slept": 5}


@app.get("/nap")
def nap():
    # A plain `def` route in the thread pool: 40 at once fill anyio's pool of 40 threads.
    time.sleep(0.3)
    return {"slept": 0.3}
