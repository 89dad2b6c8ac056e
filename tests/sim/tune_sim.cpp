#include "tests/sim/tune_sim.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <queue>
#include <random>
#include <set>

#include <fmt/format.h>

#include "daemon/core/latency_histogram.hpp"

namespace workerd::sim {

const char* to_string(RequestShape shape) {
    switch (shape) {
        case RequestShape::compute: return "compute";
        case RequestShape::await: return "await";
        case RequestShape::thread: return "thread";
        case RequestShape::block: return "block";
    }
    return "?";
}

namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();
constexpr double kMiB = 1024.0 * 1024.0;
constexpr int kUnlimited = 1 << 30;
constexpr std::uint64_t kTruthSeeds = 15;

/// splitmix64: independent seeds for the steps of one run.
std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
    std::uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// The shape a request really has in this app: in a sync worker every wait holds the worker.
RequestShape effective(const AppModel& app, RequestShape shape) {
    if (app.sync && (shape == RequestShape::await || shape == RequestShape::thread)) return RequestShape::block;
    return shape;
}

// ---- one load step ------------------------------------------------------------------------

/// One step, event by event. Times in milliseconds from the schedule's start.
class StepSim {
public:
    StepSim(const AppModel& app, int workers, const LoadStep& step, std::uint64_t seed)
        : app_(app), step_(step), draws_(seed), choices_(mix(seed, 1)), workers_(static_cast<std::size_t>(workers)) {
        slots_ = app.sync ? 1 : kUnlimited;
        length_ = step.seconds * 1000.0;
        for (const auto& k : app.requests) total_weight_ += k.weight;
        ends_at_.assign(workers_.size() + 1, kNever);
        if (step.kind == TrialResult::Kind::open) {
            requests_.reserve(static_cast<std::size_t>(step.rate * step.seconds) + 16);
        }
    }

    TrialResult run();

private:
    struct Request {
        double since = 0;  ///< latency counts from here: the scheduled time (open loop) or the send
        int kind = 0;
        RequestShape shape = RequestShape::compute;
        double cpu_a = 0, wait = 0, cpu_b = 0;
        int stage = 0;      ///< 0: first CPU part, 1: waiting, 2: second CPU part
        int worker = -1;
        bool client_done = false;  ///< answered, or given up by the client
    };
    /// A piece of work on a worker's executor: CPU, or a wait that holds it.
    struct Piece {
        int request = 0;
        bool holds = false;
        double amount = 0;
    };
    struct Worker {
        std::deque<Piece> queue;  ///< front: running (or holding)
        bool running = false;     ///< the front piece has started
        int inflight = 0;
        int threads_busy = 0;
        std::deque<int> thread_queue;
    };
    enum class TimerKind { wait_done, hold_done };
    struct Timer {
        double at;
        TimerKind kind;
        int id;
        bool operator>(const Timer& o) const { return at > o.at; }
    };

    double draw(double mean) {
        if (mean <= 0) return 0;
        const double s = app_.jitter;
        return mean * std::exp(s * normal_(draws_) - s * s / 2);
    }
    int new_request(double since);
    void issue(int id);
    void arrive_at_server(int id);
    void accept(std::size_t w, int id);
    void start(std::size_t w);
    void piece_done(std::size_t w);
    void wait_done(int id);
    void finish(int id);
    void answered(int id);
    void connection_free();
    void arrival();
    void expire_pending();
    void maybe_done();
    void generator_work() {
        if (app_.generator_cpu_ms <= 0) return;
        double& end = ends_at_.back();
        end = (end == kNever ? work_ : end) + app_.generator_cpu_ms;
    }
    void record(double ms) { latency_.record(static_cast<std::uint64_t>(std::llround(std::max(0.0, ms) * 1000.0))); }

    const AppModel& app_;
    LoadStep step_;
    // Two streams: the n-th request draws the same work at every rate (common random numbers,
    // so that a seed's latency grows with the rate), whatever the choices made meanwhile.
    std::mt19937_64 draws_;
    std::mt19937_64 choices_;
    std::normal_distribution<double> normal_{0.0, 1.0};
    std::uniform_real_distribution<double> unit_{0.0, 1.0};
    std::vector<Worker> workers_;
    // Processor sharing on a work clock: every runnable process advances `work_` ms of CPU per
    // `speed` ms, so a piece started at work_ = v with c ms to do ends at work_ = v + c.
    double work_ = 0;
    std::vector<double> ends_at_;  ///< per worker (then the generator): kNever when not runnable
    int runnable_ = 0;             ///< workers (not the generator) with a CPU piece running
    double worker_cpu_ms_ = 0;
    std::vector<Request> requests_;
    std::deque<int> accept_queue_;
    std::deque<int> pending_;  ///< open loop: due, waiting for a connection
    std::deque<std::pair<double, int>> deadlines_;  ///< (timeout, request), in send order
    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
    LatencyHistogram latency_;
    int slots_ = 1;
    double length_ = 0;
    double total_weight_ = 0;
    double now_ = 0;
    std::uint64_t next_due_ = 0;  ///< open loop: the index of the next arrival
    int busy_connections_ = 0;
    bool over_ = false;     ///< the schedule has ended
    bool finished_ = false;
    std::uint64_t ok_ = 0, timeouts_ = 0, unsent_ = 0;
};

int StepSim::new_request(double since) {
    Request r;
    r.since = since;
    double pick = unit_(draws_) * total_weight_;
    for (std::size_t i = 0; i < app_.requests.size(); ++i) {
        r.kind = static_cast<int>(i);
        pick -= app_.requests[i].weight;
        if (pick < 0) break;
    }
    const RequestKind& k = app_.requests[static_cast<std::size_t>(r.kind)];
    r.shape = effective(app_, k.shape);
    const double cpu = draw(k.cpu_ms);
    if (r.shape == RequestShape::compute) {
        r.cpu_a = cpu;
    } else {
        r.cpu_a = cpu / 2;
        r.cpu_b = cpu / 2;
        r.wait = draw(k.wait_ms);
    }
    requests_.push_back(r);
    return static_cast<int>(requests_.size() - 1);
}

void StepSim::issue(int id) {
    ++busy_connections_;
    if (step_.kind == TrialResult::Kind::probe) requests_[static_cast<std::size_t>(id)].since = now_;
    deadlines_.emplace_back(now_ + step_.timeout_ms, id);
    generator_work();
    arrive_at_server(id);
}

void StepSim::arrive_at_server(int id) {
    // An idle worker (blocked in accept or epoll) takes it at once; otherwise it waits for the
    // first busy one to look between two pieces of work.
    std::size_t idle[64];
    std::size_t n = 0;
    for (std::size_t w = 0; w < workers_.size() && n < 64; ++w) {
        if (workers_[w].queue.empty() && workers_[w].inflight < slots_) idle[n++] = w;
    }
    if (n == 0) {
        accept_queue_.push_back(id);
        return;
    }
    accept(idle[std::uniform_int_distribution<std::size_t>(0, n - 1)(choices_)], id);
}

void StepSim::accept(std::size_t w, int id) {
    Worker& k = workers_[w];
    Request& r = requests_[static_cast<std::size_t>(id)];
    r.worker = static_cast<int>(w);
    ++k.inflight;
    k.queue.push_back(Piece{id, false, r.cpu_a});
    if (!k.running) start(w);
}

void StepSim::start(std::size_t w) {
    Worker& k = workers_[w];
    const Piece& p = k.queue.front();
    k.running = true;
    if (p.holds) {
        timers_.push(Timer{now_ + p.amount, TimerKind::hold_done, static_cast<int>(w)});
    } else {
        ends_at_[w] = work_ + p.amount;
        ++runnable_;
    }
}

void StepSim::piece_done(std::size_t w) {
    Worker& k = workers_[w];
    const Piece done = k.queue.front();
    k.queue.pop_front();
    k.running = false;
    if (ends_at_[w] != kNever) {
        ends_at_[w] = kNever;
        --runnable_;
    }
    Request& r = requests_[static_cast<std::size_t>(done.request)];
    if (r.stage == 0) {
        switch (r.shape) {
            case RequestShape::compute: finish(done.request); break;
            case RequestShape::await:
                r.stage = 1;
                timers_.push(Timer{now_ + r.wait, TimerKind::wait_done, done.request});
                break;
            case RequestShape::thread:
                r.stage = 1;
                if (k.threads_busy < app_.threads) {
                    ++k.threads_busy;
                    timers_.push(Timer{now_ + r.wait, TimerKind::wait_done, done.request});
                } else {
                    k.thread_queue.push_back(done.request);
                }
                break;
            case RequestShape::block:
                // The wait runs in the same callback: nothing else gets the executor meanwhile.
                r.stage = 1;
                k.queue.push_front(Piece{done.request, true, r.wait});
                break;
        }
    } else if (r.stage == 1) {  // a holding wait ended: the second CPU part, still in the same callback
        r.stage = 2;
        k.queue.push_front(Piece{done.request, false, r.cpu_b});
    } else {
        finish(done.request);
    }
    // Between two pieces of work the worker looks at the listening socket.
    if (k.inflight < slots_ && !accept_queue_.empty()) {
        const int next = accept_queue_.front();
        accept_queue_.pop_front();
        Request& a = requests_[static_cast<std::size_t>(next)];
        a.worker = static_cast<int>(w);
        ++k.inflight;
        k.queue.push_back(Piece{next, false, a.cpu_a});
    }
    if (!k.queue.empty() && !k.running) start(w);
}

void StepSim::wait_done(int id) {
    Request& r = requests_[static_cast<std::size_t>(id)];
    const auto w = static_cast<std::size_t>(r.worker);
    Worker& k = workers_[w];
    if (r.shape == RequestShape::thread) {
        --k.threads_busy;
        if (!k.thread_queue.empty()) {
            const int next = k.thread_queue.front();
            k.thread_queue.pop_front();
            ++k.threads_busy;
            timers_.push(Timer{now_ + requests_[static_cast<std::size_t>(next)].wait, TimerKind::wait_done, next});
        }
    }
    r.stage = 2;
    k.queue.push_back(Piece{id, false, r.cpu_b});
    if (!k.running) start(w);
}

void StepSim::finish(int id) {
    Request& r = requests_[static_cast<std::size_t>(id)];
    --workers_[static_cast<std::size_t>(r.worker)].inflight;
    answered(id);
}

void StepSim::answered(int id) {
    Request& r = requests_[static_cast<std::size_t>(id)];
    if (r.client_done || finished_) return;  // the client gave up on it: the server worked for nothing
    r.client_done = true;
    ++ok_;
    record(now_ - r.since);
    generator_work();
    connection_free();
}

/// The generator's next(): the connection takes the next due request (open loop, even one past
/// its timeout: the real generator expires the queue only on its ticks) or sends again (closed).
void StepSim::connection_free() {
    --busy_connections_;
    if (step_.kind == TrialResult::Kind::probe) {
        if (!over_) issue(new_request(now_));
    } else if (!pending_.empty()) {
        const int id = pending_.front();
        pending_.pop_front();
        issue(id);
    }
    maybe_done();
}

void StepSim::expire_pending() {
    while (!pending_.empty() && now_ - requests_[static_cast<std::size_t>(pending_.front())].since > step_.timeout_ms) {
        const int id = pending_.front();
        pending_.pop_front();
        requests_[static_cast<std::size_t>(id)].client_done = true;
        ++timeouts_;
        record(now_ - requests_[static_cast<std::size_t>(id)].since);
    }
}

void StepSim::arrival() {
    pending_.push_back(new_request(now_));
    ++next_due_;
    expire_pending();
    while (!pending_.empty() && busy_connections_ < step_.connections) {
        const int id = pending_.front();
        pending_.pop_front();
        issue(id);
    }
}

void StepSim::maybe_done() {
    if (over_ && pending_.empty() && busy_connections_ == 0) finished_ = true;
}

TrialResult StepSim::run() {
    const bool open = step_.kind == TrialResult::Kind::open;
    const double interval = open && step_.rate > 0 ? 1000.0 / step_.rate : kNever;
    if (!open) {
        for (int i = 0; i < step_.connections; ++i) issue(new_request(0));
    }
    double end_at = length_;  // the schedule's end, then the last answers' deadline
    while (!finished_) {
        const double due = static_cast<double>(next_due_) * interval;
        const double t_arrival = open && !over_ && due < length_ ? due : kNever;
        const double t_timer = timers_.empty() ? kNever : timers_.top().at;
        while (!deadlines_.empty() && requests_[static_cast<std::size_t>(deadlines_.front().second)].client_done) {
            deadlines_.pop_front();
        }
        const double t_deadline = deadlines_.empty() ? kNever : deadlines_.front().first;
        // Processor sharing: the runnable processes (and the generator) split the cores.
        std::size_t first = 0;
        for (std::size_t i = 1; i < ends_at_.size(); ++i) {
            if (ends_at_[i] < ends_at_[first]) first = i;
        }
        const int runnable = runnable_ + (ends_at_.back() != kNever ? 1 : 0);
        const double share = runnable == 0 ? 0 : std::min(1.0, app_.cores / runnable);
        const double speed =
            share / (1 + app_.oversubscription_cost * std::max(0.0, runnable - app_.cores));
        const double t_cpu = runnable == 0 ? kNever : now_ + (ends_at_[first] - work_) / speed;
        const double t = std::min({t_arrival, t_timer, t_deadline, t_cpu, end_at});
        if (runnable > 0) {
            work_ += (t - now_) * speed;
            worker_cpu_ms_ += (t - now_) * share * runnable_;
        }
        now_ = t;
        if (t == t_cpu) {
            work_ = ends_at_[first];  // exactly: rounding must not leave a piece a hair short
            if (first == workers_.size()) {
                ends_at_[first] = kNever;
            } else {
                piece_done(first);
            }
        } else if (t == t_timer) {
            const Timer timer = timers_.top();
            timers_.pop();
            if (timer.kind == TimerKind::hold_done) {
                piece_done(static_cast<std::size_t>(timer.id));
            } else {
                wait_done(timer.id);
            }
        } else if (t == t_deadline) {
            const int id = deadlines_.front().second;
            deadlines_.pop_front();
            Request& r = requests_[static_cast<std::size_t>(id)];
            r.client_done = true;  // the connection is closed; the server still works on it
            ++timeouts_;
            record(now_ - r.since);
            connection_free();
        } else if (t == t_arrival) {
            arrival();
        } else if (!over_) {
            over_ = true;  // what is still due gets the timeout to be answered
            end_at = length_ + step_.timeout_ms;
            maybe_done();
        } else {
            unsent_ += pending_.size();
            pending_.clear();
            finished_ = true;  // what is still in flight is abandoned, not counted
        }
    }

    TrialResult t;
    t.kind = step_.kind;
    t.offered_rate = open ? step_.rate : 0;
    t.seconds = step_.seconds;
    t.rate = static_cast<double>(ok_) / step_.seconds;
    t.requests = ok_ + timeouts_ + unsent_;
    t.errors = timeouts_ + unsent_;
    t.timeouts = timeouts_ + unsent_;
    auto ms = [&](double p) { return static_cast<double>(latency_.percentile(p)) / 1000.0; };
    t.p50_ms = ms(50);
    t.p90_ms = ms(90);
    t.p99_ms = ms(99);
    t.objective_ms = ms(step_.objective_percentile);
    t.max_ms = static_cast<double>(latency_.max()) / 1000.0;
    t.cpu_cores = now_ > 0 ? worker_cpu_ms_ / now_ : 0;
    const double pss = app_.shared_mib / static_cast<double>(workers_.size()) + app_.private_mib;
    t.pss_bytes.assign(workers_.size(), static_cast<std::uint64_t>(pss * kMiB));
    t.private_bytes.assign(workers_.size(), static_cast<std::uint64_t>(app_.private_mib * kMiB));
    return t;
}

}  // namespace

TrialResult simulate_step(const AppModel& app, int workers, const LoadStep& step, std::uint64_t seed) {
    return StepSim(app, workers, step, seed).run();
}

double AppModel::capacity(int workers, int connections) const {
    double weight = 0, cpu = 0, holding = 0, thread = 0, latency = 0;
    for (const auto& k : requests) weight += k.weight;
    for (const auto& k : requests) {
        const double p = k.weight / weight;
        const RequestShape shape = effective(*this, k.shape);
        cpu += p * k.cpu_ms;
        latency += p * (k.cpu_ms + k.wait_ms);
        if (shape == RequestShape::block) holding += p * k.wait_ms;
        if (shape == RequestShape::thread) thread += p * k.wait_ms;
    }
    const double w = workers;
    double per_ms = std::min(cores / (cpu + generator_cpu_ms), std::min(w, cores) / cpu);
    per_ms = std::min(per_ms, w / (cpu + holding));
    if (thread > 0) per_ms = std::min(per_ms, w * threads / thread);
    if (connections > 0) per_ms = std::min(per_ms, connections / latency);
    return per_ms * 1000.0;
}

std::string AppModel::describe() const {
    std::string kinds;
    for (const auto& k : requests) {
        kinds += fmt::format("{}{} {:.1f}ms cpu{} ×{:.2f}", kinds.empty() ? "" : ", ", to_string(k.shape), k.cpu_ms,
                             k.wait_ms > 0 ? fmt::format(" + {:.0f}ms wait", k.wait_ms) : "", k.weight);
    }
    return fmt::format("{} cores, {} workers{}, [{}], jitter {:.2f}, oversubscription cost {:.3f}, generator "
                       "{:.3f}ms/req, PSS {:.0f}/w + {:.0f} MiB",
                       cores, sync ? "sync" : "async", !sync ? fmt::format(" ({} threads)", threads) : "", kinds,
                       jitter, oversubscription_cost, generator_cpu_ms, shared_mib, private_mib);
}

double TuneScenario::timeout_ms() const { return std::max(2000.0, objective.latency_ms * 5); }

TuneScenario TuneScenario::from_seed(std::uint64_t seed) {
    TuneScenario s;
    s.seed = seed;
    std::mt19937_64 r(mix(seed, 0x7475'6e65));
    auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(r); };
    auto chance = [&](double p) { return uniform(0, 1) < p; };
    auto between = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(r); };
    AppModel& a = s.app;
    const double cores[] = {1, 1.5, 2, 2, 3, 4};
    a.cores = cores[between(0, 5)];
    switch (seed % 4) {
        case 0:  // tests/data/apps/tune_app.py's /cpu: computing on the event loop (or in a WSGI worker)
            s.kind = "cpu";
            a.sync = chance(0.5);
            a.requests = {{RequestShape::compute, uniform(10, 30), 0, 1}};
            break;
        case 1:  // its /io: awaits
            s.kind = "io";
            a.requests = {{RequestShape::await, uniform(0.8, 2.5), uniform(20, 60), 1}};
            break;
        case 2: {  // its /blocking: a `def` route in anyio's thread pool, under the GIL
            s.kind = "threads";
            const int pools[] = {40, 40, 20, 10};
            a.threads = pools[between(0, 3)];
            a.requests = {{RequestShape::thread, uniform(0.8, 2.5), uniform(20, 60), 1}};
            break;
        }
        default:
            s.kind = "mix";
            a.sync = chance(0.3);
            if (a.sync) {
                a.requests = {{RequestShape::compute, uniform(5, 30), 0, uniform(0.2, 1)},
                              {RequestShape::block, uniform(1, 3), uniform(10, 60), uniform(0.5, 2)}};
            } else {
                a.requests = {{RequestShape::await, uniform(0.5, 3), uniform(10, 80), 1}};
                if (chance(0.7)) a.requests.push_back({RequestShape::compute, uniform(5, 30), 0, uniform(0.05, 0.4)});
                if (chance(0.5)) {
                    a.requests.push_back({RequestShape::thread, uniform(0.5, 3), uniform(10, 60), uniform(0.2, 1)});
                }
                if (chance(0.3)) {
                    a.requests.push_back({RequestShape::block, uniform(0.5, 2), uniform(2, 10), uniform(0.02, 0.1)});
                }
            }
            break;
    }
    a.jitter = uniform(0.1, 0.45);
    a.oversubscription_cost = chance(0.5) ? 0 : uniform(0, 0.03);
    a.generator_cpu_ms = uniform(0, 0.03);
    const double latencies[] = {100, 200, 200, 200, 500, 1000, 2000};
    int objective = between(0, 4);
    if (chance(0.1)) s.objective.percentile = 90;
    // An objective at the latency the app shows unloaded makes every step a coin toss: at least
    // half of it must be left for queueing.
    LoadStep light{TrialResult::Kind::open, a.capacity(1, s.connections) * 0.2, s.step_seconds, s.connections, 0,
                   s.objective.percentile};
    light.timeout_ms = 10000;
    const double floor = simulate_step(a, 1, light, mix(seed, 0x666c6f6f72)).objective_ms;
    while (objective < 6 && floor > latencies[objective] / 2) ++objective;
    s.objective.latency_ms = latencies[objective];
    a.shared_mib = uniform(5, 150);
    a.private_mib = uniform(30, 200);
    if (chance(0.4)) {
        // A budget that holds between 1 and 8 workers.
        const double fits = between(1, 8) + uniform(0.1, 0.9);
        const double limit_mib = (a.shared_mib + fits * a.private_mib) / (1 - s.memory_margin);
        s.memory_limit = static_cast<std::uint64_t>(limit_mib * kMiB);
        if (chance(0.5)) s.memory_per_worker = static_cast<std::uint64_t>((a.shared_mib + a.private_mib) * kMiB);
    }
    return s;
}

std::string TuneScenario::describe() const {
    std::string memory;
    if (memory_limit) {
        memory = fmt::format(", memory limit {:.0f} MiB{}", static_cast<double>(*memory_limit) / kMiB,
                             memory_per_worker ? fmt::format(" (spec: {:.0f} MiB per worker)",
                                                             static_cast<double>(*memory_per_worker) / kMiB)
                                               : "");
    }
    return fmt::format("seed {}: {} app, {}; {}{}", seed, kind, app.describe(), objective.describe(), memory);
}

LoadStep TuneScenario::open_step(double rate) const {
    return LoadStep{TrialResult::Kind::open, rate, step_seconds, connections, timeout_ms(), objective.percentile};
}

double pass_fraction(const TuneScenario& s, int workers, double rate, int seeds, std::uint64_t salt) {
    const RateSearch judge(s.objective, s.limits);
    int passed = 0;
    for (int i = 0; i < seeds; ++i) {
        const auto seed = mix(s.seed ^ salt, static_cast<std::uint64_t>(workers) * 100000 + static_cast<unsigned>(i));
        passed += judge.meets(simulate_step(s.app, workers, s.open_step(rate), seed)) ? 1 : 0;
    }
    return static_cast<double>(passed) / seeds;
}

TrueRate true_sustainable_rate(const TuneScenario& s, int workers) {
    // With common random numbers a seed's latency grows with the rate: each seed has a threshold,
    // found by bisection, and the median over many seeds is the rate at which half the steps
    // meet the objective, far steadier than bisecting over fresh seeds.
    const RateSearch judge(s.objective, s.limits);
    TrueRate out;
    const double capacity = s.app.capacity(workers, s.connections);
    std::vector<double> thresholds;
    auto median = [&] {
        std::vector<double> sorted = thresholds;
        std::sort(sorted.begin(), sorted.end());
        return sorted[sorted.size() / 2];
    };
    for (std::uint64_t k = 0; k < kTruthSeeds; ++k) {
        const auto seed = mix(s.seed ^ 0x7472757468ull, static_cast<std::uint64_t>(workers) * 100 + k);
        auto passes = [&](double rate) {
            ++out.steps;
            return judge.meets(simulate_step(s.app, workers, s.open_step(rate), seed));
        };
        // Bisect within a guess first (the others' median ± 10%), then make sure of the edges
        // the bisection never tried.
        const double guess = thresholds.empty() ? 0 : median();
        if (!thresholds.empty() && guess <= 0) {
            thresholds.push_back(0);
            continue;
        }
        double low = guess > 0 ? guess / 1.1 : capacity * 0.4;
        double high = guess > 0 ? guess * 1.1 : capacity * 1.2;
        bool low_passed = false, high_failed = false;
        for (;;) {
            while (high / low > 1.02) {
                const double mid = std::sqrt(low * high);
                if (passes(mid)) {
                    low = mid;
                    low_passed = true;
                } else {
                    high = mid;
                    high_failed = true;
                }
            }
            if (!low_passed && !passes(low)) {
                high = low;
                high_failed = true;
                low /= 1.5;
                if (low < capacity / 64) {
                    low = 0;
                    break;
                }
                continue;
            }
            low_passed = true;
            if (!high_failed && passes(high)) {
                low = high;
                high *= 1.5;
                continue;
            }
            break;
        }
        thresholds.push_back(low);
    }
    std::sort(thresholds.begin(), thresholds.end());
    out.rate = thresholds[thresholds.size() / 2];
    out.low = thresholds[1];
    out.high = thresholds[thresholds.size() - 2];
    return out;
}

// ---- the tuning run and its invariants -------------------------------------------------

namespace {


class TuneRun {
public:
    explicit TuneRun(const TuneScenario& s) : s_(s) {}

    TuneOutcome run();

private:
    TrialResult step(int workers, const LoadStep& step, std::uint64_t seed) {
        ++out_.simulated_steps;
        return simulate_step(s_.app, workers, step, seed);
    }
    LoadStep open_step(double rate) const { return s_.open_step(rate); }
    void search_ladder();
    TrueRate true_rate(int workers);
    std::optional<int> true_memory_cap() const;
    void check(bool ok, const std::string& what) {
        if (ok) {
            ++out_.checks;
        } else {
            out_.ok = false;
            out_.failures.push_back(what);
        }
    }
    void check_invariants();
    std::string why_not(int workers) const;

    const TuneScenario& s_;
    TuneOutcome out_;
    std::vector<CountResult> counts_;
    std::vector<int> ladder_;
};

/// run_tune's loop (daemon/tune/tune_runner.cpp): the real TuneSession decides, the model runs
/// the steps it asks for.
void TuneRun::search_ladder() {
    TuneBudget budget;
    budget.memory_limit = s_.memory_limit;
    budget.memory_margin = s_.memory_margin;
    budget.usable_cpus = s_.app.cores;
    TuneSession session(s_.objective, s_.limits, budget, {}, s_.memory_per_worker);
    std::string listed;
    for (const int n : session.ladder()) listed += (listed.empty() ? "" : ", ") + std::to_string(n);
    out_.trace.push_back(fmt::format("ladder: {}", listed));
    int current = 0, steps = 0;
    auto count_done = [&] {
        if (current == 0) return;
        check(steps <= s_.limits.max_open_trials + 1,
              fmt::format("(d) {} steps at {}, more than the probe and {} open-loop steps", steps,
                          workers_word(current), s_.limits.max_open_trials));
    };
    for (;;) {
        const TuneSession::Next next = session.next();
        for (auto& note : session.take_notes()) out_.trace.push_back(std::move(note));
        if (next.kind == TuneSession::Next::Kind::done) break;
        if (next.workers != current) {
            count_done();
            current = next.workers;
            steps = 0;
        }
        if (steps > s_.limits.max_open_trials) {  // one more than allowed: (d) fails, stop here
            ++steps;
            break;
        }
        const bool probe = next.step.kind == TrialResult::Kind::probe;
        LoadStep ls = open_step(probe ? 0 : next.step.rate);
        if (probe) {
            ls.kind = TrialResult::Kind::probe;
            ls.seconds = s_.probe_seconds;
            ls.connections = std::min(s_.probe_connections, s_.connections);
        }
        TrialResult t = step(current, ls, mix(s_.seed, static_cast<std::uint64_t>(current) * 100 + steps));
        ++steps;
        ++out_.steps;
        out_.load_seconds += ls.seconds;
        t.passed = session.meets(t);
        out_.trace.push_back(fmt::format("{}: {}", workers_word(current), describe_trial(t, s_.objective)));
        session.record(std::move(t));
    }
    count_done();
    session.finish();
    counts_ = session.results();
    ladder_ = session.ladder();  // as it ended: a session may extend its ladder while climbing
    out_.counts = static_cast<int>(counts_.size());
    out_.recommendation = session.recommendation();
}

TrueRate TuneRun::true_rate(int workers) {
    const auto rate = true_sustainable_rate(s_, workers);
    out_.simulated_steps += rate.steps;
    return rate;
}

std::optional<int> TuneRun::true_memory_cap() const {
    if (!s_.memory_limit) return std::nullopt;
    const double usable = static_cast<double>(*s_.memory_limit) * (1 - s_.memory_margin) / kMiB;
    int fit = 0;
    while (fit < 1024 && s_.app.shared_mib + (fit + 1) * s_.app.private_mib <= usable) ++fit;
    return fit;
}

void TuneRun::check_invariants() {
    const Recommendation& rec = out_.recommendation;
    // The brute force: 1..8, and every count of the sweep (the ladder may go further).
    std::set<int> counts;
    for (int w = 1; w <= s_.truth_counts; ++w) counts.insert(w);
    for (const int w : ladder_) counts.insert(w);
    if (rec.workers > 0) counts.insert(rec.workers);
    for (const int w : counts) out_.true_rates[w] = true_rate(w);
    auto truth = [&](int w) { return out_.true_rates.at(w); };
    out_.true_memory_cap = true_memory_cap();
    const int cap = out_.true_memory_cap.value_or(*counts.rbegin());
    double best = 0;
    int best_count = 0;
    std::string table;
    for (const auto& [w, t] : out_.true_rates) {
        table += fmt::format("{}{}: {} ({}-{}){}", table.empty() ? "" : ", ", w, thousands(t.rate), thousands(t.low),
                             thousands(t.high), w > cap ? " over memory" : "");
        if (w <= cap && t.rate > best) {
            best = t.rate;
            best_count = w;
        }
    }
    out_.trace.push_back(fmt::format("true sustainable rates (one step's 10-90%): {}", table));
    out_.trace.push_back(fmt::format("recommended: {} at {} req/s{}", workers_word(rec.workers), thousands(rec.rate),
                                     rec.memory_cap ? fmt::format(" (memory cap {})", *rec.memory_cap) : ""));
    for (const auto& line : rec.reasons) out_.trace.push_back("  " + line);

    // A check broken on the medians fails when it is broken beyond one step's noise too, and
    // is counted as a near miss otherwise.
    auto judge = [&](bool ok_on_medians, bool ok_within_noise, const std::string& what) {
        if (!ok_on_medians && ok_within_noise) out_.near_misses.push_back(what);
        check(ok_within_noise, what);
    };
    const double enough = best * (1 - s_.tolerance);
    if (best > 0) {
        const TrueRate got = rec.workers > 0 ? truth(rec.workers) : TrueRate{};
        out_.pick_share = got.rate / best;
        int good = best_count;  // the smallest count within the tolerance: why was it not picked?
        for (const auto& [w, t] : out_.true_rates) {
            if (w < good && t.rate >= enough) good = w;
            if (w < rec.workers && w <= cap) out_.smaller_share = std::max(out_.smaller_share, t.rate / best);
        }
        // (a) the recommended count is within 10% of the best of 1..8 and the sweep (within the
        // memory cap).
        judge(rec.workers > 0 && got.rate >= enough, rec.workers > 0 && got.high >= enough,
              fmt::format("(a) recommended {} sustains {} req/s in the model (one step: {}-{}), less than {:.0f}% of "
                          "the best, {} at {}; {} ({} req/s): {}",
                          workers_word(rec.workers), thousands(got.rate), thousands(got.low), thousands(got.high),
                          (1 - s_.tolerance) * 100, thousands(best), workers_word(best_count), workers_word(good),
                          thousands(truth(good).rate), why_not(good)));
        // (b) and no larger count than the smallest that is within that, among the counts of the
        // sweep (the ladder skips some above 6 by design).
        for (const int w : ladder_) {
            if (w >= rec.workers || w > cap) continue;
            const TrueRate t = truth(w);
            judge(t.rate < enough, t.low < enough,
                  fmt::format("(b) recommended {} although {} sustains {} req/s (one step: {}-{}), within {:.0f}% of "
                              "the best ({} at {}); {}",
                              workers_word(rec.workers), workers_word(w), thousands(t.rate), thousands(t.low),
                              thousands(t.high), s_.tolerance * 100, thousands(best), workers_word(best_count),
                              why_not(w)));
        }
    } else {
        check(rec.workers == 0, fmt::format("(a) recommended {} although no count meets {} in the model",
                                            workers_word(rec.workers), s_.objective.describe()));
    }
    // (c) never past the memory cap: the one the recommendation states, and the model's.
    if (rec.memory_cap) {
        check(rec.workers <= *rec.memory_cap, fmt::format("(c) recommended {} past its own memory cap of {}",
                                                          workers_word(rec.workers), *rec.memory_cap));
    }
    if (out_.true_memory_cap) {
        check(rec.workers <= *out_.true_memory_cap,
              fmt::format("(c) recommended {}, but {} fit in the memory limit", workers_word(rec.workers),
                          *out_.true_memory_cap));
    }
    // (d) the load time stays within the plan (the steps per count are checked as they run).
    const double planned =
        (s_.probe_seconds + s_.limits.max_open_trials * s_.step_seconds) * static_cast<double>(ladder_.size());
    check(out_.load_seconds <= planned + 1e-9, fmt::format("(d) {:.0f} s of load, more than the {:.0f} s planned",
                                                           out_.load_seconds, planned));
    // (e) each count's reported rate meets the objective in the model: three more steps at that
    // rate (other seeds), whose median must be within the noise allowed (p99 ≤ 1.25 × the
    // objective). Around the knee the latency climbs steeply (often +50% for +5% of rate), so a
    // rate at the true one misses that half the time: it fails only when the reported rate is
    // also past what one step in ten would still pass, by more than the search's precision.
    for (const auto& c : counts_) {
        if (!c.sustainable_rate) continue;
        const TrueRate t = truth(c.workers);
        if (t.rate > 0) out_.reported_share.push_back(*c.sustainable_rate / t.rate);
        double fail = 0;
        for (const auto& tr : c.trials) {
            if (tr.kind == TrialResult::Kind::probe && tr.rate > 0) out_.probe_share.push_back(t.rate / tr.rate);
            if (tr.kind == TrialResult::Kind::open && !tr.passed && tr.offered_rate > *c.sustainable_rate &&
                (fail == 0 || tr.offered_rate < fail)) {
                fail = tr.offered_rate;
            }
        }
        out_.brackets.push_back(fail > 0 ? fail / *c.sustainable_rate : 0);
        std::vector<TrialResult> again;
        for (std::uint64_t k = 0; k < 3; ++k) {
            again.push_back(step(c.workers, open_step(*c.sustainable_rate),
                                 mix(s_.seed ^ 0x7265636865636bull, static_cast<std::uint64_t>(c.workers) * 10 + k)));
        }
        auto median = [&](auto value) {
            std::vector<double> v;
            for (const auto& a : again) v.push_back(value(a));
            std::sort(v.begin(), v.end());
            return v[1];
        };
        const double latency = median([](const TrialResult& a) { return a.objective_ms; });
        const double errors = median([](const TrialResult& a) { return a.error_ratio(); });
        const bool meets = latency <= s_.objective.latency_ms * s_.noise && errors < s_.objective.max_error_ratio;
        const double precision = 1 + s_.limits.precision;
        judge(meets || *c.sustainable_rate <= t.rate * precision, meets || *c.sustainable_rate <= t.high * precision,
              fmt::format("(e) {} reported {} req/s, {:+.0f}% from the model's {} (one step: {}-{}); again at that "
                          "rate (median of 3): p{} {:.1f} ms, {:.2f}% errors (allowed {:.0f} ms, {:.2f}%)",
                          workers_word(c.workers), thousands(*c.sustainable_rate),
                          t.rate > 0 ? (*c.sustainable_rate / t.rate - 1) * 100 : 100.0, thousands(t.rate),
                          thousands(t.low), thousands(t.high), s_.objective.percentile, latency, errors * 100,
                          s_.objective.latency_ms * s_.noise, s_.objective.max_error_ratio * 100));
    }
}

/// Why the tool did not recommend `workers`, a count the model says would have done.
std::string TuneRun::why_not(int workers) const {
    const Recommendation& rec = out_.recommendation;
    const CountResult* measured = nullptr;
    const CountResult* best = nullptr;
    for (const auto& c : counts_) {
        if (c.workers == workers) measured = &c;
        if (c.sustainable_rate && (!rec.memory_cap || c.workers <= *rec.memory_cap) &&
            (best == nullptr || *c.sustainable_rate > *best->sustainable_rate)) {
            best = &c;
        }
    }
    const bool over_cap = rec.memory_cap && workers > *rec.memory_cap;
    const std::string cap = over_cap ? fmt::format("over the tool's memory cap of {} ({} fit in the model)",
                                                   *rec.memory_cap, out_.true_memory_cap.value_or(0))
                                     : std::string();
    if (measured == nullptr) {
        if (workers > ladder_.back()) return fmt::format("the ladder ends at {}", ladder_.back());
        if (over_cap) return "not measured: " + cap;
        return fmt::format("not measured: the climb stopped at {}", counts_.empty() ? 0 : counts_.back().workers);
    }
    if (over_cap) return "measured but " + cap;
    return fmt::format("measured at {} req/s against the best measured, {} at {} (noise)",
                       thousands(measured->sustainable_rate.value_or(0)),
                       best != nullptr ? thousands(*best->sustainable_rate) : "0",
                       workers_word(best != nullptr ? best->workers : 0));
}

TuneOutcome TuneRun::run() {
    search_ladder();
    check_invariants();
    return std::move(out_);
}

}  // namespace

TuneOutcome run_tune(const TuneScenario& scenario) { return TuneRun(scenario).run(); }

}  // namespace workerd::sim
