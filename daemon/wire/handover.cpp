#include "daemon/wire/handover.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace workerd {
namespace {

using json = nlohmann::json;

void set_cloexec(int fd) {
    if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

bool fd_open(int fd) { return fd >= 0 && ::fcntl(fd, F_GETFD) != -1; }

int checked_fd(const json& j, const char* key, bool required) {
    if (!j.contains(key) && !required) return -1;
    const int fd = j.at(key).get<int>();
    if (fd == -1 && !required) return -1;
    if (!fd_open(fd)) throw std::invalid_argument(fmt::format("{} {} is not an open descriptor", key, fd));
    return fd;
}

int socket_option(int fd, int option) {
    int value = 0;
    socklen_t len = sizeof value;
    return ::getsockopt(fd, SOL_SOCKET, option, &value, &len) == 0 ? value : -1;
}

Listener adopt(const ListenAddress& wanted, InheritedSocket socket, int backlog) {
    ListenAddress address = wanted;
    if (address.kind == ListenAddress::Kind::tcp) {
        sockaddr_storage bound{};
        socklen_t len = sizeof bound;
        if (::getsockname(socket.fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
            address.port = port_of(bound);
        }
        // As open_listener does: accepted connections inherit it (see listener.cpp).
        int one = 1;
        ::setsockopt(socket.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    Listener l(std::move(address), std::move(socket.fd), backlog, socket.owns_path);
    if (socket.activated) l.mark_activated();
    return l;
}

}  // namespace

std::vector<int> Handover::fds() const {
    std::vector<int> out;
    for (const auto& l : listeners) out.push_back(l.fd.get());
    for (int fd : {control_fd, metrics_fd, guardian_fd}) {
        if (fd >= 0) out.push_back(fd);
    }
    for (const auto& w : workers) {
        for (int fd : {w.stdout_fd, w.stderr_fd, w.notify_fd}) {
            if (fd >= 0) out.push_back(fd);
        }
    }
    for (const auto& s : slot_sockets) out.push_back(s.fd);
    return out;
}

json handover_to_json(const Handover& h) {
    json j{{"generation", h.generation}, {"desired", h.desired}, {"pinned", h.pinned},
           {"control_fd", h.control_fd}, {"metrics_fd", h.metrics_fd},
           {"guardian_pid", h.guardian_pid}, {"guardian_fd", h.guardian_fd},
           {"listeners", json::array()}, {"workers", json::array()}, {"spec_text", h.spec_text},
           {"slot_sockets", json::array()}};
    for (const auto& s : h.slot_sockets) {
        j["slot_sockets"].push_back({{"slot", s.slot}, {"listener", s.listener}, {"fd", s.fd}});
    }
    for (const auto& l : h.listeners) {
        j["listeners"].push_back({{"fd", l.fd.get()}, {"name", l.name}, {"owns_path", l.owns_path},
                                  {"activated", l.activated}});
    }
    for (const auto& w : h.workers) {
        j["workers"].push_back({{"pid", w.pid}, {"slot", w.slot}, {"generation", w.generation},
                                {"ready", w.ready}, {"draining", w.draining}, {"age_ms", w.age_ms},
                                {"stdout_fd", w.stdout_fd}, {"stderr_fd", w.stderr_fd},
                                {"notify_fd", w.notify_fd}});
    }
    return j;
}

Handover handover_from_json(const json& j) {
    Handover h;
    try {
        h.generation = j.at("generation").get<long>();
        h.desired = j.at("desired").get<int>();
        h.pinned = j.at("pinned").get<bool>();
        h.spec_text = j.value("spec_text", std::string());
        for (const auto& s : j.value("slot_sockets", json::array())) {
            SlotSocket ss;
            ss.slot = s.at("slot").get<int>();
            ss.listener = s.at("listener").get<int>();
            ss.fd = checked_fd(s, "fd", true);
            if (ss.slot < 1 || ss.listener < 0) {
                throw std::invalid_argument(fmt::format("bad slot socket: slot {} listener {}", ss.slot, ss.listener));
            }
            h.slot_sockets.push_back(ss);
        }
        h.control_fd = checked_fd(j, "control_fd", false);
        h.metrics_fd = checked_fd(j, "metrics_fd", false);
        h.guardian_fd = checked_fd(j, "guardian_fd", false);
        h.guardian_pid = j.value("guardian_pid", 0);
        if (h.guardian_fd >= 0 && h.guardian_pid <= 1) throw std::invalid_argument("a guardian pipe without its pid");
        for (const auto& l : j.at("listeners")) {
            InheritedSocket s;
            s.fd = UniqueFd(checked_fd(l, "fd", true));
            s.name = l.at("name").get<std::string>();
            s.owns_path = l.at("owns_path").get<bool>();
            s.activated = l.value("activated", false);
            h.listeners.push_back(std::move(s));
        }
        for (const auto& w : j.at("workers")) {
            HandedWorker hw;
            hw.pid = w.at("pid").get<pid_t>();
            hw.slot = w.at("slot").get<int>();
            hw.generation = w.at("generation").get<long>();
            hw.ready = w.at("ready").get<bool>();
            hw.draining = w.at("draining").get<bool>();
            hw.age_ms = w.at("age_ms").get<long>();
            hw.stdout_fd = checked_fd(w, "stdout_fd", false);
            hw.stderr_fd = checked_fd(w, "stderr_fd", false);
            hw.notify_fd = checked_fd(w, "notify_fd", false);
            if (hw.pid <= 1 || hw.slot < 0) throw std::invalid_argument(fmt::format("bad worker pid {} slot {}", hw.pid, hw.slot));
            h.workers.push_back(hw);
        }
    } catch (const json::exception& e) {
        throw std::invalid_argument(e.what());
    }
    if (h.generation < 1 || h.desired < 0) throw std::invalid_argument("bad generation or worker count");
    return h;
}

std::optional<Handover> take_handover() {
    const char* text = std::getenv(Handover::kVariable);
    if (text == nullptr) return std::nullopt;
    const std::string copy = text;
    ::unsetenv(Handover::kVariable);
    json j;
    try {
        j = json::parse(copy);
    } catch (const json::exception& e) {
        throw std::invalid_argument(e.what());
    }
    Handover h = handover_from_json(j);
    for (int fd : h.fds()) set_cloexec(fd);
    return h;
}

std::vector<InheritedSocket> take_listen_fds() {
    const char* pid = std::getenv("LISTEN_PID");
    const char* count = std::getenv("LISTEN_FDS");
    const std::string names = std::getenv("LISTEN_FDNAMES") ? std::getenv("LISTEN_FDNAMES") : "";
    std::vector<InheritedSocket> out;
    const bool ours = pid != nullptr && count != nullptr && std::atol(pid) == ::getpid();
    for (const char* key : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) ::unsetenv(key);
    if (!ours) return out;
    const int n = std::atoi(count);
    std::size_t start = 0;
    for (int i = 0; i < n && i < 4096; ++i) {
        InheritedSocket s;
        s.activated = true;
        s.fd = UniqueFd(3 + i);
        set_cloexec(s.fd.get());
        const std::size_t end = names.find(':', start);
        if (start <= names.size()) s.name = names.substr(start, end == std::string::npos ? std::string::npos : end - start);
        start = end == std::string::npos ? names.size() + 1 : end + 1;
        out.push_back(std::move(s));
    }
    return out;
}

bool socket_bound_to(int fd, const ListenAddress& address) {
    if (socket_option(fd, SO_ACCEPTCONN) != 1 || socket_option(fd, SO_TYPE) != SOCK_STREAM) return false;
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) return false;
    if (address.kind == ListenAddress::Kind::unix_path) {
        const auto& sun = reinterpret_cast<const sockaddr_un&>(bound);
        return bound.ss_family == AF_UNIX && address.path == sun.sun_path;
    }
    std::optional<sockaddr_storage> want;
    try {
        want = resolve_listen_address(address).addr;
    } catch (const ListenError&) {
        return false;
    }
    if (want->ss_family != bound.ss_family) return false;
    if (address.port != 0 && port_of(bound) != address.port) return false;
    if (bound.ss_family == AF_INET) {
        return reinterpret_cast<const sockaddr_in&>(bound).sin_addr.s_addr ==
               reinterpret_cast<const sockaddr_in&>(*want).sin_addr.s_addr;
    }
    if (bound.ss_family == AF_INET6) {
        return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(bound).sin6_addr,
                           &reinterpret_cast<const sockaddr_in6&>(*want).sin6_addr, sizeof(in6_addr)) == 0;
    }
    return false;
}

std::vector<Listener> adopt_or_open_listeners(const std::vector<ListenAddress>& addresses, int backlog,
                                              std::vector<InheritedSocket>& inherited, bool reuse_port) {
    if (inherited.empty()) return open_listeners(addresses, backlog, reuse_port);
    const int effective = clamp_backlog(backlog, read_somaxconn());
    auto take = [&](const ListenAddress& a, bool by_name) -> std::optional<InheritedSocket> {
        for (auto it = inherited.begin(); it != inherited.end(); ++it) {
            if (by_name && it->name != a.name) continue;
            if (!by_name && a.kind == ListenAddress::Kind::tcp && a.port == 0) continue;
            if (!socket_bound_to(it->fd.get(), a)) continue;
            InheritedSocket s = std::move(*it);
            inherited.erase(it);
            return s;
        }
        return std::nullopt;
    };
    std::vector<Listener> out;
    for (const auto& a : addresses) {
        auto s = take(a, true);
        if (!s) s = take(a, false);
        if (s) {
            spdlog::info("listen {}: using the inherited socket{}", a.to_string(),
                         s->name.empty() ? "" : " '" + s->name + "'");
            out.push_back(adopt(a, std::move(*s), effective));
        } else {
            out.push_back(open_listener(a, effective, reuse_port));
        }
    }
    return out;
}

}  // namespace workerd
