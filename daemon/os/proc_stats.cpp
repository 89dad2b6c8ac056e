#include "daemon/os/proc_stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "daemon/os/unique_fd.hpp"

namespace workerd {

ProcSample proc_sample(pid_t pid) {
    char path[32];
    *fmt::format_to_n(path, sizeof path - 1, "/proc/{}/stat", pid).out = '\0';
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return {};
    char text[1024];
    const ssize_t n = ::read(fd.get(), text, sizeof text - 1);
    if (n <= 0) return {};
    text[n] = '\0';
    // Fields follow the command name, which may contain spaces and ')': start after the last ')'.
    const char* p = std::strrchr(text, ')');
    if (p == nullptr) return {};
    ++p;
    ProcSample sample;
    long ticks = 0;
    // Field 3 (state) comes first; utime and stime are fields 14 and 15, rss (pages) 24.
    for (int field = 3; field <= 24 && *p != '\0'; ++field) {
        while (*p == ' ') ++p;
        char* end = nullptr;
        const long value = field == 3 ? 0 : std::strtol(p, &end, 10);
        if (field == 14 || field == 15) ticks += value;
        if (field == 24) {
            sample.cpu_ticks = ticks;
            sample.rss_bytes = value * ::sysconf(_SC_PAGESIZE);
        }
        while (*p != ' ' && *p != '\0') ++p;
    }
    return sample;
}

long proc_rss_bytes(pid_t pid) { return proc_sample(pid).rss_bytes; }

long proc_cpu_ticks(pid_t pid) { return proc_sample(pid).cpu_ticks; }

std::optional<ProcMemory> proc_memory(pid_t pid) {
    char path[48];
    *fmt::format_to_n(path, sizeof path - 1, "/proc/{}/smaps_rollup", pid).out = '\0';
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    char text[4096];
    const ssize_t n = ::read(fd.get(), text, sizeof text - 1);
    if (n <= 0) return std::nullopt;
    text[n] = '\0';
    // Lines "Name:   123 kB" after a header line naming the mapping.
    ProcMemory m;
    auto kib = [&](const char* name) -> long {
        const char* at = std::strstr(text, name);
        return at == nullptr ? 0 : std::strtol(at + std::strlen(name), nullptr, 10) * 1024;
    };
    m.rss_bytes = kib("\nRss:");
    m.pss_bytes = kib("\nPss:");
    m.private_bytes = kib("\nPrivate_Clean:") + kib("\nPrivate_Dirty:");
    return m;
}

}  // namespace workerd
