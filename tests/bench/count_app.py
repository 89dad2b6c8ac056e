"""examples/fastapi/app.py behind a per-process request counter, for bench_balance.sh.

Every worker process writes the number of HTTP requests it has been given to
$BENCH_COUNT_DIR/PID (replaced atomically, 0.2 s after the first request not yet written), so
the share of requests each worker got can be read the same way under any supervisor, without
an access log (gunicorn's `%(p)s` access-log atom is not used by UvicornWorker, whose access
lines come from uvicorn's logger). Needs examples/fastapi on sys.path (PYTHONPATH).
"""
import asyncio
import os

from app import app as inner

_dir = os.environ["BENCH_COUNT_DIR"]
_count = 0
_scheduled = False


def _flush():
    global _scheduled
    _scheduled = False
    pid = str(os.getpid())
    tmp = os.path.join(_dir, "." + pid)
    with open(tmp, "w") as f:
        f.write(str(_count))
    os.replace(tmp, os.path.join(_dir, pid))


async def app(scope, receive, send):
    global _count, _scheduled
    if scope["type"] == "http":
        _count += 1
        if not _scheduled:
            _scheduled = True
            asyncio.get_running_loop().call_later(0.2, _flush)
    await inner(scope, receive, send)
