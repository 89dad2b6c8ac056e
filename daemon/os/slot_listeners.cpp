#include "daemon/os/slot_listeners.hpp"

#include <sched.h>
#include <sys/socket.h>

#include <fstream>
#include <set>

#include <spdlog/spdlog.h>

namespace workerd {

std::string SlotListeners::key(const Listener& l) { return l.address().to_string(); }

bool SlotListeners::kernel_migrates_queues() {
    std::ifstream in("/proc/sys/net/ipv4/tcp_migrate_req");
    int on = 0;
    return (in >> on) && on == 1;
}

std::vector<int> SlotListeners::allowed_cpus() {
    std::vector<int> out;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (CPU_ISSET(cpu, &set)) out.push_back(cpu);
        }
    }
    if (out.empty()) out.push_back(0);
    return out;
}

SlotListeners::Set SlotListeners::for_slot(int slot, const Set& main, bool by_cpu) {
    Set out = slot == 0 ? main : sockets_for(slot, main);
    // Set each time: a reload may turn it on or off (-1: the kernel hashes again). Linux before
    // 6.1 takes the option and keeps hashing among reuseport sockets.
    const int cpu = by_cpu ? cpu_of(slot) : -1;
    for (const auto& l : out) {
        if (l->address().kind == ListenAddress::Kind::tcp) ::setsockopt(l->fd(), SOL_SOCKET, SO_INCOMING_CPU, &cpu, sizeof cpu);
    }
    return out;
}

SlotListeners::Set SlotListeners::sockets_for(int slot, const Set& main) {
    Set out;
    for (const auto& l : main) {
        if (l->address().kind != ListenAddress::Kind::tcp) {
            out.push_back(l);
            continue;
        }
        auto& socket = sockets_[{slot, key(*l)}];
        if (!socket) {
            try {
                // Bound to the port the main listener got (a spec's port 0 included).
                socket = std::make_shared<Listener>(open_listener(l->address(), l->backlog(), true));
            } catch (const ListenError& e) {
                if (!warned_[key(*l)]) {
                    spdlog::warn("reuse_port: {}; the slots share the listener {} instead (a socket opened "
                                 "without SO_REUSEPORT, e.g. by systemd or before reuse_port was set, "
                                 "cannot be joined)", e.what(), l->address().to_string());
                    warned_[key(*l)] = true;
                }
                socket = l;
            }
        }
        out.push_back(socket);
    }
    return out;
}

void SlotListeners::adopt(int slot, const Listener& main, std::shared_ptr<Listener> listener) {
    sockets_[{slot, key(main)}] = std::move(listener);
}

void SlotListeners::drop(int slot) {
    for (auto it = sockets_.begin(); it != sockets_.end();) {
        it = it->first.first == slot ? sockets_.erase(it) : std::next(it);
    }
}

void SlotListeners::retain(const Set& main) {
    std::set<std::string> keep;
    for (const auto& l : main) keep.insert(key(*l));
    for (auto it = sockets_.begin(); it != sockets_.end();) {
        it = keep.count(it->first.second) ? std::next(it) : sockets_.erase(it);
    }
}

std::vector<std::pair<int, const Listener*>> SlotListeners::siblings_of(const Listener& main) const {
    std::vector<std::pair<int, const Listener*>> out;
    for (const auto& [k, socket] : sockets_) {
        if (k.second == key(main) && socket.get() != &main) out.emplace_back(k.first, socket.get());
    }
    return out;
}

}  // namespace workerd
