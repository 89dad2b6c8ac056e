"""A worker that serves HTTP on fd 3 and, once asked (GET /flood), writes garbage on its
protocol pipe: random bytes, a 32 MiB line, and a flood of malformed lines, between valid
READY and heartbeats."""
import http.server
import os
import socket
import socketserver
import sys
import threading

notify = int(os.environ["WORKERD_NOTIFY_FD"])


flood_requested = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/flood":
            flood_requested.set()
        body = f"pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    def __init__(self):
        socketserver.BaseServer.__init__(self, None, Handler)
        self.socket = socket.socket(fileno=3)

    def server_close(self):
        pass


server = Server()
threading.Thread(target=server.serve_forever, daemon=True).start()

os.write(notify, b"READY=1\n")
while not flood_requested.wait(0.2):
    os.write(notify, b"WATCHDOG=1\n")
os.write(notify, os.urandom(64 * 1024))
os.write(notify, b"\n")
chunk = b"x" * (1024 * 1024)
for _ in range(32):
    os.write(notify, chunk)  # one 32 MiB line: the daemon must not keep it
os.write(notify, b"\n")
flood = b"this is not a message\n" * 1000 + b"WATCHDOG=1\n" + b"STATS=served=x\n" + b"lower=case\n"
for _ in range(200):
    os.write(notify, flood)
os.write(notify, b"WATCHDOG=1\n")
print("flood done", flush=True)
while True:
    threading.Event().wait(0.2)
    os.write(notify, b"WATCHDOG=1\n")
