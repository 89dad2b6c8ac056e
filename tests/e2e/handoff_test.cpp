// End-to-end: a large file's connection is answered by the bundled worker on its client's CPU
// (http::Handoff). Two workers, each pinned to a CPU of its own from here; clients connect from
// either CPU; the load board spreads the connections over both workers, and a request for a
// large file moves the connection to the worker on the client's CPU, with everything the
// client had sent after it. Small answers do not move a connection.
#include <doctest/doctest.h>

#include <sched.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/os/slot_listeners.hpp"
#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using json = nlohmann::json;

namespace {

constexpr std::size_t kBig = 2 * 1024 * 1024;  // above the 1 MiB from which a connection moves

std::string big_content() {
    std::string s(kBig, '\0');
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    return s;
}

pid_t pid_in_slot(const json& status, int slot) {
    for (const auto& w : status["workers"]) {
        if (w["slot"] == slot) return w["pid"].get<pid_t>();
    }
    return 0;
}

// Keeps `pid` (0: the calling thread) to `cpu`.
void pin(pid_t pid, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    REQUIRE(::sched_setaffinity(pid, sizeof set, &set) == 0);
}

pid_t whoami(HttpConnection& c) {
    REQUIRE(c.request("/demo/whoami"));
    auto r = c.read_response(5s);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body)["pid"].get<pid_t>();
}

// One client connection: the worker that accepted it, the index of the CPU its client then
// ran on, and the worker answering after the large file.
struct Moved {
    int cpu = -1;
    pid_t before = 0;
    pid_t after = 0;
};

}  // namespace

TEST_CASE("a large file's connection moves to the worker on its client's CPU, with what the client sent after it") {
    const auto cpus = workerd::SlotListeners::allowed_cpus();
    if (cpus.size() < 2) {
        MESSAGE("needs 2 CPUs; this process may use " << cpus.size());
        return;
    }
    TempDir dir;
    const std::string big = big_content();
    dir.write("site/big.bin", big);
    dir.write("site/small.txt", "small\n");
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(2).builtin(fmt::format("demo: true, root: {}/site", dir.path())));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 20s), daemon.log());
    const json status = daemon.status();
    const pid_t on_cpu[2] = {pid_in_slot(status, 0), pid_in_slot(status, 1)};
    REQUIRE(on_cpu[0] > 0);
    REQUIRE(on_cpu[1] > 0);
    pin(on_cpu[0], cpus[0]);
    pin(on_cpu[1], cpus[1]);
    // Each worker says where it runs on the board at least every quarter second.
    std::this_thread::sleep_for(600ms);

    // In a thread of its own (its affinity is its own to change). Each connection is made from
    // either CPU and accepted by whichever worker the board lets; then the client moves to the
    // CPU of the other worker (the first three) or of the same one (the last three), and its
    // packets come in there.
    const auto moved = std::async(std::launch::async, [&] {
        std::vector<Moved> out;
        for (int i = 0; i < 6; ++i) {
            pin(0, cpus[static_cast<std::size_t>(i % 2)]);
            HttpConnection c(port);
            REQUIRE(c.connected());
            Moved m;
            m.before = whoami(c);
            const int accepted_on = m.before == on_cpu[0] ? 0 : 1;
            m.cpu = i < 3 ? 1 - accepted_on : accepted_on;
            pin(0, cpus[static_cast<std::size_t>(m.cpu)]);
            // A small file: served where the connection is.
            REQUIRE(c.request("/small.txt"));
            auto small = c.read_response(5s);
            REQUIRE(small);
            CHECK(small->body == "small\n");
            CHECK(whoami(c) == m.before);
            // The large file and a request pipelined behind it, in one write: both travel with
            // the connection, and are answered in order.
            REQUIRE(c.send("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /demo/whoami HTTP/1.1\r\nHost: x\r\n\r\n"));
            auto r = c.read_response(10s);
            REQUIRE(r);
            CHECK(r->status == 200);
            CHECK(r->body.size() == big.size());
            CHECK(r->body == big);
            auto who = c.read_response(5s);
            REQUIRE(who);
            m.after = json::parse(who->body)["pid"].get<pid_t>();
            // And it stays there: the next large file comes from the same worker.
            REQUIRE(c.request("/big.bin"));
            auto again = c.read_response(10s);
            REQUIRE(again);
            CHECK(again->body.size() == big.size());
            CHECK(whoami(c) == m.after);
            out.push_back(m);
        }
        return out;
    }).get();

    for (std::size_t i = 0; i < moved.size(); ++i) {
        const auto& m = moved[i];
        CAPTURE(i);
        CAPTURE(m.cpu);
        CHECK(m.after == on_cpu[m.cpu]);
        CHECK((m.before != m.after) == (i < 3));
    }
    const auto text = daemon.ctl({"status", "--json"});
    REQUIRE(text.exit_code == 0);
}
