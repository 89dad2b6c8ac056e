// proc_sample: CPU time and memory of a process from one read of /proc/PID/stat.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "daemon/os/proc_stats.hpp"

using namespace workerd;

TEST_CASE("this process: its CPU ticks and the resident size statm reports") {
    volatile double x = 0;
    for (int i = 0; i < 20'000'000; ++i) x = x + i;  // some CPU time, so ticks can be > 0
    const ProcSample sample = proc_sample(::getpid());
    CHECK(sample.cpu_ticks >= 0);
    long size = 0, resident = 0;
    std::ifstream("/proc/self/statm") >> size >> resident;
    const long statm_bytes = resident * ::sysconf(_SC_PAGESIZE);
    CHECK(sample.rss_bytes > 0);
    // Read a moment apart: within a MiB of each other.
    CHECK(std::labs(sample.rss_bytes - statm_bytes) < (1L << 20));
    CHECK(proc_rss_bytes(::getpid()) > 0);
    CHECK(proc_cpu_ticks(::getpid()) >= 0);
}

TEST_CASE("a process that is gone: -1 ticks and 0 bytes") {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    const ProcSample sample = proc_sample(child);
    CHECK(sample.cpu_ticks == -1);
    CHECK(sample.rss_bytes == 0);
}
