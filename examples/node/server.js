// A Node HTTP server run by workerd, draining cleanly: no request fails across a reload, a
// scale-down or a stop. See docs/draining.md. Plain Node (no packages): node server.js
//
// workerd hands the listening socket over as fd 3 (LISTEN_FDS=1, the systemd convention) and
// a pipe for the worker protocol (WORKERD_NOTIFY_FD). On SIGTERM it expects the worker to
// stop accepting, finish what is in flight and exit, within graceful_timeout.
"use strict";

const fs = require("fs");
const http = require("http");
const net = require("net");

// The worker protocol (docs/worker-protocol.md): READY once serving, heartbeats after.
const notifyFd = process.env.WORKERD_NOTIFY_FD ? Number(process.env.WORKERD_NOTIFY_FD) : null;
function notify(line) {
  if (notifyFd === null) return;
  try {
    fs.writeSync(notifyFd, line + "\n");
  } catch (e) {
    // The daemon is gone or behind: a worker never waits on it.
  }
}

let draining = false;

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  const reply = () => {
    // While draining, every response closes its connection: the client's next request goes
    // to a worker that is still accepting, instead of racing this one's exit.
    if (draining) res.setHeader("Connection", "close");
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ pid: process.pid, path: url.pathname }) + "\n");
  };
  if (url.pathname === "/io") {
    setTimeout(reply, Math.min(Number(url.searchParams.get("ms") || 100), 60000));
  } else {
    reply();
  }
});
server.keepAliveTimeout = 5000;

// LISTEN_FDS from workerd (fd 3); a port of its own when run by hand.
const listening = process.env.LISTEN_FDS ? { fd: 3 } : { port: Number(process.env.PORT || 8080), host: "127.0.0.1" };
server.listen(listening, () => {
  notify("READY=1");
  setInterval(() => notify("WATCHDOG=1"), 1000).unref();
});

process.on("SIGTERM", () => {
  if (draining) return;
  draining = true;
  notify("STOPPING=1");
  // Stop accepting: this process's copy of the listening socket closes now (workerd closes
  // its own when the fleet stops, and the kernel then refuses new connections). Not
  // server.close(): since Node 19 it also closes idle keep-alive connections at once, and a
  // request already on its way on one of them is reset. net.Server's close() only stops
  // listening; its callback runs once every connection has ended.
  net.Server.prototype.close.call(server, () => process.exit(0));
  // Connections that stay idle get no Connection: close answer to leave on: close them after
  // a moment (a client still sending gets its answer, with Connection: close, first).
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
});
