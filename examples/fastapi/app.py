"""A small FastAPI app served by workerd through uvicorn (see config/uvicorn.yaml).

Each worker is `python3 -m uvicorn app:app --fd {fd}`: uvicorn accepts on the socket the
daemon opened and handed over as fd 3, so the daemon owns the port and its accept queue.
"""

import asyncio
import os

from fastapi import FastAPI

app = FastAPI(title="workerd example")


@app.get("/")
async def root():
    return {"message": "hello from FastAPI under workerd", "pid": os.getpid(),
            "slot": os.environ.get("WORKERD_SLOT")}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.get("/io")
async def io(ms: int = 100):
    """Waits without blocking the event loop (an awaited I/O call)."""
    await asyncio.sleep(min(ms, 60000) / 1000)
    return {"waited_ms": ms}


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}
