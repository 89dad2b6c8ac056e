#pragma once

// Helpers for tests that run real processes: temporary directories, free ports, a child
// process that is always stopped (by pid) and reaped, the real workerd daemon on a spec, and a
// small blocking HTTP client. Every wait is bounded.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace workerd::test {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

/// Path of a built binary (build/bin/NAME).
std::string bin_path(const std::string& name);
/// Path inside the source tree.
std::string source_path(const std::string& relative);

/// Polls `condition` every 10 ms until it holds or `timeout` passes. Returns whether it held.
bool eventually(const std::function<bool()>& condition, Ms timeout);

/// A fresh directory under /tmp, removed with its contents on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    /// Writes `content` to path()/name and returns the full path.
    std::string write(const std::string& name, const std::string& content) const;

private:
    std::string path_;
};

/// A TCP port on 127.0.0.1 that was free a moment ago.
int free_tcp_port();

std::string read_file(const std::string& path);

/// A child process started by a test. Stopped with SIGKILL (by pid) and reaped on
/// destruction if still running, so a failing test leaves nothing behind. It also dies if
/// the test process dies (PR_SET_PDEATHSIG).
class ChildProcess {
public:
    /// Starts argv with stdout and stderr appended to `log_path`, and `env` added to the
    /// test's environment. `fds` become the child's 3, 4, ... (socket activation).
    ChildProcess(const std::vector<std::string>& argv, const std::string& log_path,
                 const std::vector<std::string>& env = {}, const std::vector<int>& fds = {});
    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const { return pid_; }
    void signal(int sig) const;
    /// Waits up to `timeout` for the exit; returns the raw wait status, or nullopt.
    std::optional<int> wait_exit(Ms timeout);
    bool exited() const { return status_.has_value(); }

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
};

/// A program run to completion: its exit code and its stdout and stderr together.
struct RunResult {
    int exit_code = -1;
    std::string output;
};
/// Runs `argv` and waits (failing the test past `timeout` or on a death by signal).
RunResult run_program(const std::vector<std::string>& argv, Ms timeout = 20s,
                      const std::vector<std::string>& env = {});

/// `workerd load ARGS... --json`, run to completion and parsed (the test fails unless it exits 0:
/// pass `--max-errors 1` where errors are expected).
nlohmann::json workerd_load(const std::vector<std::string>& args, Ms timeout);
/// run_program as user nobody (group nogroup, no other groups), through setpriv: needs root.
RunResult run_as_nobody(const std::vector<std::string>& argv, Ms timeout = 20s);
/// False when the tests run as root; else true, with a message that the test, which needs
/// root for `what`, is skipped: `if (skipped_unless_root("...")) return;`.
bool skipped_unless_root(const std::string& what);

/// Pids whose parent is `parent` (read from /proc).
std::vector<pid_t> children_of(pid_t parent);
/// A workerd daemon's workers: its children but its guardian (`workerd guard`).
std::vector<pid_t> workers_of(pid_t daemon);
/// Every live descendant of `root` (children, theirs, ...), from /proc.
std::vector<pid_t> descendants_of(pid_t root);
/// /proc/PID/cmdline as argv.
std::vector<std::string> command_line_of(pid_t pid);
bool process_alive(pid_t pid);
/// True when none of `pids` is alive (zombies count as gone).
bool all_gone(const std::vector<pid_t>& pids);
/// True once `pid` runs the program named `comm` and is asleep in it (state S): past exec,
/// with its close-on-exec descriptors already gone.
bool settled_in(pid_t pid, const std::string& comm);
/// True while the process's main thread sleeps in nanosleep or clock_nanosleep (a bundled
/// worker inside /demo/block, say; an idle one waits in epoll instead).
bool in_sleep_syscall(pid_t pid);
/// /proc/PID/fd entries: fd number -> link target ("socket:[123]", "/dev/null", "pipe:[9]").
std::map<int, std::string> open_fds(pid_t pid);
/// /proc/PID/environ as KEY -> VALUE.
std::map<std::string, std::string> environment_of(pid_t pid);

/// `workerd start SPEC` as the tests run it: with --allow-root when the tests run as root and
/// the spec sets no `user` (a daemon as root refuses to run workers as root otherwise).
std::vector<std::string> workerd_start(const std::string& spec_path, const std::string& binary = "");

/// wrk against 127.0.0.1:PORT/PATH for `seconds` in the background (bounded); finish() waits
/// and fails the test on any socket error or non-2xx response, then returns wrk's report.
/// `request_timeout`: how long a request may take before wrk counts it as a timeout error.
class WrkLoad {
public:
    /// `extra`: more wrk arguments (e.g. {"-H", "Connection: close"}).
    WrkLoad(const TempDir& dir, int port, int seconds, const std::string& path = "/healthz", int connections = 64,
            std::chrono::seconds request_timeout = 10s, const std::vector<std::string>& extra = {});
    std::string finish();
    /// Waits for wrk and returns its report, errors and all (for tests that count them).
    std::string report();

private:
    std::string out_;
    ChildProcess wrk_;
};

/// wrk's "Socket errors: connect C, read R, write W, timeout T" summed (0 when absent).
long wrk_socket_errors(const std::string& report);
/// wrk's "N requests in ..." count.
long wrk_requests(const std::string& report);

/// /proc/PID/stat's utime + stime in seconds.
double cpu_seconds_of(pid_t pid);
/// VmRSS from /proc/PID/status, in bytes.
long rss_of(pid_t pid);

/// The real `workerd start SPEC` on a spec written to a temporary directory. On destruction
/// the daemon and any worker it still has are SIGKILLed by pid and the daemon is reaped.
class Daemon {
public:
    /// Writes `spec_yaml` to DIR/workerd.yaml and starts the daemon; stderr goes to
    /// DIR/daemon.log.
    /// `binary`: another workerd executable than the build's (the SIGUSR2 upgrade tests).
    Daemon(const TempDir& dir, const std::string& spec_yaml, const std::vector<std::string>& env = {},
           const std::string& binary = "");
    ~Daemon();

    pid_t pid() const { return process_->pid(); }
    ChildProcess& process() { return *process_; }
    std::string log() const;
    /// Number of log lines containing `needle`.
    int count_in_log(const std::string& needle) const;
    bool wait_for_log(const std::string& needle, Ms timeout, int times = 1) const;
    /// The daemon's children but its guardian: its workers.
    std::vector<pid_t> workers() const;
    /// The guardian (`workerd guard`, daemon/os/guardian.hpp); nullopt without one.
    std::optional<pid_t> guardian() const;
    /// The control socket: the spec's, or DIR/control.sock, which the constructor adds to a
    /// spec without a `control:` key (so parallel tests never share the default socket).
    const std::string& control_socket() const { return control_socket_; }
    /// `workerctl -s SOCKET ARGS...`, run to completion.
    RunResult ctl(const std::vector<std::string>& args, Ms timeout = 20s) const;
    /// `workerctl status --json`, parsed (the test fails if workerctl does).
    nlohmann::json status() const;
    bool wait_for_workers(std::size_t n, Ms timeout) const;
    /// Waits until the daemon's status (read from the control socket) satisfies `holds`.
    bool wait_status(const std::function<bool(const nlohmann::json&)>& holds, Ms timeout) const;
    /// Waits until the status says `n` workers are ready (and none more are wanted).
    bool wait_ready(int n, Ms timeout) const;
    /// Waits until the status says the rollout of `generation` is done (`rollout.state`).
    bool wait_rolled_out(long generation, Ms timeout) const;

private:
    std::string log_path_;
    std::string control_socket_;
    std::unique_ptr<ChildProcess> process_;
};

/// The `status` result of the daemon at control socket `socket`, asked on a new connection
/// (not through workerctl: cheap enough to poll); nullopt while nothing answers there.
std::optional<nlohmann::json> control_status(const std::string& socket);
/// Polls control_status(socket) every 10 ms until `holds` says yes; false past `timeout`.
bool wait_status(const std::string& socket, const std::function<bool(const nlohmann::json&)>& holds, Ms timeout);
/// `ready` and `desired` both `n`: what a status says once a fleet of `n` is up.
bool fleet_ready(const nlohmann::json& status, int n);

/// A raw client of a daemon's control socket (JSON lines), for timing the protocol and for
/// what workerctl would never send.
class ControlClient {
public:
    explicit ControlClient(const std::string& path);
    ~ControlClient();
    ControlClient(const ControlClient&) = delete;
    ControlClient& operator=(const ControlClient&) = delete;
    bool connected() const { return fd_ >= 0; }
    bool send(const std::string& data);
    /// The next reply line, parsed; nullopt when the daemon closed the connection or said
    /// nothing within `timeout`.
    std::optional<nlohmann::json> reply(Ms timeout = 5s);
    /// Sends {"id":..,"command":COMMAND,"args":ARGS} and returns the reply.
    std::optional<nlohmann::json> call(const std::string& command, const nlohmann::json& args = nlohmann::json::object(),
                                       Ms timeout = 5s);
    /// Ends the connection (shutdown for writing) and waits up to `timeout` until the daemon
    /// has closed its end: true once nothing of the connection is left open in the daemon.
    bool finish(Ms timeout);

private:
    int fd_ = -1;
    std::string pending_;
};

struct HttpResponse {
    int status = 0;
    std::map<std::string, std::string> headers;  ///< names lower-cased
    std::string body;
};

/// A client connection kept open across requests (keep-alive tests).
class HttpConnection {
public:
    /// Connects to 127.0.0.1:port; connected() tells whether it worked.
    explicit HttpConnection(int port);
    ~HttpConnection();
    bool connected() const { return fd_ >= 0; }
    /// Sends raw bytes; false on error.
    bool send(const std::string& raw);
    /// Sends a GET (or `method`) for `path` with keep-alive.
    bool request(const std::string& path, const std::string& method = "GET",
                 const std::string& extra_headers = "");
    /// Reads one response (Content-Length framed; `head` = no body expected).
    std::optional<HttpResponse> read_response(Ms timeout = 5s, bool head = false);
    /// Waits until the server closes the connection (EOF or reset) within `timeout`.
    bool wait_closed(Ms timeout);

private:
    int fd_ = -1;
    std::string buffered_;
};

/// One GET (or `method`) on a new connection to 127.0.0.1:port with Connection: close.
/// nullopt on connect error, reset or timeout.
std::optional<HttpResponse> http_request(int port, const std::string& path,
                                         const std::string& method = "GET", Ms timeout = 5s);
inline std::optional<HttpResponse> http_get(int port, const std::string& path, Ms timeout = 5s) {
    return http_request(port, path, "GET", timeout);
}
/// The status of one http_get, 0 when no response came back.
int http_status(int port, const std::string& path, Ms timeout = 5s);
/// Polls http_get(port, path) until a response (any status) comes back; false past `timeout`.
bool answers_within(int port, Ms timeout, const std::string& path = "/healthz");

}  // namespace workerd::test
