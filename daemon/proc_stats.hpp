#pragma once

#include <sys/types.h>

namespace workerd {

/// Resident set size of a process in bytes, from /proc/PID/statm; 0 when it is gone.
long proc_rss_bytes(pid_t pid);

/// User + system CPU time of a process in clock ticks, from /proc/PID/stat; -1 when it is gone.
long proc_cpu_ticks(pid_t pid);

}  // namespace workerd
