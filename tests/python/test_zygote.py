"""workerd_uvicorn.zygote: the fork server of preloaded workers, with real processes."""
import ctypes
import json
import os
import socket
import unittest

from workerd_uvicorn import zygote

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class ZygoteTest(unittest.TestCase):
    """This test process plays the daemon: a child subreaper holding one end of the pair."""

    def setUp(self):
        become_subreaper()
        self.daemon_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.zygote = os.fork()
        if self.zygote == 0:  # the zygote: each worker reports what it was given, on its fd 1
            self.daemon_end.close()

            def run_worker():
                os.write(1, json.dumps({"ppid": os.getppid(), "pgid": os.getpgid(0), "pid": os.getpid(),
                                        "slot": os.environ.get("WORKERD_SLOT"),
                                        "notify": os.fstat(7).st_ino if _open(7) else None,
                                        "zygote_fd_closed": not _open(zygote_end_fd)}).encode())
                return 0

            zygote_end_fd = zygote_end.fileno()
            os._exit(zygote.serve(zygote_end, run_worker))
        zygote_end.close()

    def tearDown(self):
        self.daemon_end.close()  # the zygote exits when the daemon closes its end
        _, status = os.waitpid(self.zygote, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)

    def fork(self, env, fds, targets):
        request = {"env": env, "fds": targets, "parent": os.getpid()}
        socket.send_fds(self.daemon_end, [json.dumps(request).encode()], fds)
        return json.loads(self.daemon_end.recv(65536))

    def test_a_worker_is_the_daemons_child_with_its_own_fds_env_and_group(self):
        out_r, out_w = os.pipe()
        notify_r, notify_w = os.pipe()
        answer = self.fork({"WORKERD_SLOT": "3"}, [out_w, notify_w], [1, 7])
        os.close(out_w)
        os.close(notify_w)
        self.assertIn("pid", answer, answer)
        said = json.loads(read_all(out_r))
        os.close(out_r)
        # Reaped here: the daemon's child, not the zygote's.
        pid, status = os.waitpid(answer["pid"], 0)
        self.assertEqual((pid, os.waitstatus_to_exitcode(status)), (answer["pid"], 0))
        self.assertEqual(said["pid"], answer["pid"])
        self.assertEqual(said["ppid"], os.getpid())
        self.assertEqual(said["pgid"], answer["pid"])  # its own process group
        self.assertEqual(said["slot"], "3")
        self.assertEqual(said["notify"], os.fstat(notify_r).st_ino)  # fd 7 is the pipe given
        self.assertTrue(said["zygote_fd_closed"])
        os.close(notify_r)

    def test_two_workers_and_a_bad_request_between_them(self):
        pids = []
        for slot in ("0", "1"):
            out_r, out_w = os.pipe()
            answer = self.fork({"WORKERD_SLOT": slot}, [out_w], [1])
            os.close(out_w)
            self.assertEqual(json.loads(read_all(out_r))["slot"], slot)
            os.close(out_r)
            pids.append(answer["pid"])
            if slot == "0":
                self.daemon_end.send(b"{not json")
                self.assertIn("bad fork request", json.loads(self.daemon_end.recv(65536))["error"])
        self.assertNotEqual(pids[0], pids[1])
        for pid in pids:
            self.assertEqual(os.waitpid(pid, 0)[0], pid)

    def test_place_fds_swaps_without_clobbering(self):
        a_r, a_w = os.pipe()
        b_r, b_w = os.pipe()
        # Put b's write end where a's goes and the other way round, in a child.
        pid = os.fork()
        if pid == 0:
            try:
                zygote.place_fds([a_w, b_w], [b_w, a_w])
                os.write(b_w, b"a")  # b_w is now a's pipe
                os.write(a_w, b"b")
                os._exit(0)
            except BaseException:  # pylint: disable=broad-except
                os._exit(1)
        os.close(a_w)
        os.close(b_w)
        self.assertEqual(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), 0)
        self.assertEqual((read_all(a_r), read_all(b_r)), (b"a", b"b"))
        os.close(a_r)
        os.close(b_r)


class PreloadedFastAPITest(unittest.TestCase):
    """python3 -m workerd_uvicorn in zygote mode, with the FastAPI example: it imports the app
    once and the worker forked from it serves HTTP on the inherited listener."""

    def test_a_forked_worker_serves_the_app(self):
        import subprocess
        import sys
        import time
        import urllib.request

        become_subreaper()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        daemon_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, WORKERD_ZYGOTE_FD=str(zygote_end.fileno()),
                   PYTHONPATH=os.path.join(root, "packaging", "python"))
        env.pop("WORKERD_NOTIFY_FD", None)
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "workerd_uvicorn", "app:app", "--fd", str(listener.fileno())],
            cwd=os.path.join(root, "examples", "fastapi"), env=env,
            pass_fds=(listener.fileno(), zygote_end.fileno()))
        zygote_end.close()
        worker = None
        try:
            daemon_end.settimeout(60)
            ready = json.loads(daemon_end.recv(65536))
            self.assertEqual(ready.get("ready"), proc.pid, ready)
            notify_r, notify_w = os.pipe()
            socket.send_fds(daemon_end, [json.dumps({
                "env": {"WORKERD_SLOT": "5", "WORKERD_NOTIFY_FD": "9", "PATH": os.environ.get("PATH", "")},
                "fds": [9], "parent": os.getpid()}).encode()], [notify_w])
            os.close(notify_w)
            worker = json.loads(daemon_end.recv(65536))["pid"]
            # It says READY on its own pipe, then serves.
            said = b""
            deadline = time.monotonic() + 30
            while b"READY=1" not in said and time.monotonic() < deadline:
                said += os.read(notify_r, 4096)
            self.assertIn(b"READY=1", said)
            port = listener.getsockname()[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                body = json.loads(r.read())
            self.assertEqual(body["slot"], "5")
            self.assertEqual(body["pid"], worker)
            os.kill(worker, 15)
            self.assertEqual(os.waitstatus_to_exitcode(os.waitpid(worker, 0)[1]), 0)
            worker = None
            os.close(notify_r)
        finally:
            if worker is not None:
                os.kill(worker, 9)
                os.waitpid(worker, 0)
            daemon_end.close()  # the zygote exits
            self.assertEqual(proc.wait(timeout=30), 0)
            listener.close()


def _open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
