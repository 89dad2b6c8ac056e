# A plain WSGI app for gunicorn as a worker command (tests/e2e/orphans_test.cpp).
import os


def app(environ, start_response):
    body = f"hello from pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
