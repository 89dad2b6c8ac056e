#include "daemon/os/sizing.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace workerd {
namespace {

std::optional<std::string> read_line(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line)) return std::nullopt;
    return line;
}

// "0-3,8,10-11" -> 7
int count_cpu_list(const std::string& list) {
    int n = 0;
    std::istringstream in(list);
    for (std::string part; std::getline(in, part, ',');) {
        if (part.empty()) continue;
        const auto dash = part.find('-');
        if (dash == std::string::npos) {
            ++n;
        } else {
            n += std::stoi(part.substr(dash + 1)) - std::stoi(part.substr(0, dash)) + 1;
        }
    }
    return n;
}

std::optional<std::uint64_t> parse_bytes(const std::string& text) {
    if (text.empty() || text == "max") return std::nullopt;
    try {
        const auto v = std::stoull(text);
        // cgroup v1 says "no limit" with a huge page-aligned number.
        if (v >= (std::uint64_t{1} << 62)) return std::nullopt;
        return v;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// Where a cgroup hierarchy is mounted, from mountinfo: fstype "cgroup2", or "cgroup" with
// `controller` among its super options.
std::optional<std::string> mount_point(const std::string& root, const std::string& fstype, const std::string& controller) {
    std::ifstream in(root + "/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        const auto sep = line.find(" - ");
        if (sep == std::string::npos) continue;
        std::istringstream before(line.substr(0, sep)), after(line.substr(sep + 3));
        std::string id, parent, dev, mroot, mpoint, type, source, options;
        before >> id >> parent >> dev >> mroot >> mpoint;
        after >> type >> source >> options;
        if (type != fstype) continue;
        if (!controller.empty() && ("," + options + ",").find("," + controller + ",") == std::string::npos) continue;
        return mpoint;
    }
    return std::nullopt;
}

}  // namespace

int available_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? static_cast<int>(online) : 1;
}

double Resources::usable_cpus() const {
    double cpus = affinity_cpus;
    if (cpuset_cpus) cpus = std::min(cpus, static_cast<double>(*cpuset_cpus));
    if (quota_cpus) cpus = std::min(cpus, *quota_cpus);
    return std::max(cpus, 0.01);
}

Resources detect_resources(const std::string& root_dir, int affinity) {
    Resources r;
    // Files are read under `root` (a fixture tree in tests) and shown without it.
    const std::string root = root_dir == "/" ? "" : root_dir;
    auto shown = [&](const std::string& path) { return path.substr(root.size()); };
    r.affinity_cpus = affinity > 0 ? affinity : available_cpus();
    r.sources.push_back(fmt::format("affinity: {} CPUs (sched_getaffinity)", r.affinity_cpus));
    std::ifstream cgroups(root + "/proc/self/cgroup");
    std::string v2_path, v1_cpu, v1_cpuset, v1_memory;
    // Our cgroup's directory in a hierarchy: "/" (the hierarchy's root) adds nothing.
    auto under = [](const std::string& mount, const std::string& path) { return path == "/" ? mount : mount + path; };
    for (std::string line; std::getline(cgroups, line);) {
        // "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
        const auto first = line.find(':');
        const auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        const std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
        const std::string path = line.substr(second + 1);
        if (line.substr(0, first) == "0" && controllers == ",,") v2_path = path;
        if (controllers.find(",cpu,") != std::string::npos) v1_cpu = path;
        if (controllers.find(",cpuset,") != std::string::npos) v1_cpuset = path;
        if (controllers.find(",memory,") != std::string::npos) v1_memory = path;
    }
    auto v2_mount = mount_point(root, "cgroup2", "");
    if (!v1_cpu.empty() || !v1_memory.empty()) {
        r.cgroup = "v1";
        r.cgroup_path = !v1_cpu.empty() ? v1_cpu : v1_memory;
        if (auto m = mount_point(root, "cgroup", "cpu")) {
            const std::string dir = root + under(*m, v1_cpu);
            const auto quota = read_line(dir + "/cpu.cfs_quota_us");
            const auto period = read_line(dir + "/cpu.cfs_period_us");
            if (quota && period && std::stol(*quota) > 0 && std::stol(*period) > 0) {
                r.quota_cpus = static_cast<double>(std::stol(*quota)) / static_cast<double>(std::stol(*period));
                r.sources.push_back(fmt::format("quota: {}/{} = {:.2f} CPUs ({}/cpu.cfs_quota_us)", *quota, *period,
                                                *r.quota_cpus, shown(dir)));
            }
        }
        if (auto m = mount_point(root, "cgroup", "cpuset")) {
            if (auto cpus = read_line(root + under(*m, v1_cpuset) + "/cpuset.cpus"); cpus && !cpus->empty()) {
                r.cpuset_cpus = count_cpu_list(*cpus);
                r.sources.push_back(fmt::format("cpuset: {} = {} CPUs ({}/cpuset.cpus)", *cpus, *r.cpuset_cpus, under(*m, v1_cpuset)));
            }
        }
        if (auto m = mount_point(root, "cgroup", "memory")) {
            if (auto limit = read_line(root + under(*m, v1_memory) + "/memory.limit_in_bytes")) {
                r.memory_limit = parse_bytes(*limit);
                if (r.memory_limit) {
                    r.sources.push_back(fmt::format("memory: {} bytes ({}/memory.limit_in_bytes)", *r.memory_limit, under(*m, v1_memory)));
                }
            }
        }
    } else if (v2_mount && !v2_path.empty()) {
        r.cgroup = "v2";
        r.cgroup_path = v2_path;
        // Limits apply from every ancestor: walk up from our cgroup to the root, keep the tightest.
        std::string path = v2_path;
        while (true) {
            const std::string dir = root + *v2_mount + (path == "/" ? "" : path);
            if (auto max = read_line(dir + "/cpu.max")) {
                std::istringstream in(*max);
                std::string quota, period;
                in >> quota >> period;
                if (quota != "max" && !period.empty()) {
                    const double q = std::stod(quota) / std::stod(period);
                    if (!r.quota_cpus || q < *r.quota_cpus) {
                        r.quota_cpus = q;
                        r.sources.push_back(fmt::format("quota: {} = {:.2f} CPUs ({}/cpu.max)", *max, q, shown(dir)));
                    }
                }
            }
            if (!r.cpuset_cpus) {
                if (auto cpus = read_line(dir + "/cpuset.cpus.effective"); cpus && !cpus->empty()) {
                    r.cpuset_cpus = count_cpu_list(*cpus);
                    r.sources.push_back(fmt::format("cpuset: {} = {} CPUs ({}/cpuset.cpus.effective)", *cpus, *r.cpuset_cpus,
                                                    shown(dir)));
                }
            }
            for (const char* file : {"memory.max", "memory.high"}) {
                if (auto text = read_line(dir + "/" + file)) {
                    if (auto bytes = parse_bytes(*text); bytes && (!r.memory_limit || *bytes < *r.memory_limit)) {
                        r.memory_limit = bytes;
                        r.sources.push_back(fmt::format("memory: {} bytes ({}/{})", *bytes, shown(dir), file));
                    }
                }
            }
            if (path == "/" || path.empty()) break;
            const auto slash = path.rfind('/');
            path = slash == 0 ? "/" : path.substr(0, slash);
        }
    } else {
        r.cgroup = "none";
    }
    if (!r.memory_limit) r.sources.push_back("memory: no limit");
    return r;
}


AutoWorkers auto_workers(const Resources& r, Workload workload, std::optional<std::uint64_t> memory_per_worker,
                         double memory_margin) {
    AutoWorkers a;
    a.explanation = r.sources;
    const double cpus = r.usable_cpus();
    a.explanation.push_back(fmt::format("usable CPUs: {:.2f} (the smallest of affinity, cpuset and quota; cgroup {})", cpus, r.cgroup));
    int n = 1;
    switch (workload) {
        case Workload::cpu: n = static_cast<int>(std::floor(cpus)); break;
        case Workload::mixed: n = static_cast<int>(std::floor(cpus * 1.5)); break;
        case Workload::io: n = static_cast<int>(std::floor(cpus * 2)); break;
        case Workload::gunicorn: n = static_cast<int>(std::floor(cpus * 2)) + 1; break;
    }
    n = std::max(1, n);
    const char* rule = workload == Workload::cpu     ? "1 x CPUs"
                       : workload == Workload::mixed ? "1.5 x CPUs"
                       : workload == Workload::io    ? "2 x CPUs"
                                                     : "2 x CPUs + 1";
    a.explanation.push_back(fmt::format("workload {}: {} = {} worker{}", to_string(workload), rule, n, n == 1 ? "" : "s"));
    if (r.memory_limit && memory_per_worker) {
        a.memory_cap = memory_budget(*r.memory_limit, memory_margin, *memory_per_worker);
        a.explanation.push_back(fmt::format("memory budget: {} MiB x (1 - {:.0f}% margin) / {} MiB per worker = {} worker{}",
                                            *r.memory_limit >> 20, memory_margin * 100, *memory_per_worker >> 20,
                                            *a.memory_cap, *a.memory_cap == 1 ? "" : "s"));
        if (*a.memory_cap < n) {
            a.explanation.push_back(fmt::format("capped by the memory budget: {} -> {}", n, *a.memory_cap));
            n = *a.memory_cap;
        }
    } else if (r.memory_limit) {
        a.explanation.push_back("memory budget: set memory_per_worker to cap the count by memory");
    }
    a.workers = n;
    a.explanation.push_back(fmt::format("workers: {}", n));
    return a;
}

AutoWorkers resolve_workers(Spec& spec, const std::string& root, int affinity) {
    if (!spec.workers_auto) {
        AutoWorkers fixed;
        fixed.workers = spec.workers;
        fixed.explanation.push_back(fmt::format("workers: {} (fixed in the spec)", spec.workers));
        return fixed;
    }
    Resources resources = detect_resources(root, affinity);
    if (spec.memory_limit) {
        // The spec's limit stands in for the cgroup's (a host without one, or a smaller share).
        resources.memory_limit = spec.memory_limit;
        resources.sources.push_back(fmt::format("memory: {} bytes (memory_limit in the spec)", *spec.memory_limit));
    }
    auto a = auto_workers(resources, spec.workload, spec.memory_per_worker, spec.memory_margin);
    spec.workers = std::min(a.workers, kMaxWorkers);
    return a;
}

}  // namespace workerd
