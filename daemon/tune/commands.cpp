#include "daemon/tune/commands.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/load/load_generator.hpp"
#include "daemon/tune/tune_runner.hpp"
#include "daemon/wire/units.hpp"

namespace workerd::tune {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitNothingMet = 4;
constexpr int kExitInterrupted = 130;

std::atomic<bool> g_stop{false};

void on_stop_signal(int) {
    // The first Ctrl-C ends the run and reports; a second one is the default (exit at once: the
    // fleet still dies with this process, by PR_SET_PDEATHSIG).
    if (g_stop.exchange(true)) ::signal(SIGINT, SIG_DFL);
}

void install_stop_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
}

std::chrono::milliseconds to_ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d); }

/// "5s", "500ms": a duration > 0, or a usage error naming the option.
std::chrono::milliseconds duration_option(const std::string& option, const std::string& text) {
    std::string error;
    const auto d = parse_duration(text, error);
    if (!d || d->count() <= 0) throw CLI::ValidationError(option, fmt::format("'{}': {}", text, error.empty() ? "must be > 0" : error));
    return to_ms(*d);
}

/// `--slo p99=200ms[,errors=0.1%]`.
TuneObjective objective_option(const std::string& text) {
    TuneObjective o;
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto comma = text.find(',', start);
        const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        const auto eq = part.find('=');
        if (eq == std::string::npos) throw CLI::ValidationError("--slo", fmt::format("'{}': write e.g. p99=200ms", part));
        const std::string key = part.substr(0, eq);
        const std::string value = part.substr(eq + 1);
        if (key.size() > 1 && key[0] == 'p') {
            try {
                std::size_t used = 0;
                o.percentile = std::stod(key.substr(1), &used);
                if (used != key.size() - 1 || o.percentile <= 0 || o.percentile >= 100) throw std::invalid_argument(key);
            } catch (const std::exception&) {
                throw CLI::ValidationError("--slo", fmt::format("'{}': a percentile is p50 .. p99.9", key));
            }
            o.latency_ms = static_cast<double>(duration_option("--slo", value).count());
        } else if (key == "errors") {
            if (value.empty() || value.back() != '%') throw CLI::ValidationError("--slo", "errors is a percentage, e.g. errors=0.1%");
            try {
                o.max_error_ratio = std::stod(value.substr(0, value.size() - 1)) / 100.0;
            } catch (const std::exception&) {
                throw CLI::ValidationError("--slo", fmt::format("'{}': not a percentage", value));
            }
            if (o.max_error_ratio <= 0 || o.max_error_ratio > 1) throw CLI::ValidationError("--slo", "errors must be in (0%, 100%]");
        } else {
            throw CLI::ValidationError("--slo", fmt::format("unknown '{}': use pNN=DURATION and errors=PERCENT", key));
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return o;
}

/// `--workers 1-8` or `1,2,4,8` (or both: `1-4,6,8`), ascending, each 1..1024.
std::vector<int> counts_option(const std::string& text) {
    std::vector<int> out;
    std::size_t start = 0;
    auto number = [&](const std::string& s) {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 4) {
            throw CLI::ValidationError("--workers", fmt::format("'{}': write e.g. 1-8 or 1,2,4,8", text));
        }
        const int n = std::stoi(s);
        if (n < 1 || n > 1024) throw CLI::ValidationError("--workers", "counts are 1 to 1024");
        return n;
    };
    while (start <= text.size()) {
        const auto comma = text.find(',', start);
        const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (const auto dash = part.find('-'); dash != std::string::npos) {
            const int a = number(part.substr(0, dash));
            const int b = number(part.substr(dash + 1));
            if (b < a) throw CLI::ValidationError("--workers", fmt::format("'{}': a range goes up", part));
            for (int n = a; n <= b; ++n) out.push_back(n);
        } else {
            out.push_back(number(part));
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::vector<load::RequestSpec> request_options(const std::vector<std::string>& urls, const std::string& file) {
    std::vector<load::RequestSpec> out;
    for (const auto& u : urls) {
        std::string error;
        auto r = load::parse_request_spec(u, error);
        if (!r) throw CLI::ValidationError("--url", error);
        out.push_back(std::move(*r));
    }
    if (!file.empty()) {
        try {
            for (auto& r : load::read_request_file(file)) out.push_back(std::move(r));
        } catch (const std::runtime_error& e) {
            throw CLI::ValidationError("--urls", e.what());
        }
    }
    return out;
}

bool write_file(const std::string& path, const std::string& content) {
    std::ofstream out(path, std::ios::trunc);
    out << content;
    out.close();
    if (!out) {
        std::fprintf(stderr, "workerd: cannot write %s\n", path.c_str());
        return false;
    }
    return true;
}

}  // namespace

int tune_command(const std::vector<std::string>& args, const std::string& self) {
    CLI::App app{"workerd tune: load the spec's app at several worker counts and recommend one (docs/tuning.md)",
                 "workerd tune"};
    TuneOptions o;
    o.workerd = self;
    std::vector<std::string> urls;
    std::string url_file, slo = "p99=200ms", counts, step = "5s", probe = "2s", timeout, report_path;
    bool as_json = false;
    app.add_option("spec", o.spec_path, "the spec (its app runs on loopback ports of its own)")->required();
    app.add_option("--url", urls, "a request to load, [METHOD ]/PATH[:WEIGHT][ BODY] (repeatable; default: GET /)");
    app.add_option("--urls", url_file, "a file with one such request per line");
    app.add_option("--slo", slo, "the objective, e.g. p99=200ms or p95=50ms,errors=0.5% (default p99=200ms, errors 0.1%)");
    app.add_option("--workers", counts, "the counts to try, e.g. 1-8 or 1,2,4,8 (default: 1 up to the budget, "
                                        "stopping once more workers add nothing)");
    app.add_option("--step", step, "each load step (default 5s)");
    app.add_option("--probe", probe, "each closed-loop probe (default 2s)");
    app.add_option("--max-steps", o.limits.max_open_trials, "open-loop steps per count (default 5)")->check(CLI::Range(1, 50));
    app.add_option("--connections", o.connections, "the load generator's connections (default 256)")->check(CLI::Range(1, 100000));
    app.add_option("--threads", o.threads, "the load generator's threads (default 1)")->check(CLI::Range(1, 64));
    app.add_option("--timeout", timeout, "a request unanswered this long is an error (default 5 x the objective, >= 2s)");
    app.add_flag("--json", as_json, "print the results as JSON on stdout (docs/tuning.md); progress stays on stderr");
    app.add_option("--report", report_path, "also write an HTML report with charts to this file");
    app.add_flag("--allow-root", o.allow_root, "as root, run the workers as root when the spec sets no user");
    try {
        std::vector<std::string> reversed(args.rbegin(), args.rend());
        app.parse(reversed);
        o.objective = objective_option(slo);
        if (!counts.empty()) o.counts = counts_option(counts);
        o.step = duration_option("--step", step);
        o.probe = duration_option("--probe", probe);
        if (!timeout.empty()) o.request_timeout = duration_option("--timeout", timeout);
        o.requests = request_options(urls, url_file);
        if (o.requests.empty()) o.requests.push_back(load::RequestSpec{});
    } catch (const CLI::CallForHelp&) {
        std::printf("%s", app.help().c_str());
        return kExitOk;
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "workerd tune: %s\n", e.what());
        return kExitUsage;
    }

    install_stop_signals();
    TuneReport report;
    try {
        report = run_tune(o, g_stop, stderr);
    } catch (const TuneError& e) {
        std::fprintf(stderr, "workerd tune: %s\n", e.what());
        return g_stop ? kExitInterrupted : e.exit_code;
    }
    if (as_json) {
        std::fputs(render_json(report).c_str(), stdout);
        std::fflush(stdout);  // whole, before the text on stderr (when both go to one file)
        std::fputs(("\n" + render_text(report)).c_str(), stderr);
    } else {
        std::fputs(("\n" + render_text(report)).c_str(), stdout);
    }
    if (!report_path.empty()) {
        if (!write_file(report_path, render_html(report))) return 3;
        std::fprintf(stderr, "report: %s\n", report_path.c_str());
    }
    if (g_stop) return kExitInterrupted;
    return report.recommendation.workers > 0 ? kExitOk : kExitNothingMet;
}

int load_command(const std::vector<std::string>& args) {
    CLI::App app{"workerd load: an open-loop HTTP load generator (docs/tuning.md)", "workerd load"};
    std::string url, duration = "10s", timeout = "5s", url_file;
    std::vector<std::string> urls;
    load::Options o;
    bool as_json = false;
    double max_errors = -1;
    app.add_option("url", url, "http://HOST:PORT/PATH")->required();
    app.add_option("--rate", o.rate, "requests per second, scheduled at constant intervals (default 0: closed loop, "
                                     "each connection as fast as it is answered)")->check(CLI::Range(0.0, 1e7));
    app.add_option("--duration", duration, "how long to send (default 10s)");
    app.add_option("--connections,-c", o.connections, "at most this many (closed loop: exactly; default 64)")->check(CLI::Range(1, 100000));
    app.add_option("--threads,-t", o.threads, "event loops (default 1)")->check(CLI::Range(1, 64));
    app.add_option("--timeout", timeout, "per request (default 5s)");
    app.add_option("--url", urls, "more requests on the same host, [METHOD ]/PATH[:WEIGHT][ BODY] (repeatable)");
    app.add_option("--urls", url_file, "a file with one such request per line");
    app.add_option("--max-errors", max_errors, "exit 1 when more than this share of requests fail, e.g. 0.001");
    app.add_flag("--json", as_json, "print the result as JSON");
    try {
        std::vector<std::string> reversed(args.rbegin(), args.rend());
        app.parse(reversed);
        std::string error;
        const auto u = load::parse_url(url, error);
        if (!u) throw CLI::ValidationError("url", error);
        o.host = u->host;
        o.port = u->port;
        o.duration = duration_option("--duration", duration);
        o.timeout = duration_option("--timeout", timeout);
        o.requests = request_options(urls, url_file);
        if (o.requests.empty() || u->target != "/") {
            load::RequestSpec first;
            first.target = u->target;
            o.requests.insert(o.requests.begin(), first);
        }
    } catch (const CLI::CallForHelp&) {
        std::printf("%s", app.help().c_str());
        return kExitOk;
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "workerd load: %s\n", e.what());
        return kExitUsage;
    }
    install_stop_signals();
    o.stop = &g_stop;
    if (::isatty(STDERR_FILENO) == 1) {
        o.on_progress = [](const load::Progress& p) {
            std::fprintf(stderr, "\r\033[K%.1fs  %s req/s  p99 %.1f ms  errors %llu", p.elapsed_s,
                         thousands(p.rate).c_str(), p.p99_ms, static_cast<unsigned long long>(p.errors));
        };
    }
    load::Result r;
    try {
        r = load::run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "workerd load: %s\n", e.what());
        return 3;
    }
    if (o.on_progress) std::fprintf(stderr, "\r\033[K");
    const double error_ratio =
        r.requests() == 0 ? 0.0 : static_cast<double>(r.errors()) / static_cast<double>(r.requests());
    if (as_json) {
        nlohmann::json j{{"mode", o.rate > 0 ? "open" : "closed"},
                         {"offered_rate", o.rate},
                         {"seconds", r.seconds},
                         {"requests", r.requests()},
                         {"ok", r.ok},
                         {"rate", r.rate()},
                         {"errors", r.errors()},
                         {"http_errors", r.http_errors},
                         {"connect_errors", r.connect_errors},
                         {"io_errors", r.io_errors},
                         {"timeouts", r.timeouts},
                         {"unsent", r.unsent},
                         {"bytes", r.bytes},
                         {"connections_opened", r.connections_opened},
                         {"p50_ms", r.ms(50)},
                         {"p90_ms", r.ms(90)},
                         {"p99_ms", r.ms(99)},
                         {"p999_ms", r.ms(99.9)},
                         {"max_ms", static_cast<double>(r.latency.max()) / 1000.0},
                         {"mean_ms", r.latency.mean() / 1000.0},
                         {"ok_p50_ms", static_cast<double>(r.ok_latency.percentile(50)) / 1000.0},
                         {"ok_p99_ms", static_cast<double>(r.ok_latency.percentile(99)) / 1000.0},
                         {"sent_p50_ms", static_cast<double>(r.sent_latency.percentile(50)) / 1000.0},
                         {"sent_p99_ms", static_cast<double>(r.sent_latency.percentile(99)) / 1000.0},
                         {"stopped", r.stopped}};
        std::printf("%s\n", j.dump(2).c_str());
    } else {
        std::printf("%s loop, %s:%s, %.1f s, %d connection%s opened\n", o.rate > 0 ? "open" : "closed",
                    o.host.c_str(), o.port.c_str(), r.seconds, r.connections_opened,
                    r.connections_opened == 1 ? "" : "s");
        if (o.rate > 0) std::printf("  offered   %s req/s\n", thousands(o.rate).c_str());
        std::printf("  answered  %s req/s (%llu ok)\n", thousands(r.rate()).c_str(), static_cast<unsigned long long>(r.ok));
        std::printf("  errors    %llu (http %llu, connect %llu, io %llu, timeouts %llu, unsent %llu)\n",
                    static_cast<unsigned long long>(r.errors()), static_cast<unsigned long long>(r.http_errors),
                    static_cast<unsigned long long>(r.connect_errors), static_cast<unsigned long long>(r.io_errors),
                    static_cast<unsigned long long>(r.timeouts), static_cast<unsigned long long>(r.unsent));
        std::printf("  received  %.1f MiB/s (%s bytes, headers included)\n",
                    r.seconds > 0 ? static_cast<double>(r.bytes) / r.seconds / 1048576.0 : 0.0,
                    thousands(static_cast<double>(r.bytes)).c_str());
        std::printf("  latency   p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms%s\n", r.ms(50),
                    r.ms(90), r.ms(99), r.ms(99.9), static_cast<double>(r.latency.max()) / 1000.0,
                    o.rate > 0 ? "  (from each request's scheduled time)" : "");
    }
    if (r.stopped) return kExitInterrupted;
    return max_errors >= 0 && error_ratio > max_errors ? 1 : kExitOk;
}

}  // namespace workerd::tune
