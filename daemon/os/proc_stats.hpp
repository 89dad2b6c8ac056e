#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

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

/// A process's memory by sharing, from /proc/PID/smaps_rollup (Linux 4.14+): what it would
/// cost to add one more like it.
struct ProcMemory {
    long rss_bytes = 0;      ///< resident, shared pages counted in full
    long pss_bytes = 0;      ///< proportional: each shared page divided among its sharers
    long private_bytes = 0;  ///< USS: pages no other process maps (Private_Clean + Private_Dirty)
};
/// nullopt when the process is gone or the file cannot be read (another user's process).
std::optional<ProcMemory> proc_memory(pid_t pid);

/// TCP connections accepted so far in this network namespace (/proc/net/snmp, Tcp:
/// PassiveOpens); nullopt when unreadable.
std::optional<std::uint64_t> tcp_passive_opens();

}  // namespace workerd
