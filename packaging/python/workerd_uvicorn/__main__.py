"""python3 -m workerd_uvicorn APP [uvicorn options]: uvicorn as a workerd worker."""

from workerd_uvicorn.protocol import Notifier, RequestStats, StatsMiddleware

# Speak first, before the heavy imports (uvicorn here, the app later): under `heartbeat: auto`
# workerd then holds this worker to boot_timeout and READY, however long the imports take on
# a busy machine, instead of counting it ready once it has been up `ready_after`.
NOTIFIER = Notifier()
NOTIFIER.send("STATUS", "starting")

# pylint: disable=wrong-import-position,wrong-import-order
import asyncio  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import click  # noqa: E402
import uvicorn  # noqa: E402
from uvicorn.config import LOGGING_CONFIG  # noqa: E402

from workerd_uvicorn import hang_dump, timestamps, zygote  # noqa: E402


# How long idle keep-alive connections stay open once draining starts (as the bundled worker).
DRAIN_IDLE_WINDOW = 1.0


class WorkerdServer(uvicorn.Server):
    """uvicorn's server, saying READY after startup and beating from its own event loop."""

    def __init__(self, config, notifier, stats):
        super().__init__(config)
        self.notifier = notifier
        self.stats = stats
        self._heartbeat = None
        self._taking = []  # connections take_queued took in, until their transports exist

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        self.notifier.send("READY", "1")
        self.notifier.send("STATUS", "serving")
        if self.notifier.active:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self):
        # On the event loop itself: an `async def` that blocks (time.sleep, CPU work) stops
        # these, and workerd replaces the worker after `timeout`.
        while True:
            self.notifier.send("WATCHDOG", "1")
            self.notifier.send("STATS", self.stats.format())
            await asyncio.sleep(self.notifier.interval)

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        # Stop listening at once, not at uvicorn's next look at should_exit (0.1 s): when the
        # whole fleet stops, workerd has closed its copy of the socket, and the kernel refuses
        # new connections as soon as no worker holds it either.
        # A connection asyncio has just accepted gets its transport in a task that runs later;
        # were the server closed before it, asyncio would drop the connection (a reset). So the
        # accept loop stops now and the server closes on the loop's next turn, after them.
        loop = asyncio.get_running_loop()
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                loop.remove_reader(sock.fileno())
            loop.call_soon(close_server, server, self._taking)

    async def shutdown(self, sockets=None):
        self.notifier.send("STOPPING", "1")
        # Drain like the bundled worker, without racing clients: stop accepting, answer the
        # next request on every keep-alive connection with `Connection: close`, and give idle
        # connections a short window before uvicorn closes what is left. (Plain uvicorn closes
        # idle keep-alive connections at once, and a request already on its way is reset.)
        self.stats.draining = True
        for server in self.servers:
            close_server(server, self._taking)  # when this turn came before handle_exit's
        for sock in sockets or []:
            sock.close()
        # What the kernel had queued is being taken in: wait until every such connection has
        # its transport and counts among uvicorn's connections, or the wait below would not
        # see it and the process would end with its request unread (a reset).
        if self._taking:
            await asyncio.gather(*self._taking, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_IDLE_WINDOW
        while self.server_state.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await super().shutdown(sockets=sockets)
        if self._heartbeat is not None:
            self._heartbeat.cancel()


def close_server(server, taking):
    """Stops `server` listening, first taking in what the kernel has queued for it (the tasks
    that do so go into `taking`)."""
    taking.extend(take_queued(server))
    server.close()


def take_queued(server):
    """Takes in the connections the kernel has queued on `server`'s sockets, to be served.

    The last copy of a listening socket to close resets every connection still in its queue:
    one made a moment before a stop would see a reset instead of an answer. (The bundled
    worker does the same when it drains.)
    """
    loop = asyncio.get_running_loop()
    protocol_factory = getattr(server, "_protocol_factory", None)
    tasks = []
    if protocol_factory is None:
        return tasks
    for listening in server.sockets:
        try:
            sock = socket.socket(fileno=os.dup(listening.fileno()))
        except OSError:
            continue
        try:
            sock.setblocking(False)
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:  # BlockingIOError: nothing more is queued
                    break
                conn.setblocking(False)
                tasks.append(loop.create_task(loop.connect_accepted_socket(protocol_factory, conn)))
        finally:
            sock.close()  # the duplicate only
    return tasks


def inherited_socket(fd):
    """The listening socket: --fd N, else the first LISTEN_FDS socket (fd 3)."""
    if fd is None:
        if os.environ.get("LISTEN_FDS", "0") == "0":
            raise SystemExit("workerd_uvicorn: no socket: run it under workerd, or pass --fd N")
        fd = 3
    # socket(fileno=) reads the real family (uvicorn's own --fd assumes AF_UNIX, which loses
    # TCP_NODELAY and the client address on TCP sockets).
    return socket.socket(fileno=fd)


def config_from_args(args):
    """Parses uvicorn's own command line (all its options work) into a Config and the fd."""
    ctx = uvicorn.main.make_context("workerd_uvicorn", list(args))
    params = dict(ctx.params)
    app = params.pop("app")
    fd = params.pop("fd", None)
    for unused in ("version", "host", "port", "uds"):
        params.pop(unused, None)
    if params.get("workers") not in (None, 1) or params.get("reload"):
        raise SystemExit("workerd_uvicorn: --workers and --reload are workerd's job (workers: N)")
    params.pop("workers", None)
    params.pop("reload", None)
    if params.get("log_config") is None:
        params["log_config"] = LOGGING_CONFIG
    for key in ("reload_dirs", "reload_includes", "reload_excludes"):
        params[key] = params.get(key) or None
    params["headers"] = [h.split(":", 1) for h in params.get("headers") or []]
    app_dir = params.pop("app_dir", None)
    if app_dir is not None:
        sys.path.insert(0, app_dir)
    return uvicorn.Config(app, **params), fd


def main(args=None):
    try:
        config, fd = config_from_args(sys.argv[1:] if args is None else args)
    except click.exceptions.Exit as e:  # --help
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2
    # A hung worker may get `timeout_signal: SIGABRT` first: print the stacks then, the event
    # loop's first.
    hang_dump.install()
    zygote_fd = os.environ.get("WORKERD_ZYGOTE_FD")
    if zygote_fd is not None:
        return run_zygote(config, fd, int(zygote_fd))
    sock = inherited_socket(fd)
    NOTIFIER.send("STATUS", "loading the app")
    config.load()
    return serve(config, sock, NOTIFIER)


def serve(config, sock, notifier):
    """Runs the loaded app on `sock` until the worker stops: 0, or 3 when it never started."""
    stats = RequestStats.from_environment()
    config.loaded_app = StatsMiddleware(config.loaded_app, stats)
    # Queue time: the kernel stamps what arrives, each read hands the stamp on (timestamps.py).
    # On unless WORKERD_UVICORN_QUEUE_TIME=0 (and no queue_timeout: shedding needs it).
    if timestamps.wanted(os.environ):
        timestamps.enable(sock)
        config.http_protocol_class = timestamps.timestamping(config.http_protocol_class)
    server = WorkerdServer(config, notifier, stats)
    server.run(sockets=[sock])
    return 0 if server.started else 3


def run_zygote(config, fd, zygote_fd):
    """Preload (zygote.py): imports the app once, says so on the zygote socket, and forks a
    worker for each request from the daemon. Each worker runs the app's lifespan startup itself,
    after the fork, and speaks the worker protocol with its own pipe."""
    zygote_sock = socket.socket(fileno=zygote_fd)
    zygote.become_zygote()
    config.load()  # the import, not the lifespan: connections made there must not be shared
    gc.collect()
    gc.freeze()  # what the import made stays out of the collector's reach: its pages stay shared
    zygote.reply(zygote_sock, ready=os.getpid())

    def run_worker():
        notifier = Notifier()  # this worker's WORKERD_NOTIFY_FD, from the environment it was given
        notifier.send("STATUS", "forked from the zygote")
        return serve(config, inherited_socket(fd), notifier)

    return zygote.serve(zygote_sock, run_worker)


if __name__ == "__main__":
    sys.exit(main())
