#pragma once

#include "daemon/wire/spec.hpp"
#include "daemon/wire/units.hpp"

namespace workerd {

/// Restart pacing of one slot. A worker that ran for at least `reset_after` is replaced at
/// once; one that exits sooner counts as a quick exit, and consecutive quick exits wait
/// 0, initial, 2*initial, 4*initial, ... capped at `max`, each with +-20% jitter so that
/// slots failing together do not restart in lockstep. Pure: no clock, no randomness inside.
class Backoff {
public:
    /// Records an exit after `uptime` and returns the delay before the slot's next start.
    /// `jitter` is a uniform random number in [0, 1).
    Duration on_exit(const BackoffSpec& spec, Duration uptime, double jitter);

    /// Records a start that failed before the program ran (exec error): a quick exit.
    Duration on_spawn_failure(const BackoffSpec& spec, double jitter) {
        return on_exit(spec, Duration::zero(), jitter);
    }

    /// Consecutive quick exits so far (0 after a stable run). Shown as "flapping" when > 1.
    int quick_exits() const { return quick_exits_; }

private:
    int quick_exits_ = 0;
};

}  // namespace workerd
