"""A graceful stop seen from clients (tests/bench/bench_stop.sh).

Usage: stop_probe.py PORT PID SLOW_PATH FAST_PATH
Sends 16 requests to SLOW_PATH (each takes about a second), sends SIGTERM to PID 0.3 s later,
then, from 0.1 s after the signal, tries 20 new connections to FAST_PATH 25 ms apart. Prints:
  INFLIGHT_OK REFUSED SERVED RESET OTHER
INFLIGHT_OK: slow requests answered 200 (of 16). Each new connection is REFUSED (connect
fails: safe to retry elsewhere), SERVED (a whole 200 came back), RESET (reset or closed after
the request was sent: the client cannot tell whether it was processed), or OTHER (a timeout).
"""
import os
import signal
import socket
import sys
import threading
import time

port, pid, slow, fast = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]


def request(path, timeout):
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "other"
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return "served" if data.startswith(b"HTTP/1.1 200") else "reset"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except socket.timeout:
        return "other"
    finally:
        s.close()


results = []
threads = [threading.Thread(target=lambda: results.append(request(slow, 20))) for _ in range(16)]
for t in threads:
    t.start()
time.sleep(0.3)
os.kill(pid, signal.SIGTERM)
time.sleep(0.1)
counts = {"refused": 0, "served": 0, "reset": 0, "other": 0}
for _ in range(20):
    counts[request(fast, 5)] += 1
    time.sleep(0.025)
for t in threads:
    t.join()
print(results.count("served"), counts["refused"], counts["served"], counts["reset"], counts["other"])
