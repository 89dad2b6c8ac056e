"""An import-heavy FastAPI app for the preload benchmarks (tests/bench/bench_footprint.sh):
at import it builds a large read-only table (about 45 MiB of strings), as apps that load a
model, a dictionary or a routing table do. Every worker that imports it has its own copy;
workers forked from a zygote share the zygote's.
"""

import os

from fastapi import FastAPI

ROWS = int(os.environ.get("HEAVY_ROWS", "400000"))
TABLE = tuple(f"row {i:08d}: " + "abcdefghij" * 4 for i in range(ROWS))

app = FastAPI(title="heavy")


@app.get("/")
async def root():
    return {"rows": len(TABLE), "pid": os.getpid()}


@app.get("/row/{i}")
async def row(i: int):
    return {"row": TABLE[i % len(TABLE)]}


@app.get("/healthz")
async def healthz():
    return {"ok": True}
