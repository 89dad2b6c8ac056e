// Container-aware sizing on fixture trees of real cgroup files (tests/data/cgroup/*).
#include "daemon/os/sizing.hpp"

#include <doctest/doctest.h>

#include "tests/support/test_support.hpp"

using namespace workerd;

namespace {
Resources fixture(const std::string& name) { return detect_resources(test::source_path("tests/data/cgroup/" + name), 8); }
int workers(const std::string& name, Workload w, std::optional<std::uint64_t> per_worker = std::nullopt) {
    return auto_workers(fixture(name), w, per_worker, 0.1).workers;
}
constexpr std::uint64_t MiB = 1 << 20;
}  // namespace

TEST_CASE("cgroup v2: quota, cpuset and memory of our cgroup") {
    const auto r = fixture("v2-limited");
    CHECK(r.cgroup == "v2");
    CHECK(r.cgroup_path == "/app.slice/web.service");
    CHECK(r.quota_cpus == doctest::Approx(1.5));
    CHECK(r.cpuset_cpus == 4);
    CHECK(r.memory_limit == std::optional<std::uint64_t>(1024 * MiB));
    CHECK(r.usable_cpus() == doctest::Approx(1.5));
    CHECK(workers("v2-limited", Workload::cpu) == 1);
    CHECK(workers("v2-limited", Workload::mixed) == 2);
    CHECK(workers("v2-limited", Workload::io) == 3);
    CHECK(workers("v2-limited", Workload::gunicorn) == 4);
}

TEST_CASE("cgroup v2 nested: the tightest ancestor wins (0.5 CPU, memory.high)") {
    const auto r = fixture("v2-nested");
    CHECK(r.quota_cpus == doctest::Approx(0.5));
    CHECK(r.memory_limit == std::optional<std::uint64_t>(512 * MiB));
    CHECK(workers("v2-nested", Workload::cpu) == 1);  // never below one
    CHECK(workers("v2-nested", Workload::gunicorn) == 2);
}

TEST_CASE("cgroup v2 without limits: the affinity decides") {
    const auto r = fixture("v2-unlimited");
    CHECK_FALSE(r.quota_cpus);
    CHECK_FALSE(r.memory_limit);
    CHECK(r.usable_cpus() == doctest::Approx(8));
    CHECK(workers("v2-unlimited", Workload::mixed) == 12);
}

TEST_CASE("cgroup v1: cfs quota, cpuset and memory.limit_in_bytes") {
    const auto r = fixture("v1-docker");
    CHECK(r.cgroup == "v1");
    CHECK(r.quota_cpus == doctest::Approx(2.5));
    CHECK(r.cpuset_cpus == 2);
    CHECK(r.memory_limit == std::optional<std::uint64_t>(2048 * MiB));
    CHECK(r.usable_cpus() == doctest::Approx(2));
    CHECK(workers("v1-docker", Workload::io) == 4);
}

TEST_CASE("cgroup v1: a quota below one CPU, and 'no limit' as a huge number") {
    const auto r = fixture("v1-small");
    CHECK(r.quota_cpus == doctest::Approx(0.3));
    CHECK_FALSE(r.memory_limit);
    CHECK(workers("v1-small", Workload::io) == 1);
}

TEST_CASE("no cgroup") {
    const auto r = fixture("none");
    CHECK(r.cgroup == "none");
    CHECK(r.usable_cpus() == doctest::Approx(8));
}

TEST_CASE("the memory budget caps the count, and the explanation shows every number") {
    // 1 GiB less 10% = 921.6 MiB; 300 MiB per worker: 3 fit, though 4 CPUs-worth were asked.
    const auto a = auto_workers(fixture("v2-limited"), Workload::gunicorn, 300 * MiB, 0.1);
    CHECK(a.workers == 3);
    CHECK(a.memory_cap == 3);
    std::string all;
    for (const auto& line : a.explanation) all += line + "\n";
    CAPTURE(all);
    CHECK(all.find("quota: 150000 100000 = 1.50 CPUs (/sys/fs/cgroup/app.slice/web.service/cpu.max)") != std::string::npos);
    CHECK(all.find("cpuset: 0-3 = 4 CPUs") != std::string::npos);
    CHECK(all.find("usable CPUs: 1.50") != std::string::npos);
    CHECK(all.find("workload gunicorn: 2 x CPUs + 1 = 4 workers") != std::string::npos);
    CHECK(all.find("memory budget: 1024 MiB x (1 - 10% margin) / 300 MiB per worker = 3 workers") != std::string::npos);
    CHECK(all.find("capped by the memory budget: 4 -> 3") != std::string::npos);
    CHECK(memory_budget(1024 * MiB, 0.0, 2048 * MiB) == 1);  // never below one
}
