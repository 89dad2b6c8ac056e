"""Run an ASGI app (FastAPI, Starlette, ...) under uvicorn as a workerd worker.

    /usr/bin/python3 -m workerd_uvicorn main:app [uvicorn options]

It serves on the socket workerd hands over (LISTEN_FDS, or --fd N) and speaks the worker
protocol (docs/worker-protocol.md): READY once the app's startup has run, heartbeats from a task
on the event loop (so a blocked loop is caught), and request statistics from an ASGI middleware.
Outside workerd (no WORKERD_NOTIFY_FD) it is plain uvicorn on the given socket.
"""

from workerd_uvicorn.protocol import Notifier, RequestStats, StatsMiddleware

__all__ = ["Notifier", "RequestStats", "StatsMiddleware"]
