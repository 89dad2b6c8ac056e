#pragma once

#include <sys/types.h>

namespace workerd {

/// What /proc/PID/stat says of a process's CPU time and memory, read in one go.
struct ProcSample {
    long cpu_ticks = -1;  ///< user + system CPU time in clock ticks; -1 when it is gone
    long rss_bytes = 0;   ///< resident set size; 0 when it is gone
};

/// One read of /proc/PID/stat (status and /metrics sample every worker: at 1024 workers, one
/// file per worker instead of two).
ProcSample proc_sample(pid_t pid);

/// Resident set size of a process in bytes; 0 when it is gone.
long proc_rss_bytes(pid_t pid);

/// User + system CPU time of a process in clock ticks; -1 when it is gone.
long proc_cpu_ticks(pid_t pid);

}  // namespace workerd
