#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// A small shared-memory table through which the bundled workers of one fleet see each other's
/// load: per slot, the number of open connections and when the worker last looked in.
///
/// Why: all workers accept from one shared queue, and whichever process is awake drains it. A
/// burst of keep-alive connections (a load balancer's pool, wrk's 64) then lands on one worker
/// while the others idle, for as long as the connections live. With the board, a worker that
/// holds clearly more connections than a live peer waits a moment before taking the next one,
/// so the peer gets it. A peer that stops looking in (blocked, hung, gone) stops counting after
/// kStaleAfterMs, so a stuck worker never holds the others back.
///
/// The daemon creates the board (a memfd) and hands it to each bundled worker after the
/// listeners, naming it in WORKERD_BOARD_FD; a worker's slot is WORKERD_SLOT. Workers that do
/// not get one simply accept as they please.
///
/// The board also says where each worker last ran (its CPU) and who it is (its pid), and holds
/// a random token only its holders can read: a worker hands a large answer's connection to the
/// worker on its client's CPU through that worker's inbox, named by the token and the pid
/// (http::Handoff).
class LoadBoard {
public:
    static constexpr int kSlots = 1024;                ///< slots past this do not take part
    static constexpr std::int64_t kStaleAfterMs = 1000;  ///< a peer silent this long is ignored
    static constexpr int kMargin = 2;  ///< defer when a live peer holds this many fewer
    /// The margin under `reuse_port: cpu`, where each worker has its own queue (its CPU's
    /// connections) and takes from another's only when that one holds this many more: wider,
    /// so a connection stays with the worker of its CPU unless the split is clearly uneven.
    static constexpr int kStealMargin = 8;

    /// A new, zeroed board for one fleet, as a close-on-exec memfd.
    static UniqueFd create();

    /// Maps the board behind `fd` for `slot`. nullopt when the slot is out of range or the fd
    /// is not a board (wrong size, cannot be mapped); the caller then runs without one.
    static std::optional<LoadBoard> attach(int fd, int slot);

    LoadBoard(LoadBoard&& other) noexcept;
    LoadBoard& operator=(LoadBoard&&) = delete;
    LoadBoard(const LoadBoard&) = delete;
    LoadBoard& operator=(const LoadBoard&) = delete;
    ~LoadBoard();

    /// This worker's open connections; one relaxed store, cheap enough for every connection.
    void set_connections(int n);
    /// "Still here", at `now_ms` (a CLOCK_MONOTONIC reading in ms; see now_ms()).
    void touch(std::int64_t now_ms);
    /// The CPU this worker runs on now (sched_getcpu); one relaxed store.
    void set_cpu(int cpu);
    /// The pid of a live worker of another slot that last ran on `cpu` and holds fewer than
    /// `mine + margin` connections (of several, the one holding the fewest); nullopt when there
    /// is none.
    std::optional<std::int32_t> worker_on_cpu(int cpu, int mine, std::int64_t now_ms, int margin = kStealMargin) const;
    /// The fleet's random token, in hex (32 characters): the same for every holder of the board.
    std::string token() const;
    /// Leaves the board: peers stop deferring to this worker at once (used when draining).
    void leave();

    /// True when some other live slot holds at least `margin` fewer connections than `mine`.
    bool peer_has_room(int mine, std::int64_t now_ms, int margin = kMargin) const;
    /// True when `slot` holds at least `margin` more connections than `mine`, or is not live
    /// (never there, left, or silent past kStaleAfterMs): the converse of peer_has_room.
    bool busier(int slot, int mine, std::int64_t now_ms, int margin = kMargin) const;

    static std::int64_t now_ms();

private:
    struct alignas(64) Entry {
        std::atomic<std::int64_t> seen_ms;  ///< 0: not taking part
        std::atomic<std::int32_t> connections;
        std::atomic<std::int32_t> cpu_plus_one;  ///< where the worker last ran, plus one; 0: not said
        std::atomic<std::int32_t> pid;           ///< the worker that attached last
    };
    struct Table {
        unsigned char token[16];               ///< random, written once at create(); first
        std::atomic<std::int32_t> slots_used;  ///< highest slot that ever attached, plus one
        Entry entries[kSlots];
    };
    static_assert(std::atomic<std::int64_t>::is_always_lock_free);
    static_assert(std::atomic<std::int32_t>::is_always_lock_free);

    LoadBoard(Table* table, int slot) : table_(table), slot_(slot) {}

    Table* table_ = nullptr;
    int slot_ = 0;
};

}  // namespace workerd
