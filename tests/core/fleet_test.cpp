// The fleet core's decisions, scenario by scenario, on a clock the test moves: restarts and
// backoff, rollouts within their budget, rollback, the scale-down choice, recycling, hangs and
// stops. The launcher is a fake that answers every spawn with the next pid.
#include <csignal>
#include <map>
#include <vector>

#include <doctest/doctest.h>

#include "daemon/core/fleet.hpp"

using namespace workerd;
using namespace workerd::core;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

class Harness {
public:
    explicit Harness(Spec spec, std::uint64_t seed = 1) {
        Fleet::Options o;
        o.spec = std::move(spec);
        o.seed = seed;
        fleet.emplace(std::move(o), now);
        turn();
    }

    void give(const Event& e) { apply(fleet->handle(e, now)); }
    void turn() { give(event::Turn{}); }
    void advance(Duration d) {
        now += d;
        if (auto t = fleet->next_deadline(now); t && *t <= now) turn();
    }
    void ready(pid_t pid) { message(pid, "READY=1"); }
    void message(pid_t pid, const char* line) {
        give(event::Message{pid, *parse_notify_line(line)});
        if (auto t = fleet->next_deadline(now); t && *t <= now) turn();
    }
    void exit(pid_t pid, int status) {
        give(event::Exited{pid, status, 0.0});
        if (auto t = fleet->next_deadline(now); t && *t <= now) turn();
    }
    void calls() { apply(fleet->take_actions()); }

    /// Live pids of `slot`, oldest first, and their phases.
    std::vector<pid_t> pids(int slot) const {
        std::vector<pid_t> out;
        for (const Worker* w : fleet->workers_in(slot)) out.push_back(w->pid);
        return out;
    }
    Phase phase(pid_t pid) const { return fleet->by_pid(pid)->phase; }
    int signals_to(pid_t pid, int sig) const {
        int n = 0;
        for (const auto& s : signals) n += s.first == pid && s.second == sig ? 1 : 0;
        return n;
    }

    TimePoint now{seconds(100)};
    std::optional<Fleet> fleet;
    std::vector<std::pair<int, pid_t>> spawned;  ///< (slot, pid), in order
    std::vector<std::pair<pid_t, int>> signals;
    pid_t next_pid = 100;

private:
    void apply(std::vector<Action> actions) {
        for (auto& a : actions) {
            if (auto* s = std::get_if<action::Spawn>(&a)) {
                const pid_t pid = next_pid++;
                spawned.emplace_back(s->slot, pid);
                apply(fleet->handle(event::Spawned{s->id, pid, "app"}, now));
            } else if (auto* sig = std::get_if<action::Signal>(&a)) {
                signals.emplace_back(sig->pid, sig->sig);
            }
        }
    }
};

Spec spec(int workers) {
    Spec s;
    s.workers = workers;
    s.health.mode = HeartbeatMode::required;
    s.health.timeout = seconds(10);
    s.health.boot_timeout = seconds(30);
    s.health.kill_timeout = seconds(2);
    s.graceful_timeout = seconds(5);
    s.backoff.initial = seconds(1);
    s.backoff.max = seconds(8);
    s.backoff.reset_after = seconds(10);
    return s;
}

}  // namespace

TEST_CASE("a crash restarts at once; quick crashes after it wait, doubling, within bounds") {
    Harness h(spec(1));
    REQUIRE(h.spawned.size() == 1);
    h.ready(100);
    h.exit(100, SIGSEGV);  // the first quick exit: at once
    REQUIRE(h.spawned.size() == 2);
    CHECK(h.fleet->slots().at(0).last_end->to_string() == "crash by signal");
    CHECK(h.fleet->slots().at(0).restarts == 1);
    h.exit(101, 1 << 8);  // the second: about initial (0.8 .. 1.2 s)
    CHECK(h.spawned.size() == 2);
    h.advance(milliseconds(790));
    CHECK(h.spawned.size() == 2);
    h.advance(milliseconds(500));
    REQUIRE(h.spawned.size() == 3);
    h.exit(102, 1 << 8);  // the third: about 2 x initial
    h.advance(milliseconds(1590));
    CHECK(h.spawned.size() == 3);
    h.advance(milliseconds(900));
    CHECK(h.spawned.size() == 4);
    CHECK(h.fleet->slots().at(0).exits_before_ready == 2);  // 101 and 102 never said READY
}

TEST_CASE("a reload rolls within max_surge: an old worker drains only once its successor is READY") {
    Spec s = spec(4);
    s.rollout.max_surge = WorkerAmount{1, false};
    Harness h(s);
    for (pid_t pid = 100; pid < 104; ++pid) h.ready(pid);
    Spec next = spec(4);
    next.rollout.max_surge = WorkerAmount{1, false};
    next.text = "v2";
    CHECK(h.fleet->reload(next, "SIGHUP", h.now) == 2);
    h.calls();
    h.turn();
    REQUIRE(h.spawned.size() == 5);  // one successor at a time
    CHECK(h.spawned.back() == std::make_pair(0, 104));
    CHECK(h.phase(100) == Phase::retiring);
    CHECK(h.signals_to(100, SIGTERM) == 0);
    h.ready(104);
    CHECK(h.signals_to(100, SIGTERM) == 1);  // took over
    CHECK(h.spawned.size() == 6);            // and the next slot's successor starts
    for (pid_t pid = 105; pid < 108; ++pid) h.ready(pid);
    CHECK(h.fleet->rollout().state == RolloutState::done);
    for (int slot = 0; slot < 4; ++slot) CHECK(h.fleet->slots().at(slot).restarts == 1);
}

TEST_CASE("a rollout whose workers cannot boot stops, and the previous generation and spec stay") {
    Spec s = spec(2);
    s.text = "v1";
    s.rollout.max_surge = WorkerAmount{2, false};
    s.rollout.failure_threshold = 2;
    Harness h(s);
    h.ready(100);
    h.ready(101);
    Spec next = s;
    next.text = "v2";
    h.fleet->reload(next, "SIGHUP", h.now);
    h.calls();
    h.turn();
    REQUIRE(h.spawned.size() == 4);
    h.exit(102, 1 << 8);
    CHECK(h.fleet->rollout().state == RolloutState::running);
    h.exit(103, 1 << 8);
    CHECK(h.fleet->rollout().state == RolloutState::failed);
    CHECK(h.fleet->generation() == 1);
    CHECK(h.fleet->spec().text == "v1");
    CHECK(h.phase(100) == Phase::ready);  // kept, no longer retiring
    CHECK(h.phase(101) == Phase::ready);
    CHECK(h.fleet->slots().at(0).restarts == 0);  // the failures were the rollout's
    h.advance(seconds(5));
    CHECK(h.spawned.size() == 4);  // nothing more starts
    // The next reload is generation 3: numbers are never reused.
    h.fleet->reload(s, "SIGHUP", h.now);
    CHECK(h.fleet->generation() == 3);
}

TEST_CASE("scaling down drains the least busy first: empty slots, booting, then by requests in flight") {
    Harness h(spec(4));
    h.ready(100);
    h.ready(101);
    h.ready(103);  // 102 stays booting
    h.message(100, "STATS=served=10 inflight=5 oldest_ms=1");
    h.message(101, "STATS=served=10 inflight=0 oldest_ms=0");
    h.message(103, "STATS=served=10 inflight=2 oldest_ms=1");
    h.fleet->scale(2, "control", false, h.now);
    h.calls();
    h.turn();
    CHECK(h.signals_to(102, SIGTERM) == 1);  // booting
    CHECK(h.signals_to(101, SIGTERM) == 1);  // ready, nothing in flight
    CHECK(h.signals_to(100, SIGTERM) == 0);
    CHECK(h.signals_to(103, SIGTERM) == 0);
    CHECK(h.fleet->desired() == 2);
}

TEST_CASE("max_requests: the worker retires, its successor starts, and it drains once the successor is READY") {
    Spec s = spec(1);
    s.recycle.max_requests = 100;
    s.recycle.min_lifetime = Duration(0);
    Harness h(s);
    h.ready(100);
    h.message(100, "STATS=served=120 inflight=0 oldest_ms=0");
    CHECK(h.phase(100) == Phase::retiring);
    REQUIRE(h.spawned.size() == 2);
    CHECK(h.fleet->slots().at(0).recycles == 1);
    h.ready(101);
    CHECK(h.signals_to(100, SIGTERM) == 1);
    h.exit(100, 0);
    CHECK(h.fleet->slots().at(0).last_end->to_string() == "stopped (max_requests)");
    CHECK(h.fleet->restarts_by_reason().at("max_requests") == 1);
}

TEST_CASE("a worker silent past timeout is hung: its replacement starts at once, SIGKILL after kill_timeout") {
    Harness h(spec(1));
    h.ready(100);
    h.advance(milliseconds(10001));
    CHECK(h.phase(100) == Phase::hung);
    CHECK(h.signals_to(100, SIGTERM) == 1);
    CHECK(h.spawned.size() == 2);  // beside it
    h.advance(seconds(2));
    CHECK(h.signals_to(100, SIGKILL) == 1);
    h.exit(100, SIGKILL);
    CHECK(h.fleet->restarts_by_reason().at("heartbeat_timeout") == 1);
    CHECK(h.spawned.size() == 2);  // already replaced
}

TEST_CASE("a graceful stop: SIGTERM to all, SIGKILL at graceful_timeout, then stopped; INT kills at once") {
    Harness h(spec(2));
    h.ready(100);
    h.ready(101);
    h.give(event::Signal{SIGTERM});
    CHECK(h.fleet->mode() == Mode::stopping_graceful);
    CHECK(h.signals_to(100, SIGTERM) == 1);
    CHECK(h.signals_to(101, SIGTERM) == 1);
    h.exit(100, 0);
    h.advance(seconds(5));
    CHECK(h.signals_to(101, SIGKILL) == 1);
    h.exit(101, SIGKILL);
    CHECK(h.fleet->stopped());
    CHECK(h.fleet->restarts_by_reason().empty());  // a stop is no restart

    Harness fast(spec(2));
    fast.give(event::Signal{SIGINT});
    CHECK(fast.fleet->mode() == Mode::stopping_fast);
    CHECK(fast.signals_to(100, SIGKILL) == 1);
    CHECK(fast.signals_to(101, SIGKILL) == 1);
}
