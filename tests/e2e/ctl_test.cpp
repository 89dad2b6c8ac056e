// End-to-end: workerctl and the control socket against the real daemon.
#include <doctest/doctest.h>
#include <poll.h>
#include <pty.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <future>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using json = nlohmann::json;

namespace {

std::string builtin_spec(int port, int workers, const std::string& extra = "") {
    return SpecBuilder(port).workers(workers).builtin().set("graceful_timeout", "5s").extra(extra);
}

std::string error_code(const std::optional<json>& reply) {
    if (!reply || reply->value("ok", true)) return "";
    return (*reply)["error"].value("code", "");
}

// A one-worker daemon, ready, in a directory other users may enter, its control socket
// DIR/control.sock with `mode` (the default when empty).
struct ReachableDaemon {
    TempDir dir;
    int port = free_tcp_port();
    std::string sock = dir.path() + "/control.sock";
    std::unique_ptr<Daemon> daemon;

    explicit ReachableDaemon(const std::string& mode) {
        ::chmod(dir.path().c_str(), 0755);  // nobody may reach the socket file
        const std::string control = mode.empty() ? fmt::format("{{socket: {}}}", sock)
                                                 : fmt::format("{{socket: {}, mode: \"{}\"}}", sock, mode);
        daemon = std::make_unique<Daemon>(dir, builtin_spec(port, 1, "control: " + control));
        REQUIRE(daemon->wait_ready(1, 10s));
    }
};

}  // namespace

TEST_CASE("scale 2 -> 6 -> 1 under load: the fleet follows, and wrk sees no error") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 2));
    REQUIRE(daemon.wait_ready(2, 10s));

    WrkLoad load(dir, port, 6, "/healthz", 32, /*request_timeout=*/2s);
    std::this_thread::sleep_for(500ms);  // let the load start before changing the fleet

    for (int n : {6, 1, 3}) {
        CAPTURE(n);
        const auto r = daemon.ctl({"scale", std::to_string(n), "--wait"});
        CHECK_MESSAGE(r.exit_code == 0, r.output);
        const json s = daemon.status();
        CHECK(s["desired"] == n);
        CHECK(s["ready"] == n);
    }
    load.finish();
}

TEST_CASE("relative scaling, SIGTTIN/SIGTTOU, and the status a script reads") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 2));
    REQUIRE(daemon.wait_ready(2, 10s));
    CHECK(daemon.ctl({"scale", "+2", "--wait"}).exit_code == 0);
    CHECK(daemon.status()["ready"] == 4);
    CHECK(daemon.ctl({"scale", "-3", "--wait"}).exit_code == 0);
    CHECK(daemon.status()["ready"] == 1);
    daemon.process().signal(SIGTTIN);
    CHECK(eventually([&] { return daemon.status()["ready"] == 2; }, 5s));
    daemon.process().signal(SIGTTOU);
    CHECK(eventually([&] {
        const json st = daemon.status();
        return st["desired"] == 1 && st["workers"].size() == 1;  // the surplus worker has drained
    }, 5s));

    // Requests show up in the workers' stats.
    for (int i = 0; i < 20; ++i) REQUIRE(http_get(port, "/healthz"));
    CHECK_MESSAGE(eventually([&] {
        long total = 0;
        const json st = daemon.status();  // (a range-for over a temporary's member would dangle)
        for (const auto& w : st["workers"]) {
            if (w["requests"].is_number()) total += w["requests"].get<long>();
        }
        return total >= 20;
    }, 5s), daemon.status().dump(1));
    const json s = daemon.status();
    for (const char* key : {"pid", "version", "uptime_s", "spec", "generation", "desired", "ready", "workers"}) {
        CHECK_MESSAGE(s.contains(key), key);
    }
    const json& w = s["workers"][0];
    for (const char* key : {"slot", "pid", "generation", "state", "uptime_s", "restarts", "last_exit", "rss_bytes",
                            "cpu_percent", "requests", "inflight", "heartbeat_age_s", "p50_ms", "p99_ms"}) {
        CHECK_MESSAGE(w.contains(key), key);
    }
    CHECK(w["rss_bytes"].get<long>() > 0);

    // The human table, and the commands that answer without changing anything.
    const auto table = daemon.ctl({"status"});
    CHECK(table.exit_code == 0);
    CHECK(table.output.find("SLOT") != std::string::npos);
    CHECK(daemon.ctl({"version"}).output.find("control protocol 1") != std::string::npos);
    CHECK(json::parse(daemon.ctl({"config"}).output)["workers"] == 1);
}

TEST_CASE("restart and reload replace workers one at a time; stop stops") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 3));
    REQUIRE(daemon.wait_ready(3, 10s));
    const auto before = daemon.workers();
    CHECK(daemon.ctl({"restart", "1", "--wait"}).exit_code == 0);
    json s = daemon.status();
    int replaced = 0;
    for (const auto& w : s["workers"]) {
        replaced += std::find(before.begin(), before.end(), w["pid"].get<pid_t>()) == before.end();
    }
    CHECK(replaced == 1);
    CHECK(daemon.ctl({"reload", "--wait"}).exit_code == 0);
    s = daemon.status();
    CHECK(s["generation"] == 2);
    CHECK(s["ready"] == 3);
    // The rollout is done; a predecessor may still be finishing its requests.
    for (const auto& w : s["workers"]) {
        if (w["state"] != "draining") CHECK(w["generation"] == 2);
    }
    CHECK(daemon.ctl({"restart", "7"}).exit_code == 1);  // no such slot

    CHECK(daemon.ctl({"stop"}).exit_code == 0);
    const auto status = daemon.process().wait_exit(10s);
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK_FALSE(std::filesystem::exists(daemon.control_socket()));  // removed on exit
    const auto gone = daemon.ctl({"status"});
    CHECK(gone.exit_code == 3);
    CHECK(gone.output.find("workerd is not running") != std::string::npos);
}

TEST_CASE("a user who is not allowed is refused, the daemon logs it and keeps serving") {
    if (skipped_unless_root("switching to user nobody")) return;
    // nobody may reach the socket file and connect to it (mode 0666), so the daemon's own
    // check (SO_PEERCRED) answers.
    ReachableDaemon reachable("0666");
    const Daemon& daemon = *reachable.daemon;
    const auto r = run_as_nobody({bin_path("workerctl"), "-s", reachable.sock, "status"});
    CHECK(r.exit_code == 4);
    CHECK(r.output.find("may not control this daemon") != std::string::npos);
    CHECK(daemon.wait_for_log("control: refused a client: uid 65534", 5s));
    CHECK(http_get(reachable.port, "/healthz").has_value());
    CHECK(daemon.ctl({"status"}).exit_code == 0);  // root still may
}

TEST_CASE("the default socket mode keeps other users out at the door") {
    if (skipped_unless_root("switching to user nobody")) return;
    ReachableDaemon reachable("");
    const Daemon& daemon = *reachable.daemon;
    struct stat st {};
    REQUIRE(::stat(daemon.control_socket().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    const auto r = run_as_nobody({bin_path("workerctl"), "-s", daemon.control_socket(), "status"});
    CHECK(r.exit_code == 4);
    CHECK(r.output.find("permission denied") != std::string::npos);
}

TEST_CASE("malformed and hostile requests get an error or the door, and supervision goes on") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 2));
    REQUIRE(daemon.wait_ready(2, 10s));
    const std::string sock = daemon.control_socket();

    ControlClient c(sock);
    REQUIRE(c.connected());
    const std::pair<std::string, std::string> cases[] = {
        {"not json", "bad_request"},
        {"[1, 2, 3]", "bad_request"},
        {R"({"command": 5})", "bad_request"},
        {R"({"id": 1})", "bad_request"},
        {R"({"id": 2, "command": "launch-missiles"})", "unknown_command"},
        {R"({"id": 3, "command": "scale", "args": {"workers": "many"}})", "bad_argument"},
        {R"({"id": 4, "command": "scale", "args": {"workers": 0}})", "bad_argument"},
        {R"({"id": 5, "command": "scale", "args": []})", "bad_argument"},
        {R"({"id": 6, "command": "restart", "args": {"slot": 99}})", "bad_argument"},
        {std::string("\x00\xff\xfe binary \x01", 13), "bad_request"},
        {R"({"command": "status", "id": "\ud800"})", "bad_request"},
    };
    for (const auto& [request, code] : cases) {
        CAPTURE(request);
        REQUIRE(c.send(request + "\n"));
        CHECK(error_code(c.reply()) == code);
    }
    // The same connection still works for a good request, and the id comes back.
    REQUIRE(c.send(R"({"id": "abc", "command": "version"})" "\n"));
    auto good = c.reply();
    REQUIRE(good);
    CHECK((*good)["ok"] == true);
    CHECK((*good)["id"] == "abc");

    // A line past the limit: an error, then the door.
    ControlClient huge(sock);
    REQUIRE(huge.send(std::string(100 * 1024, 'x')));
    CHECK(error_code(huge.reply()) == "bad_request");
    CHECK_FALSE(huge.reply(2s));

    // Half a line, then silence: others are served meanwhile.
    ControlClient half(sock);
    REQUIRE(half.send(R"({"command": "sta)"));

    // Hundreds of connections at once: each is answered (or told the daemon is busy).
    std::vector<std::unique_ptr<ControlClient>> crowd;
    for (int i = 0; i < 300; ++i) crowd.push_back(std::make_unique<ControlClient>(sock));
    int answered = 0, busy = 0;
    for (auto& client : crowd) {
        if (!client->connected()) continue;
        // A client past the limit may be told "busy" and closed before it sends anything.
        client->send(R"({"command": "version"})" "\n");
        const auto r = client->reply();
        if (r && (*r)["ok"] == true) ++answered;
        else if (error_code(r) == "busy") ++busy;
    }
    CHECK(answered >= 100);
    CHECK(answered + busy == 300);
    crowd.clear();

    // Supervision never stopped: a killed worker is replaced, and status still answers.
    const auto workers = daemon.workers();
    REQUIRE(workers.size() == 2);
    ::kill(workers.front(), SIGKILL);
    CHECK(eventually([&] {
        const json s = daemon.status();
        return s["ready"] == 2 && s["workers"].size() == 2 && s["workers"][0]["restarts"].get<int>() +
                                                                       s["workers"][1]["restarts"].get<int>() == 1;
    }, 5s));
    CHECK(http_get(port, "/healthz").has_value());
    CHECK(daemon.process().exited() == false);
}

TEST_CASE("top renders in a terminal and quits on q") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 2));
    REQUIRE(daemon.wait_ready(2, 10s));

    int master = -1;
    winsize ws{};
    ws.ws_row = 30;
    ws.ws_col = 140;
    const pid_t pid = ::forkpty(&master, nullptr, nullptr, &ws);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const std::string ctl = bin_path("workerctl");
        ::execl(ctl.c_str(), ctl.c_str(), "-s", daemon.control_socket().c_str(), "top", "-n", "0.2",
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    std::string screen;
    auto read_for = [&](Ms timeout, const std::string& until) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline && screen.find(until) == std::string::npos) {
            pollfd p{master, POLLIN, 0};
            if (::poll(&p, 1, 50) > 0) {
                char buf[4096];
                const ssize_t n = ::read(master, buf, sizeof buf);
                if (n <= 0) break;
                screen.append(buf, static_cast<std::size_t>(n));
            }
        }
        return screen.find(until) != std::string::npos;
    };
    CHECK(read_for(5s, "q to quit"));
    CHECK(screen.find("\x1b[?1049h") != std::string::npos);  // the alternate screen
    CHECK(screen.find("SLOT") != std::string::npos);
    CHECK(screen.find("req/s") != std::string::npos);
    REQUIRE(::write(master, "q", 1) == 1);
    CHECK(read_for(5s, "\x1b[?1049l"));  // the terminal is given back
    int status = 0;
    bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 5s);
    if (!exited) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    }
    ::close(master);
    CHECK(exited);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("workerctl finds the daemon through -c SPEC and $WORKERD_SOCKET; a second daemon may not take the socket") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 1));
    REQUIRE(daemon.wait_ready(1, 10s));
    const std::string spec = dir.path() + "/workerd.yaml";
    auto by_spec = run_program({bin_path("workerctl"), "-c", spec, "status", "--json"});
    CHECK_MESSAGE(by_spec.exit_code == 0, by_spec.output);
    CHECK(json::parse(by_spec.output)["pid"] == daemon.pid());
    auto by_env = run_program({bin_path("workerctl"), "status", "--json"}, 20s,
                              {"WORKERD_SOCKET=" + daemon.control_socket()});
    CHECK_MESSAGE(by_env.exit_code == 0, by_env.output);

    // Same control socket, another port: refused before anything starts, the first unharmed.
    TempDir other;
    const int other_port = free_tcp_port();
    const auto second = run_program(workerd_start(
        other.write("second.yaml", builtin_spec(other_port, 1, fmt::format("control: {{socket: {}}}", daemon.control_socket())))));
    CHECK(second.exit_code == 3);
    CHECK(second.output.find("control socket") != std::string::npos);
    CHECK(daemon.ctl({"status"}).exit_code == 0);
}

TEST_CASE("200 clients that send half a request line do not lock workerctl out, and each goes within 5 s") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 1));
    REQUIRE(daemon.wait_ready(1, 10s));
    std::vector<std::unique_ptr<ControlClient>> halves;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) {
        halves.push_back(std::make_unique<ControlClient>(daemon.control_socket()));
        REQUIRE(halves.back()->connected());
        REQUIRE(halves.back()->send(R"({"command":"sta)"));
    }
    const auto r = daemon.ctl({"status"}, 5s);
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    CHECK(took < 5s);
    // A started line has 5 s to end: by 7 s every half-line client has been closed (told "busy"
    // to make room, or dropped when its time ran out).
    std::this_thread::sleep_for(7s - (std::chrono::steady_clock::now() - t0));
    int closed = 0;
    for (auto& c : halves) {
        const auto last = c->reply(100ms);
        if (!last || error_code(last) == "busy") {
            if (!c->reply(100ms)) ++closed;
        }
    }
    CHECK(closed == 200);
    CHECK(daemon.ctl({"status"}).exit_code == 0);
}

TEST_CASE("scale counts out of range are range errors, however many digits") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 1));
    REQUIRE(daemon.wait_ready(1, 10s));
    for (const std::string n : {"999999", "1000000", "99999999999999999999999", "+3000000000", "-3000000000"}) {
        CAPTURE(n);
        const auto r = daemon.ctl({"scale", n});
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("the fleet must have 1 to 1024 workers") != std::string::npos);
    }
    CHECK(daemon.ctl({"scale", "many"}).exit_code == 2);  // not a count: a usage error
    ControlClient c(daemon.control_socket());
    const auto both = c.call("scale", {{"workers", 3}, {"delta", 1}});
    CHECK(error_code(both) == "bad_argument");
    CHECK(daemon.status()["desired"] == 1);
}

TEST_CASE("a user refused again and again is logged at most every 10 s") {
    if (skipped_unless_root("switching to user nobody")) return;
    ReachableDaemon reachable("0666");
    const Daemon& daemon = *reachable.daemon;
    // 2000 connections as nobody, as fast as they go, for about 3 s at most.
    const auto r = run_as_nobody({"/usr/bin/python3", "-c",
                                  "import socket, sys, time\n"
                                  "end = time.monotonic() + 3\n"
                                  "n = 0\n"
                                  "while n < 2000 and time.monotonic() < end:\n"
                                  "    s = socket.socket(socket.AF_UNIX)\n"
                                  "    s.connect(sys.argv[1]); s.recv(4096); s.close(); n += 1\n"
                                  "print(n)\n",
                                  reachable.sock});
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    CHECK(std::stoi(r.output) > 100);
    CHECK(daemon.count_in_log("control: refused a client") <= 1);
    CHECK(daemon.ctl({"status"}).exit_code == 0);
}
