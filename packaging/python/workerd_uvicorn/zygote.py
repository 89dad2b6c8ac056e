"""Preloaded workers: one process per generation imports the app once; workers fork from it.

The zygote is started by workerd like a worker, with one more descriptor: its end of a
SOCK_SEQPACKET socket pair (WORKERD_ZYGOTE_FD). It imports the app, freezes what it collected
(gc.freeze: the pages stay shared, the collector does not touch them), and then answers fork
requests from the daemon, one message each:

    daemon -> zygote: JSON {"env": {NAME: VALUE, ...}, "fds": [TARGET, ...], "parent": PID}
                      with SCM_RIGHTS: the descriptors that become fds TARGET... in the worker
                      (its stdout, stderr, protocol pipe...)
    zygote -> daemon: JSON {"pid": PID} once the worker exists, or {"error": "..."}

A worker is forked twice (zygote -> intermediate -> worker; the intermediate exits at once), so
that it is reparented to the daemon, which is a child subreaper (PR_SET_CHILD_SUBREAPER): the
daemon reaps it, signals it and reads its memory as it does a worker it spawned itself. Once
reparented, the worker asks to be killed with the daemon (PR_SET_PDEATHSIG), as spawned
workers do from the start. The listening sockets come with each request too (the zygote opens
none, so a reload's new listeners and reuse_port's per-slot sockets work the same).

The zygote names itself "workerd-zygote" (what ps and top show); each worker takes back the
name it started with. When the daemon closes its end, the zygote exits.
"""

import ctypes
import json
import os
import signal
import socket
import time

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
ZYGOTE_NAME = b"workerd-zygote"
_MAX_MESSAGE = 256 * 1024
_MAX_FDS = 64  # stdout, stderr, the listeners, the protocol pipe, the load board
# How long a new worker waits to be reparented to the daemon before it gives up.
REPARENT_TIMEOUT = 5.0


class ForkError(Exception):
    """A fork request that cannot be served (malformed, or fork failed)."""


def receive(sock):
    """One fork request: (request dict, [fds]); None when the daemon closed its end."""
    data, fds, flags, _ = socket.recv_fds(sock, _MAX_MESSAGE, _MAX_FDS)
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
        for fd in fds:
            os.close(fd)
        raise ForkError(f"bad fork request: more than {_MAX_FDS} descriptors or {_MAX_MESSAGE} bytes")
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    try:
        request = json.loads(data)
        if not isinstance(request, dict) or not isinstance(request.get("env"), dict) \
                or not isinstance(request.get("fds"), list) or len(request["fds"]) != len(fds) \
                or not all(isinstance(t, int) and t >= 0 for t in request["fds"]) \
                or not isinstance(request.get("parent"), int):
            raise ValueError("expected {env: {...}, fds: [one target per descriptor], parent: pid}")
    except ValueError as e:
        for fd in fds:
            os.close(fd)
        raise ForkError(f"bad fork request: {e}") from None
    return request, fds


def reply(sock, **fields):
    sock.send(json.dumps(fields).encode())


def place_fds(fds, targets, keep=()):
    """Makes each fds[i] the descriptor targets[i] (dup2), whatever their numbers were."""
    # First out of the way of every target, then into place: a descriptor received as 5 that is
    # to become 6 must not be overwritten by one received as 7 that is to become 5.
    moved = [os.dup(fd) if fd in targets or fd < 3 else fd for fd in fds]
    for fd, new in zip(fds, moved):
        if new != fd:
            os.close(fd)
    for fd, target in zip(moved, targets):
        os.dup2(fd, target, inheritable=True)
    for fd in moved:
        if fd not in targets and fd not in keep:
            os.close(fd)


def wait_for_parent(parent, timeout=REPARENT_TIMEOUT):
    """Until this process's parent is `parent` (the daemon); then dies with it. False past timeout."""
    deadline = time.monotonic() + timeout
    while os.getppid() != parent:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent  # not gone between the check and prctl


def set_name(name):
    """This process's name as ps, top and /proc/PID/comm show it (at most 15 bytes)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def process_name():
    with open("/proc/self/comm", "rb") as f:
        return f.read().rstrip(b"\n")


_started_as = None


def become_zygote():
    """Names this process as the zygote; workers forked from it take back the name it had."""
    global _started_as
    _started_as = process_name()
    set_name(ZYGOTE_NAME)


def become_worker(request, fds, zygote_sock):
    """In the new worker: its own process group, descriptors, environment and signals."""
    zygote_sock.close()
    if _started_as is not None:
        set_name(_started_as)
    os.setpgid(0, 0)
    place_fds(fds, request["fds"])
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in request["env"].items()})
    if "LISTEN_FDS" in os.environ:
        os.environ["LISTEN_PID"] = str(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    if not wait_for_parent(request["parent"]):
        os._exit(1)  # the daemon is gone, or never adopted it


def fork_worker(request, fds, zygote_sock):
    """Forks one worker. In the zygote: the worker's pid. In the worker: None (run it)."""
    r, w = os.pipe()
    try:
        intermediate = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        raise ForkError(f"fork: {e}") from None
    if intermediate == 0:
        os.close(r)
        try:
            pid = os.fork()
        except OSError:
            os._exit(1)
        if pid == 0:
            os.close(w)
            become_worker(request, fds, zygote_sock)
            return None
        os.write(w, str(pid).encode())
        os._exit(0)
    os.close(w)
    for fd in fds:
        os.close(fd)
    with os.fdopen(r, "rb") as pipe:
        text = pipe.read()
    os.waitpid(intermediate, 0)
    if not text:
        raise ForkError("the second fork failed")
    return int(text)


def serve(sock, run_worker):
    """Answers fork requests until the daemon closes its end. In each new worker, calls
    `run_worker()` and exits with what it returns."""
    while True:
        try:
            got = receive(sock)
        except ForkError as e:
            reply(sock, error=str(e))
            continue
        if got is None:
            return 0
        request, fds = got
        try:
            pid = fork_worker(request, fds, sock)
        except ForkError as e:
            reply(sock, error=str(e))
            continue
        if pid is None:  # the worker
            code = 1
            try:
                code = run_worker()
            finally:
                os._exit(code if isinstance(code, int) else 1)
        reply(sock, pid=pid)
