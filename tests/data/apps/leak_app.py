"""A FastAPI app that leaks memory on every request, for the max_rss recycling test."""
from fastapi import FastAPI

app = FastAPI()
_kept = []


@app.get("/leak")
async def leak():
    _kept.append(bytearray(16 * 1024))  # never freed
    return {"kept": len(_kept)}
