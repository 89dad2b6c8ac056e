#include "daemon/os/worker_command.hpp"

#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace workerd {
namespace {

bool has_key(const std::string& entry, const std::string& key) {
    return entry.size() > key.size() && entry.compare(0, key.size(), key) == 0 &&
           entry[key.size()] == '=';
}

}  // namespace

std::vector<std::string> worker_argv(const AppSpec& app, const std::vector<ListenAddress>& listeners,
                                     const std::string& self_exe) {
    if (app.builtin) {
        const BuiltinAppSpec& b = *app.builtin;
        std::vector<std::string> argv{self_exe, "serve-builtin"};
        if (!b.root.empty()) argv.insert(argv.end(), {"--root", b.root});
        if (b.demo) argv.emplace_back("--demo");
        if (!b.precompressed) argv.emplace_back("--no-precompressed");
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
