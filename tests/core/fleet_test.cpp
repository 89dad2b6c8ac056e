// The fleet core's decisions, scenario by scenario, on a clock the test moves: restarts and
// backoff, rollouts within their budget, rollback, the scale-down choice, recycling, hangs and
// stops. The launcher is a fake that answers every spawn with the next pid.
#include <csignal>
#include <map>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

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

    /// An event, then the turns the core asks for now (as the shell's timer would run them).
    void give(const Event& e) {
        apply(fleet->handle(e, now));
        for (int i = 0; i < 8; ++i) {
            auto t = fleet->next_deadline(now);
            if (!t || *t > now) break;
            take_turn();
        }
    }
    void turn() {
        if (fleet->sample_due(now)) apply(fleet->handle(event::Samples{}, now));
        give(event::Turn{});
    }
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
    std::vector<std::pair<long, pid_t>> zygotes_started, zygotes_stopped;  ///< (generation, pid)
    pid_t next_pid = 100;

private:
    // As the shell's turn: the samples first when they are due (none measured here).
    void take_turn() {
        if (fleet->sample_due(now)) apply(fleet->handle(event::Samples{}, now));
        apply(fleet->handle(event::Turn{}, now));
    }
    void apply(std::vector<Action> actions) {
        for (auto& a : actions) {
            if (auto* s = std::get_if<action::Spawn>(&a)) {
                const pid_t pid = next_pid++;
                spawned.emplace_back(s->slot, pid);
                apply(fleet->handle(event::Spawned{s->id, pid, "app"}, now));
            } else if (auto* sig = std::get_if<action::Signal>(&a)) {
                signals.emplace_back(sig->pid, sig->sig);
            } else if (auto* z = std::get_if<action::StartZygote>(&a)) {
                const pid_t pid = next_pid++;
                zygotes_started.emplace_back(z->generation, pid);
                apply(fleet->handle(event::ZygoteStarted{z->generation, pid}, now));
            } else if (auto* z = std::get_if<action::StopZygote>(&a)) {
                zygotes_stopped.emplace_back(z->generation, z->pid);
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

namespace {

Spec preload_spec(int workers) {
    Spec s = spec(workers);
    s.app.command = {"/usr/bin/python3", "-m", "workerd_uvicorn", "app:app"};
    s.app.preload = true;
    s.health.mode = HeartbeatMode::off;  // these cases are about the zygote, not the workers' heartbeats
    return s;
}

bool idle_until_ready(const Harness& h) {
    const auto t = h.fleet->next_deadline(h.now);
    return !t || *t > h.now;  // nothing to do while the zygote imports: no busy turns
}

}  // namespace

TEST_CASE("preload: a generation's workers are forked once its zygote is ready, not before") {
    Harness h(preload_spec(2));
    REQUIRE(h.zygotes_started.size() == 1);
    CHECK(h.zygotes_started[0] == std::make_pair(1L, 100));
    CHECK(h.spawned.empty());
    CHECK(idle_until_ready(h));
    h.advance(seconds(3));
    CHECK(h.spawned.empty());
    CHECK(h.zygotes_started.size() == 1);  // one at a time
    h.give(event::ZygoteReady{1});
    h.turn();
    REQUIRE(h.spawned.size() == 2);
    CHECK(h.fleet->zygotes().at(1).ready);
}

TEST_CASE("preload: a zygote that dies is started again after the backoff, and its workers serve on") {
    Harness h(preload_spec(1));
    h.give(event::ZygoteReady{1});
    h.turn();
    REQUIRE(h.spawned.size() == 1);
    const pid_t worker = h.spawned[0].second;
    h.ready(worker);
    h.advance(seconds(20));           // the zygote was up long enough: its first death restarts it at once
    h.exit(100, SIGKILL);             // the zygote
    CHECK(h.phase(worker) == Phase::ready);
    REQUIRE(h.zygotes_started.size() == 2);  // at once: a later scale-up need not wait for it
    h.exit(worker, SIGSEGV);          // a worker to replace waits for the new zygote
    CHECK(idle_until_ready(h));
    CHECK(h.spawned.size() == 1);
    h.give(event::ZygoteReady{1});
    h.turn();
    CHECK(h.spawned.size() == 2);
}

TEST_CASE("preload: a reload's zygote that cannot import fails the rollout; the old generation and its zygote stay") {
    Spec s = preload_spec(1);
    s.rollout.failure_threshold = 2;
    Harness h(s);
    h.give(event::ZygoteReady{1});
    h.turn();
    h.ready(h.spawned[0].second);
    h.fleet->reload(s, "SIGHUP", h.now);
    h.calls();
    h.turn();
    REQUIRE(h.zygotes_started.size() == 2);
    CHECK(h.zygotes_started[1].first == 2);
    h.exit(h.zygotes_started[1].second, 1 << 8);  // an ImportError
    CHECK(h.fleet->rollout().state == RolloutState::running);
    h.advance(seconds(2));                        // the backoff
    REQUIRE(h.zygotes_started.size() == 3);
    h.exit(h.zygotes_started[2].second, 1 << 8);
    CHECK(h.fleet->rollout().state == RolloutState::failed);
    CHECK(h.fleet->generation() == 1);
    CHECK(h.phase(h.spawned[0].second) == Phase::ready);
    CHECK(h.spawned.size() == 1);  // no worker of generation 2 was ever forked
    CHECK(h.fleet->zygotes().count(1) == 1);
    CHECK(h.zygotes_stopped.empty());
}

TEST_CASE("preload: a finished rollout stops the old zygote; a stop stops the last, and waits for it") {
    Spec s = preload_spec(1);
    Harness h(s);
    h.give(event::ZygoteReady{1});
    h.turn();
    h.ready(h.spawned[0].second);
    h.fleet->reload(s, "SIGHUP", h.now);
    h.calls();
    h.turn();
    REQUIRE(h.zygotes_started.size() == 2);
    h.give(event::ZygoteReady{2});
    h.turn();
    REQUIRE(h.spawned.size() == 2);
    CHECK(h.zygotes_stopped.empty());  // the rollout may still fall back to generation 1
    h.ready(h.spawned[1].second);
    CHECK(h.fleet->rollout().state == RolloutState::done);
    h.turn();
    REQUIRE(h.zygotes_stopped.size() == 1);
    CHECK(h.zygotes_stopped[0] == h.zygotes_started[0]);
    h.exit(h.zygotes_started[0].second, 0);
    h.exit(h.spawned[0].second, 0);
    h.give(event::Signal{SIGTERM});
    REQUIRE(h.zygotes_stopped.size() == 2);
    CHECK(h.zygotes_stopped[1] == h.zygotes_started[1]);
    h.exit(h.spawned[1].second, 0);
    CHECK_FALSE(h.fleet->stopped());  // its zygote is still there
    h.advance(seconds(6));
    CHECK(h.signals_to(h.zygotes_started[1].second, SIGKILL) == 1);
    h.exit(h.zygotes_started[1].second, SIGKILL);
    CHECK(h.fleet->stopped());
}

TEST_CASE("max_private recycles on private memory; RSS that counts the zygote's shared pages does not") {
    Spec s = preload_spec(2);
    s.recycle.max_private = 64ULL << 20;
    s.recycle.min_lifetime = seconds(0);
    Harness h(s);
    h.give(event::ZygoteReady{1});
    h.turn();
    REQUIRE(h.spawned.size() == 2);
    const pid_t a = h.spawned[0].second, b = h.spawned[1].second;
    h.ready(a);
    h.ready(b);
    event::Samples samples;
    samples.memory.push_back({a, 300L << 20, 70L << 20, 40L << 20});  // big RSS, mostly shared
    samples.memory.push_back({b, 310L << 20, 95L << 20, 65L << 20});  // a leak: private over the limit
    h.give(samples);
    h.turn();
    CHECK(h.phase(a) == Phase::ready);
    CHECK(h.phase(b) == Phase::retiring);
    CHECK(h.fleet->by_pid(b)->retire_detail == "recycled: private memory 65 MiB (max_private 64 MiB)");
}

TEST_CASE("with preload the memory budget counts each worker's private memory, and the shared part once") {
    Spec s = preload_spec(2);
    s.memory_limit = 1000ULL << 20;
    s.memory_margin = 0;
    Harness h(s);
    h.give(event::ZygoteReady{1});
    h.turn();
    const pid_t zygote = h.zygotes_started[0].second;
    const pid_t a = h.spawned[0].second, b = h.spawned[1].second;
    h.ready(a);
    h.ready(b);
    event::Samples samples;
    // Each worker: RSS 200 MiB, of which 40 MiB private; 60 MiB of PSS each, so 20 MiB each
    // of the shared pages is theirs; the zygote's PSS (its share) is 60 MiB.
    samples.memory.push_back({a, 200L << 20, 60L << 20, 40L << 20});
    samples.memory.push_back({b, 200L << 20, 60L << 20, 40L << 20});
    samples.memory.push_back({zygote, 200L << 20, 60L << 20, 20L << 20});
    h.give(samples);
    CHECK(h.fleet->zygotes().at(1).pss_bytes == 60L << 20);
    // Shared once: 60 + 2 x 20 = 100 MiB; (1000 - 100) / 40 = 22 workers. By RSS it was 5.
    REQUIRE(h.fleet->memory_cap());
    CHECK(*h.fleet->memory_cap() == 22);

    Spec plain = spec(2);
    plain.memory_limit = 1000ULL << 20;
    plain.memory_margin = 0;
    Harness p(plain);
    p.ready(100);
    p.ready(101);
    event::Samples rss;
    rss.memory.push_back({100, 200L << 20, 60L << 20, 40L << 20});
    rss.memory.push_back({101, 200L << 20, 60L << 20, 40L << 20});
    p.give(rss);
    REQUIRE(p.fleet->memory_cap());
    CHECK(*p.fleet->memory_cap() == 5);  // without preload: RSS per worker, as before
}

TEST_CASE("workers: auto comes down to the memory budget once the whole fleet is measured, never up") {
    Spec s = preload_spec(4);
    s.workers_auto = true;
    s.memory_limit = 300ULL << 20;
    s.memory_margin = 0;
    Harness h(s);
    h.give(event::ZygoteReady{1});
    h.turn();
    REQUIRE(h.spawned.size() == 4);
    const pid_t zygote = h.zygotes_started[0].second;
    auto sample = [&] {
        event::Samples samples;
        for (const auto& [slot, pid] : h.spawned) {
            if (h.fleet->by_pid(pid) != nullptr) samples.memory.push_back({pid, 200L << 20, 60L << 20, 40L << 20});
        }
        samples.memory.push_back({zygote, 200L << 20, 60L << 20, 20L << 20});
        h.give(samples);
    };
    for (int i = 0; i < 3; ++i) h.ready(h.spawned[static_cast<std::size_t>(i)].second);
    sample();
    CHECK(h.fleet->desired() == 4);  // one is not serving yet: not the whole fleet
    h.ready(h.spawned[3].second);
    sample();
    // Shared once: 60 + 4 x 20 = 140 MiB; (300 - 140) / 40 = 4: it fits.
    CHECK(h.fleet->desired() == 4);
    s.memory_limit = 260ULL << 20;  // (260 - 140) / 40 = 3
    Harness tight(s);
    tight.give(event::ZygoteReady{1});
    tight.turn();
    for (const auto& [slot, pid] : tight.spawned) tight.ready(pid);
    event::Samples samples;
    for (const auto& [slot, pid] : tight.spawned) samples.memory.push_back({pid, 200L << 20, 60L << 20, 40L << 20});
    samples.memory.push_back({tight.zygotes_started[0].second, 200L << 20, 60L << 20, 20L << 20});
    tight.give(samples);
    CHECK(tight.fleet->desired() == 3);
    tight.give(samples);
    CHECK(tight.fleet->desired() == 3);  // once: it does not go on shrinking
}

TEST_CASE("a reload to a shorter heartbeat timeout holds the old workers to the timeout they were started with") {
    Spec s = spec(2);
    s.health.timeout = seconds(30);  // the workers beat every 10 s
    Harness h(s);
    h.ready(100);
    h.ready(101);
    Spec shorter = s;
    shorter.health.timeout = seconds(4);
    shorter.backoff.initial = seconds(60);  // the new generation's workers do not boot in this test
    h.fleet->reload(shorter, "SIGHUP", h.now);
    h.calls();
    h.turn();
    for (int i = 0; i < 3; ++i) {
        h.advance(seconds(10));
        h.message(100, "WATCHDOG=1");
        h.message(101, "WATCHDOG=1");
    }
    CHECK(h.phase(100) == Phase::retiring);  // beating every 10 s is not hung by their 30 s
    CHECK(h.phase(101) == Phase::retiring);
    h.advance(seconds(31));                   // silent past their own timeout: hung after all
    CHECK(h.phase(100) == Phase::hung);
}

TEST_CASE("canary analysis: only the first new worker starts; judged worse it rolls back, as good the rollout goes on") {
    Spec s = spec(3);
    s.health.mode = HeartbeatMode::off;
    AnalysisSpec a;
    a.canaries = 1;
    a.window = seconds(10);
    a.min_requests = 50;
    s.rollout.analysis = a;
    for (const bool bad : {true, false}) {
        CAPTURE(bad);
        Harness h(s);
        for (pid_t pid : {100, 101, 102}) h.ready(pid);
        h.fleet->reload(s, "SIGHUP", h.now);
        h.calls();
        h.turn();
        REQUIRE(h.spawned.size() == 4);  // the canary, in slot 0; the other slots wait
        const pid_t canary = h.spawned[3].second;
        CHECK(h.spawned[3].first == 0);
        CHECK(h.fleet->rollout().canary == CanaryPhase::starting);
        h.ready(canary);
        h.turn();
        CHECK(h.phase(100) == Phase::draining);  // it took over its slot
        CHECK(h.fleet->rollout().canary == CanaryPhase::judging);
        h.advance(seconds(5));
        CHECK(h.spawned.size() == 4);
        h.message(101, "STATS=served=100 inflight=0 oldest_ms=0 buckets=100 responses=100");
        h.message(102, "STATS=served=100 inflight=0 oldest_ms=0 buckets=100 responses=99,0,1");
        h.message(canary, bad ? "STATS=served=100 inflight=0 oldest_ms=0 buckets=100 responses=70,0,0,30"
                              : "STATS=served=100 inflight=0 oldest_ms=0 buckets=100 responses=100");
        h.advance(seconds(5));
        if (bad) {
            CHECK(h.fleet->rollout().state == RolloutState::failed);
            CHECK(h.fleet->rollout().reason.find("5xx 30.0% vs 0.0%") != std::string::npos);
            CHECK(h.fleet->rollout().reason.find("rolled back") != std::string::npos);
            CHECK(h.fleet->generation() == 1);
            CHECK(h.phase(101) == Phase::ready);  // kept: it serves on
            h.turn();
            REQUIRE(h.spawned.size() == 5);  // slot 0 gets a worker of generation 1 back
            CHECK(h.spawned[4].first == 0);
        } else {
            CHECK(h.fleet->rollout().canary == CanaryPhase::passed);
            CHECK(h.fleet->rollout().state == RolloutState::running);
            h.turn();
            CHECK(h.spawned.size() >= 5);  // the rest of the fleet rolls now
        }
    }
}

TEST_CASE("canary analysis waits for min_requests; workerctl rollout promote and abort end it by hand") {
    Spec s = spec(2);
    s.health.mode = HeartbeatMode::off;
    AnalysisSpec a;
    a.window = seconds(10);
    a.min_requests = 1000;
    s.rollout.analysis = a;
    Harness h(s);
    h.ready(100);
    h.ready(101);
    CHECK_FALSE(h.fleet->promote(h.now));  // no rollout
    h.fleet->reload(s, "SIGHUP", h.now);
    h.calls();
    h.turn();
    h.ready(h.spawned.back().second);
    h.turn();
    h.advance(seconds(30));
    CHECK(h.fleet->rollout().canary == CanaryPhase::judging);  // 0 of 1000 requests: still waiting
    CHECK(h.fleet->promote(h.now));
    h.calls();
    h.turn();
    CHECK(h.fleet->rollout().canary == CanaryPhase::passed);
    CHECK(h.spawned.size() == 4);

    Harness ab(s);
    ab.ready(100);
    ab.ready(101);
    ab.fleet->reload(s, "SIGHUP", ab.now);
    ab.calls();
    ab.turn();
    CHECK(ab.fleet->abort_rollout(ab.now));
    ab.calls();
    CHECK(ab.fleet->rollout().state == RolloutState::failed);
    CHECK(ab.fleet->rollout().reason.find("aborted by hand") != std::string::npos);
    CHECK_FALSE(ab.fleet->abort_rollout(ab.now));
}

namespace {

/// recycle.leak: `seconds` seconds of 100 requests a second to workers 100 (growing 8 KiB a
/// request) and 101 (flat, wobbling by 1 MiB), a memory sample each second; `inflight` is
/// what 100's STATS say it has in flight.
void serve_and_sample(Harness& h, int from, int to, int inflight) {
    for (int i = from; i <= to; ++i) {
        h.advance(seconds(1));
        const auto served = 100L * i;
        h.message(100, fmt::format("STATS=served={} inflight={} oldest_ms=1", served, inflight).c_str());
        h.message(101, fmt::format("STATS=served={} inflight=2 oldest_ms=1", served).c_str());
        event::Samples samples;
        const long leaking = (40L << 20) + served * 8192;
        const long flat = (40L << 20) + (i % 2 ? 1L << 20 : 0);
        samples.memory.push_back({100, leaking + (20L << 20), leaking, leaking});
        samples.memory.push_back({101, flat + (20L << 20), flat, flat});
        h.give(samples);
    }
}

Spec leak_spec() {
    Spec s = spec(2);
    s.health.mode = HeartbeatMode::off;
    s.recycle.leak = LeakSpec{};
    s.recycle.leak->warmup = 100;
    s.recycle.min_lifetime = seconds(0);
    return s;
}

}  // namespace

TEST_CASE("leak recycling: a worker growing with its requests is replaced at an idle moment; a flat one is spared") {
    Harness h(leak_spec());
    h.ready(100);
    h.ready(101);
    serve_and_sample(h, 1, 60, 3);  // 8 KiB x 6,000 requests: 47 MiB grown, busy all along
    const Worker* w = h.fleet->by_pid(100);
    REQUIRE(w->leak_found);
    CHECK(w->phase == Phase::ready);  // judged, waiting for a moment with nothing in flight
    CHECK(w->leak_detail.find("(8.0 KiB/request)") != std::string::npos);
    CHECK_FALSE(h.fleet->by_pid(101)->leak_found);
    h.message(100, "STATS=served=6001 inflight=0 oldest_ms=0");
    CHECK(h.phase(100) == Phase::retiring);
    CHECK(h.fleet->by_pid(100)->stop_reason == StopReason::leak);
    CHECK(h.fleet->by_pid(100)->retire_detail.find("recycled: grew ") == 0);
    CHECK(h.fleet->by_pid(100)->retire_detail.find("(leaking)") != std::string::npos);
    REQUIRE(h.spawned.size() == 3);  // its successor, through the rolling path
    CHECK(h.spawned[2].first == 0);
    h.ready(h.spawned[2].second);
    CHECK(h.phase(100) == Phase::draining);
    CHECK(h.phase(101) == Phase::ready);
    CHECK(h.fleet->slots().at(0).recycles == 1);
    CHECK(h.fleet->slots().at(1).recycles == 0);
}

TEST_CASE("leak recycling: a leaking worker that is never idle is replaced after idle_wait") {
    Harness h(leak_spec());
    h.ready(100);
    h.ready(101);
    serve_and_sample(h, 1, 60, 3);
    REQUIRE(h.fleet->by_pid(100)->leak_found);
    const TimePoint found = *h.fleet->by_pid(100)->leak_found;
    while (h.phase(100) == Phase::ready && h.now < found + seconds(40)) h.advance(seconds(1));
    CHECK(h.phase(100) == Phase::retiring);
    CHECK(h.now >= found + seconds(30));
    CHECK(h.now <= found + seconds(31));
}
