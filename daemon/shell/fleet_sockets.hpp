#pragma once

// The fleet's listening sockets, as the shell holds them: the current generation's, the
// previous generation's while a rollout may still go back to them, and with reuse_port each
// slot's own. What the core decides about them arrives as actions (Rollback, RolloutDone,
// SlotRemoved, StopSlotSockets, Stopping); this class carries them out.

#include <memory>
#include <set>
#include <vector>

#include "daemon/os/listen_queue.hpp"
#include "daemon/os/listener.hpp"
#include "daemon/os/slot_listeners.hpp"
#include "daemon/shell/render.hpp"
#include "daemon/wire/handover.hpp"
#include "daemon/wire/spec.hpp"

namespace workerd {

class FleetSockets {
public:
    using Set = std::vector<std::shared_ptr<Listener>>;

    explicit FleetSockets(std::vector<Listener> listeners);

    /// The current generation's listeners, in the order of the spec's `listen`.
    const Set& current() const { return current_; }

    /// What a worker of `slot` accepts on: the fleet's listeners, or with `reuse_port` the
    /// slot's own sockets for them (with `reuse_port: cpu`, each taking its CPU's connections).
    Set for_slot(int slot, const Spec& spec);
    /// `reuse_port: cpu`, for a bundled worker of `slot`: the TCP sockets of the other `slots`,
    /// each with its slot, which it takes connections from when their own worker has clearly
    /// more (or is gone), so connections that all arrive on one CPU still spread.
    std::vector<std::pair<int, std::shared_ptr<Listener>>> peers_of(int slot, const std::vector<int>& slots, const Spec& spec);

    /// Each listener's accept queue, with its slots' sockets added up.
    std::vector<QueueFacts> queues() const;
    /// Connections waiting on all of them.
    int queued() const;

    /// A reload's listeners: an address that stays keeps its socket (and accept queue); a new
    /// one is opened now. Throws ListenError (and nothing changes) when one cannot be.
    Set open_for(const Spec& next) const;
    /// A reload starts using `next`; the current ones are what a failed rollout goes back to.
    void switch_to(Set next, bool reuse_port);
    /// After adopting workers (SIGUSR2): a failed rollout goes back to the same listeners.
    void keep_for_rollback() { previous_ = current_; }
    /// action::Rollback: back to the previous generation's listeners.
    void rollback(bool reuse_port);
    /// action::RolloutDone: the previous generation's listeners are no longer needed (each
    /// closes with its last worker).
    void rolled_out() { previous_.clear(); }
    /// action::SlotRemoved: the slot's own sockets close with its last worker.
    void slot_removed(int slot) { slots_.drop(slot); }
    /// action::StopSlotSockets: of a worker's sockets, its slot's own stop listening, so the
    /// kernel sends no more connections there.
    void stop_slot_sockets(const Set& of_worker) const;
    /// Stopping: the daemon's copies of these and `more` (older generations' still in use)
    /// close, but those systemd holds. Returns how many closed.
    int close(const std::set<std::shared_ptr<Listener>>& more);

    /// SIGUSR2: what the next image needs of them.
    void hand_over(Handover& h) const;
    /// The next image takes the slots' own sockets handed over.
    void adopt(const std::vector<SlotSocket>& slot_sockets);

private:
    std::optional<ListenQueue> queue_of(const Listener& l) const;

    Set current_;
    Set previous_;  ///< what a failed rollout goes back to
    SlotListeners slots_;  ///< reuse_port: each slot's own sockets
};

}  // namespace workerd
