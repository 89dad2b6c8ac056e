#include "daemon/os/worker_command.hpp"

#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace workerd {
namespace {

constexpr int kFirstListenFd = 3;

bool all_digits(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int fd_for(const std::string& ref, const std::vector<ListenAddress>& listeners) {
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        if (listeners[i].name == ref) return kFirstListenFd + static_cast<int>(i);
    }
    if (all_digits(ref) && ref.size() < 6 && std::stoul(ref) < listeners.size()) {
        return kFirstListenFd + std::stoi(ref);
    }
    throw std::invalid_argument("{fd:" + ref + "} names no listener");
}

bool has_key(const std::string& entry, const std::string& key) {
    return entry.size() > key.size() && entry.compare(0, key.size(), key) == 0 &&
           entry[key.size()] == '=';
}

}  // namespace

std::string substitute_fds(const std::string& arg, const std::vector<ListenAddress>& listeners) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        const std::size_t open = arg.find("{fd", pos);
        if (open == std::string::npos) break;
        out.append(arg, pos, open - pos);
        const std::size_t after = open + 3;
        if (after < arg.size() && arg[after] == '}') {
            if (listeners.empty()) throw std::invalid_argument("{fd} used without listeners");
            out += std::to_string(kFirstListenFd);
            pos = after + 1;
        } else if (after < arg.size() && arg[after] == ':') {
            const std::size_t close = arg.find('}', after);
            if (close == std::string::npos) throw std::invalid_argument("unterminated {fd: in '" + arg + "'");
            out += std::to_string(fd_for(arg.substr(after + 1, close - after - 1), listeners));
            pos = close + 1;
        } else {
            out += "{fd";  // not a placeholder ("{fdx"): keep it as written
            pos = after;
        }
    }
    out.append(arg, pos, std::string::npos);
    return out;
}

std::vector<std::string> worker_argv(const AppSpec& app, const std::vector<ListenAddress>& listeners,
                                     const std::string& self_exe) {
    if (app.builtin) {
        const BuiltinAppSpec& b = *app.builtin;
        std::vector<std::string> argv{self_exe, "serve-builtin"};
        if (!b.root.empty()) argv.insert(argv.end(), {"--root", b.root});
        if (b.demo) argv.emplace_back("--demo");
        argv.insert(argv.end(), {"--max-connections", std::to_string(b.max_connections),
                                 "--keepalive-timeout", std::to_string(b.keepalive_timeout.count()),
                                 "--max-header-size", std::to_string(b.max_header_size),
                                 "--max-body-size", std::to_string(b.max_body_size)});
        return argv;
    }
    std::vector<std::string> argv;
    argv.reserve(app.command.size());
    for (const auto& arg : app.command) argv.push_back(substitute_fds(arg, listeners));
    return argv;
}

std::vector<std::string> worker_env(const std::vector<std::string>& base, const AppSpec& app,
                                    const std::vector<ListenAddress>& listeners, int slot,
                                    long generation, const RunAsSpec& run_as) {
    std::vector<std::pair<std::string, std::string>> identity;
    if (run_as.user && !run_as.login.empty()) {
        for (const char* key : {"USER", "LOGNAME", "HOME"}) {
            if (!app.env.count(key)) identity.emplace_back(key, key[0] == 'H' ? run_as.home : run_as.login);
        }
    }
    std::vector<std::string> env;
    auto overridden = [&](const std::string& entry) {
        // Ours, and systemd's notification variables: workers never speak to systemd for us.
        for (const char* key : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WORKERD_SLOT",
                                "WORKERD_GENERATION", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) {
            if (has_key(entry, key)) return true;
        }
        for (const auto& [key, value] : app.env) {
            if (has_key(entry, key)) return true;
        }
        for (const auto& [key, value] : identity) {
            if (has_key(entry, key)) return true;
        }
        return false;
    };
    for (const auto& entry : base) {
        if (!overridden(entry)) env.push_back(entry);
    }
    for (const auto& [key, value] : identity) env.push_back(key + "=" + value);
    for (const auto& [key, value] : app.env) env.push_back(key + "=" + value);
    std::string names;
    for (const auto& l : listeners) names += (names.empty() ? "" : ":") + l.name;
    env.push_back("LISTEN_FDS=" + std::to_string(listeners.size()));
    env.push_back("LISTEN_FDNAMES=" + names);
    env.push_back("WORKERD_SLOT=" + std::to_string(slot));
    env.push_back("WORKERD_GENERATION=" + std::to_string(generation));
    return env;
}

std::vector<std::string> current_environment() {
    std::vector<std::string> env;
    for (char** e = ::environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
    return env;
}

}  // namespace workerd
