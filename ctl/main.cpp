// workerctl: see and steer a running workerd over its control socket
// (docs/control-protocol.md). Every failure is one plain sentence and a documented exit code.
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "ctl/client.hpp"
#include "ctl/render.hpp"
#include "daemon/os/control_path.hpp"
#include "daemon/os/spec_host.hpp"
#include "daemon/os/sizing.hpp"
#include "daemon/version.hpp"

using json = nlohmann::json;
using namespace workerctl;
using namespace std::chrono_literals;

namespace {

struct Options {
    std::string socket;
    std::string spec;
    double timeout_s = 10;
};

// -s PATH, else -c SPEC's control.socket, else $WORKERD_SOCKET, else the default.
std::string resolve_socket(const Options& o) {
    if (!o.socket.empty()) return o.socket;
    if (!o.spec.empty()) {
        auto r = workerd::load_spec_file(o.spec, workerd::available_cpus());
        if (!r.ok()) {
            throw Failure(kUsage, fmt::format("cannot read the control socket from {}: {}", o.spec,
                                              r.errors.front().to_string()));
        }
        return r.spec->control.socket.empty() ? workerd::default_control_socket() : r.spec->control.socket;
    }
    if (const char* env = std::getenv("WORKERD_SOCKET"); env != nullptr && *env != '\0') return env;
    return workerd::default_control_socket();
}

std::chrono::milliseconds ms(double seconds) { return std::chrono::milliseconds(static_cast<long>(seconds * 1000)); }

// Polls status until `done` says so, or fails after `timeout_s`.
void wait_until(Client& client, double timeout_s, const std::function<bool(const json&)>& done,
                const std::function<std::string(const json&)>& describe) {
    const auto deadline = std::chrono::steady_clock::now() + ms(timeout_s);
    json status;
    // From 5 ms, doubling to 100 ms: a quick change is seen at once, and a long wait does not
    // keep the daemon busy answering (a status of 1024 workers takes it milliseconds).
    auto pause = 5ms;
    while (true) {
        status = client.call("status");
        if (done(status)) return;
        if (std::chrono::steady_clock::now() >= deadline) {
            throw Failure(kFailed, fmt::format("gave up after {}s: {}", timeout_s, describe(status)));
        }
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::milliseconds>(pause * 2, 100ms);
    }
}

std::string fleet_text(const json& s) {
    return fmt::format("{} of {} workers ready", s.value("ready", 0), s.value("desired", 0));
}

bool settled(const json& s) { return !s.value("rolling", false) && s.value("ready", 0) == s.value("desired", -1); }

volatile std::sig_atomic_t g_quit = 0;

// `top`: the alternate screen, redrawn every interval; q or Ctrl-C quits and restores the terminal.
int top(Client& client, double interval_s) {
    if (!::isatty(STDOUT_FILENO)) throw Failure(kUsage, "top needs a terminal; use `workerctl status --json` in scripts");
    termios saved{};
    const bool tty_in = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty_in) {
        termios raw = saved;
        raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_quit = 1; };
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    std::fputs("\x1b[?1049h\x1b[?25l", stdout);  // alternate screen, hide the cursor
    auto restore = [&] {
        std::fputs("\x1b[?25h\x1b[?1049l", stdout);
        std::fflush(stdout);
        if (tty_in) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    };
    json previous;
    bool have_previous = false;
    try {
        while (!g_quit) {
            json status = client.call("status");
            winsize ws{};
            const int rows = ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 ? ws.ws_row : 24;
            std::fputs("\x1b[H", stdout);
            std::fputs(render_top(status, have_previous ? &previous : nullptr, interval_s, rows).c_str(), stdout);
            std::fflush(stdout);
            previous = std::move(status);
            have_previous = true;
            // Wait for the next frame, or a key.
            pollfd p{STDIN_FILENO, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(interval_s * 1000)) > 0) {
                char c = 0;
                if (::read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q' || c == 3)) break;
            }
        }
    } catch (...) {
        restore();
        throw;
    }
    restore();
    return kOk;
}

// "scale -2" must reach the scale command as a value, not as an option.
std::vector<std::string> protect_negative_numbers(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    static const std::regex negative("-[0-9]+");
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
        if (args[i] == "scale" && std::regex_match(args[i + 1], negative)) {
            // Everything after "--" is positional: move the number there, at the very end.
            const std::string n = args[i + 1];
            args.erase(args.begin() + static_cast<long>(i) + 1);
            args.push_back("--");
            args.push_back(n);
            break;
        }
    }
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"workerctl: see and steer a running workerd (status, scale, reload, restart, rollout, stop, top)", "workerctl"};
    app.set_version_flag("--version", std::string("workerctl ") + workerd::kVersion);
    Options o;
    app.add_option("-s,--socket", o.socket, "the daemon's control socket (default: $WORKERD_SOCKET, else the daemon's default)");
    app.add_option("-c,--config", o.spec, "read the control socket from this spec file");
    app.add_option("--timeout", o.timeout_s, "seconds to wait for an answer, and for --wait (default 10; 60 with --wait)");
    app.require_subcommand(1);

    bool as_json = false;
    auto* status = app.add_subcommand("status", "the fleet: daemon, workers, requests, latency");
    status->add_flag("--json", as_json, "print the status as JSON, for scripts");

    std::string count;
    bool wait = false;
    auto* scale = app.add_subcommand("scale", "set the number of workers: N, +N or -N (pins it), or auto");
    scale->add_option("count", count, "N (absolute), +N or -N (relative), or auto (back to the autoscaler)")->required();
    scale->add_flag("--wait", wait, "return once the fleet has that many ready workers");

    auto* reload = app.add_subcommand("reload", "re-read the spec and roll out a new generation (as SIGHUP)");
    reload->add_flag("--wait", wait, "return once the new generation is rolled out; exit 1 if it failed");

    int slot = -1;
    bool all = false;
    auto* restart = app.add_subcommand("restart", "restart one worker slot, or all (rolling)");
    auto* slot_opt = restart->add_option("slot", slot, "the slot to restart");
    auto* all_flag = restart->add_flag("--all", all, "restart every worker, one at a time");
    slot_opt->excludes(all_flag);
    restart->add_flag("--wait", wait, "return once the restarted workers are ready");

    std::string rollout_action;
    auto* rollout = app.add_subcommand("rollout", "end a reload's canary analysis by hand: promote or abort");
    rollout->add_option("action", rollout_action, "promote (roll out without waiting for the verdict) or abort (roll back)")
        ->required()
        ->check(CLI::IsMember({"promote", "abort"}));

    bool now = false;
    auto* stop = app.add_subcommand("stop", "stop the daemon gracefully (as SIGTERM)");
    stop->add_flag("--now", now, "stop at once: workers get SIGKILL (as SIGQUIT)");

    double interval = 1.0;
    auto* topc = app.add_subcommand("top", "a live view of the fleet; q quits");
    topc->add_option("-n,--interval", interval, "seconds between refreshes (default 1)")->check(CLI::Range(0.1, 3600.0));

    auto* config = app.add_subcommand("config", "the daemon's effective spec, as JSON");
    auto* version = app.add_subcommand("version", "workerctl's and the daemon's versions");

    const auto args = protect_negative_numbers(argc, argv);
    try {
        std::vector<std::string> reversed(args.rbegin(), args.rend());
        app.parse(reversed);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? kOk : kUsage;
    }

    try {
        const bool waiting = wait && !app.get_option("--timeout")->count();
        const double reply_timeout = o.timeout_s;
        const double wait_timeout = waiting ? 60.0 : o.timeout_s;
        if (*restart && slot < 0 && !all) throw Failure(kUsage, "restart needs a SLOT or --all");
        Client client(resolve_socket(o), ms(reply_timeout));

        if (*status) {
            const json s = client.call("status");
            std::fputs(as_json ? (s.dump(2) + "\n").c_str() : render_status(s).c_str(), stdout);
        } else if (*scale) {
            if (count == "auto") {
                client.call("scale", json{{"auto", true}});
                std::printf("the autoscaler decides the size again\n");
                return kOk;
            }
            static const std::regex shape("([+-]?)([0-9]+)");
            std::smatch m;
            if (!std::regex_match(count, m, shape)) throw Failure(kUsage, fmt::format("scale needs N, +N or -N, not '{}'", count));
            // Any number is a count, however large: the daemon says what range it takes (a
            // number past 64 bits is past any range, and is said so here the same way).
            std::int64_t n = 0;
            if (const auto [end, ec] = std::from_chars(count.data() + m.position(2), count.data() + count.size(), n);
                ec != std::errc()) {
                throw Failure(kFailed, fmt::format("the fleet must have 1 to {} workers, not {}", workerd::kMaxWorkers, count));
            }
            const json args_json = m[1].length() == 0 ? json{{"workers", n}}
                                                      : json{{"delta", m[1] == "-" ? -n : n}};
            const int target = client.call("scale", args_json).value("desired", 0);
            if (wait) {
                wait_until(client, wait_timeout,
                           [&](const json& s) { return s.value("desired", 0) == target && s.value("ready", 0) == target; },
                           fleet_text);
            }
            std::printf("%d worker%s\n", target, target == 1 ? "" : "s");
        } else if (*reload) {
            // An invalid spec is refused right here, with its file:line:column messages.
            const long generation = client.call("reload").value("generation", 0L);
            if (wait) {
                json rollout;
                wait_until(client, wait_timeout,
                           [&](const json& s) {
                               rollout = s.value("rollout", json());
                               return rollout.is_object() && (rollout.value("generation", 0L) != generation ||
                                                              rollout.value("state", "") != "running");
                           },
                           fleet_text);
                if (rollout.value("generation", 0L) != generation) {
                    throw Failure(kFailed, fmt::format("generation {} was superseded by generation {}", generation,
                                                       rollout.value("generation", 0L)));
                }
                if (rollout.value("state", "") == "failed") {
                    throw Failure(kFailed, fmt::format("the rollout of generation {} failed: {}; the previous generation keeps serving",
                                                       generation, rollout.value("reason", json("?")).get<std::string>()));
                }
            }
            std::printf("generation %ld %s\n", generation, wait ? "rolled out" : "rolling out");
        } else if (*restart) {
            const json args_json = all ? json{{"all", true}} : json{{"slot", slot}};
            const json r = client.call("restart", args_json);
            if (wait) wait_until(client, wait_timeout, settled, fleet_text);
            std::printf("restarting %s%s\n", r.value("restarting", json::array()).dump().c_str(), wait ? ": done" : "");
        } else if (*rollout) {
            const json r = client.call("rollout", json{{"action", rollout_action}});
            std::printf("generation %ld %s\n", r.value("generation", 0L),
                        rollout_action == "promote" ? "promoted: rolling out" : "aborted: rolled back");
        } else if (*stop) {
            client.call_allowing_close("stop", json{{"now", now}});
            std::printf("stopping%s\n", now ? " now" : " gracefully");
        } else if (*topc) {
            return top(client, interval);
        } else if (*config) {
            std::printf("%s\n", client.call("config").dump(2).c_str());
        } else if (*version) {
            const json v = client.call("version");
            std::printf("workerctl %s\nworkerd %s (control protocol %d)\n", workerd::kVersion,
                        v.value("version", "?").c_str(), v.value("protocol", 0));
        }
        return kOk;
    } catch (const Failure& f) {
        std::fprintf(stderr, "workerctl: %s\n", f.what());
        return f.code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "workerctl: %s\n", e.what());
        return kFailed;
    }
}
