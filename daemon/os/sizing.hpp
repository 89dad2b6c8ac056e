#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/autoscale.hpp"  // memory_budget
#include "daemon/wire/spec.hpp"

namespace workerd {

/// CPUs this process may run on (its affinity mask), at least 1.
int available_cpus();

/// What the container (cgroup) and the scheduler really give this process.
struct Resources {
    std::string cgroup;                   ///< "v2", "v1" or "none"
    std::string cgroup_path;              ///< this process's cgroup, e.g. "/system.slice/app.service"
    int affinity_cpus = 1;                ///< sched_getaffinity
    std::optional<int> cpuset_cpus;       ///< cpuset.cpus.effective (v2) / cpuset.cpus (v1)
    std::optional<double> quota_cpus;     ///< cpu.max / cfs_quota_us over period: 1.5 = 150%
    std::optional<std::uint64_t> memory_limit;  ///< memory.max or memory.high (v2), limit_in_bytes (v1)
    std::vector<std::string> sources;     ///< which files each number came from, for --explain

    /// The CPUs to size for: the smallest of affinity, cpuset and quota (may be fractional).
    double usable_cpus() const;
};

/// Reads the cgroup (v2 or v1, found through /proc/self/cgroup and /proc/self/mountinfo) under
/// `root` ("/" normally; a fixture tree in tests), and this process's CPU affinity.
/// `affinity` overrides sched_getaffinity (tests); 0 = ask the kernel.
Resources detect_resources(const std::string& root = "/", int affinity = 0);

/// `workers: auto` for a workload on these resources, capped by the memory budget, with the
/// derivation line by line (what `workerd check --explain` prints).
struct AutoWorkers {
    int workers = 1;
    std::optional<int> memory_cap;  ///< the budget's limit, when known
    std::vector<std::string> explanation;
};
AutoWorkers auto_workers(const Resources& r, Workload workload, std::optional<std::uint64_t> memory_per_worker,
                         double memory_margin);

/// Resolves `workers: auto` against this host (its cgroup limits and CPUs under `root`): the
/// step after reading a spec, which itself reads no host state for it. Sets spec.workers;
/// returns the derivation.
AutoWorkers resolve_workers(Spec& spec, const std::string& root = "/", int affinity = 0);

}  // namespace workerd
