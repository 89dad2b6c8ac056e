#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "daemon/os/listener.hpp"

namespace workerd {

/// `reuse_port: true`: each worker slot accepts on TCP sockets of its own, bound with
/// SO_REUSEPORT to the addresses of the fleet's listeners, so the kernel spreads connections
/// over the slots instead of letting whichever worker is awake take them from one shared
/// queue. The daemon holds every slot's sockets, so connections queued on a slot survive its
/// worker's death and are served by its replacement (and by a rollout's successor, which
/// shares the slot). Slot 0 accepts on the fleet's listeners themselves; Unix listeners are
/// shared by every slot (Linux does not spread connections over Unix sockets).
class SlotListeners {
public:
    using Set = std::vector<std::shared_ptr<Listener>>;

    /// The sockets `slot` accepts on, one for each of the fleet's `main` listeners, in order.
    /// Made on first use and kept while the slot lives. A socket that cannot be made (say the
    /// port is held by a socket without SO_REUSEPORT, such as one from systemd) is the main
    /// listener instead: the slot shares it, with a warning once per listener.
    /// `by_cpu` (`reuse_port: cpu`): each TCP socket returned takes the connections whose
    /// handshake arrives on the slot's CPU (SO_INCOMING_CPU: the (slot mod n)-th CPU this process
    /// may run on); without it, that is cleared and the kernel spreads by hash.
    Set for_slot(int slot, const Set& main, bool by_cpu = false);

    /// Takes `listener` as `slot`'s socket for `main` (one handed over across SIGUSR2).
    void adopt(int slot, const Listener& main, std::shared_ptr<Listener> listener);

    /// Forgets `slot`'s sockets (scaled down): they close once its last worker is gone.
    void drop(int slot);

    /// Forgets the sockets of listeners no longer among `main` (after a reload or rollback).
    void retain(const Set& main);

    /// Whether the kernel moves a closed socket's queued connections to the others
    /// (net.ipv4.tcp_migrate_req = 1); else they are reset.
    static bool kernel_migrates_queues();

    /// `main`'s sibling sockets, every slot's (to add up accept queues, to hand over).
    std::vector<std::pair<int, const Listener*>> siblings_of(const Listener& main) const;

    /// The CPUs this process may run on (sched_getaffinity), in order; slot i steers to the
    /// (i mod n)-th under `reuse_port: cpu`.
    static std::vector<int> allowed_cpus();
    /// The CPU whose connections `slot`'s sockets take under `reuse_port: cpu`.
    int cpu_of(int slot) const { return cpus_[static_cast<std::size_t>(slot) % cpus_.size()]; }

private:
    static std::string key(const Listener& l);
    std::vector<int> cpus_ = allowed_cpus();
    Set sockets_for(int slot, const Set& main);
    std::map<std::pair<int, std::string>, std::shared_ptr<Listener>> sockets_;
    std::map<std::string, bool> warned_;
};

}  // namespace workerd
