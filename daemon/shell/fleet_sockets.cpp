#include "daemon/shell/fleet_sockets.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <string>

namespace workerd {
namespace {

std::string listener_key(const ListenAddress& a) { return a.to_string() + "|" + a.name; }

}  // namespace

FleetSockets::FleetSockets(std::vector<Listener> listeners) {
    for (auto& l : listeners) current_.push_back(std::make_shared<Listener>(std::move(l)));
}

FleetSockets::Set FleetSockets::for_slot(int slot, const Spec& spec) {
    return spec.reuse_port ? slots_.for_slot(slot, current_, spec.reuse_port_cpu) : current_;
}

std::vector<std::pair<int, std::shared_ptr<Listener>>> FleetSockets::peers_of(int slot, const std::vector<int>& slots,
                                                                             const Spec& spec) {
    std::vector<std::pair<int, std::shared_ptr<Listener>>> out;
    const Set own = for_slot(slot, spec);
    for (int other : slots) {
        if (other == slot) continue;
        for (const auto& l : for_slot(other, spec)) {
            // Unix listeners are shared (already its own); a slot sharing the main listener too.
            if (l->address().kind != ListenAddress::Kind::tcp || std::find(own.begin(), own.end(), l) != own.end()) continue;
            out.emplace_back(other, l);
        }
    }
    return out;
}

std::optional<ListenQueue> FleetSockets::queue_of(const Listener& l) const {
    const bool unix_socket = l.address().kind == ListenAddress::Kind::unix_path;
    auto total = listen_queue(l.fd(), unix_socket);
    if (!total) return total;
    for (const auto& [slot, socket] : slots_.siblings_of(l)) {
        if (auto q = listen_queue(socket->fd(), unix_socket)) {
            total->depth += q->depth;
            total->max += q->max;
        }
    }
    return total;
}

std::vector<QueueFacts> FleetSockets::queues() const {
    std::vector<QueueFacts> out;
    for (const auto& l : current_) {
        if (auto q = queue_of(*l)) out.push_back({l->address().name, static_cast<long>(q->depth), static_cast<long>(q->max)});
    }
    return out;
}

int FleetSockets::queued() const {
    int total = 0;
    for (const auto& q : queues()) total += static_cast<int>(q.depth);
    return total;
}

FleetSockets::Set FleetSockets::open_for(const Spec& next) const {
    std::map<std::string, std::shared_ptr<Listener>> kept;
    for (const auto& l : current_) kept[listener_key(l->address())] = l;
    Set out;
    for (const auto& address : next.listen) {
        auto found = kept.find(listener_key(address));
        out.push_back(found != kept.end() ? found->second
                                          : std::make_shared<Listener>(open_listener(address, next.backlog, next.reuse_port)));
    }
    return out;
}

void FleetSockets::switch_to(Set next, bool reuse_port) {
    // A superseded rollout's target becomes the state to return to.
    previous_ = std::move(current_);
    current_ = std::move(next);
    // reuse_port off now: the slots' own sockets close with the workers still using them.
    slots_.retain(reuse_port ? current_ : Set{});
}

void FleetSockets::rollback(bool reuse_port) {
    current_ = std::move(previous_);
    previous_.clear();
    slots_.retain(reuse_port ? current_ : Set{});
}

void FleetSockets::stop_slot_sockets(const Set& of_worker) const {
    // Connections already queued there move to the other slots where net.ipv4.tcp_migrate_req
    // is 1 (else they are reset).
    for (const auto& l : of_worker) {
        const bool own = std::find(current_.begin(), current_.end(), l) == current_.end();
        if (own && l->address().kind == ListenAddress::Kind::tcp) ::shutdown(l->fd(), SHUT_RD);
    }
}

int FleetSockets::close(const std::set<std::shared_ptr<Listener>>& more) {
    std::set<std::shared_ptr<Listener>> sockets(current_.begin(), current_.end());
    sockets.insert(more.begin(), more.end());
    int closed = 0;
    for (const auto& l : sockets) {
        if (l->activated()) continue;  // systemd keeps it: connections wait for the next daemon
        l->close();
        ++closed;
    }
    return closed;
}

void FleetSockets::hand_over(Handover& h) const {
    for (const auto& l : current_) {
        InheritedSocket s;
        s.fd = UniqueFd(l->fd());
        s.name = l->address().name;
        s.owns_path = l->owns_path();
        s.activated = l->activated();
        h.listeners.push_back(std::move(s));
    }
    for (std::size_t i = 0; i < current_.size(); ++i) {
        for (const auto& [slot, socket] : slots_.siblings_of(*current_[i])) {
            h.slot_sockets.push_back({slot, static_cast<int>(i), socket->fd()});
        }
    }
}

void FleetSockets::adopt(const std::vector<SlotSocket>& slot_sockets) {
    for (const auto& ss : slot_sockets) {
        UniqueFd fd(ss.fd);
        if (static_cast<std::size_t>(ss.listener) >= current_.size()) continue;  // closed
        const auto& main = current_[static_cast<std::size_t>(ss.listener)];
        slots_.adopt(ss.slot, *main, std::make_shared<Listener>(main->address(), std::move(fd), main->backlog(), false));
    }
}

}  // namespace workerd
