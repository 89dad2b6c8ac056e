#include "daemon/os/proc_stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

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

std::optional<std::uint64_t> tcp_passive_opens() {
    UniqueFd fd(::open("/proc/net/snmp", O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    char text[8192];
    std::size_t len = 0;
    for (ssize_t n; len < sizeof text - 1 && (n = ::read(fd.get(), text + len, sizeof text - 1 - len)) > 0;) {
        len += static_cast<std::size_t>(n);
    }
    text[len] = '\0';
    // Two lines: "Tcp: RtoAlgorithm ... PassiveOpens ..." and "Tcp: 1 ... 12345 ...".
    const char* names = std::strstr(text, "\nTcp: ");
    if (names == nullptr) return std::nullopt;
    const char* values = std::strstr(names + 1, "\nTcp: ");
    if (values == nullptr) return std::nullopt;
    int column = -1;
    int i = 0;
    for (const char* p = names + 6; *p != '\n' && *p != '\0'; ++i) {
        while (*p == ' ') ++p;
        const char* end = p;
        while (*end != ' ' && *end != '\n' && *end != '\0') ++end;
        if (std::string_view(p, static_cast<std::size_t>(end - p)) == "PassiveOpens") column = i;
        p = end;
    }
    if (column < 0) return std::nullopt;
    const char* p = values + 6;
    for (int k = 0; k < column; ++k) {
        while (*p == ' ') ++p;
        while (*p != ' ' && *p != '\n' && *p != '\0') ++p;
    }
    char* end = nullptr;
    const unsigned long long v = std::strtoull(p, &end, 10);
    if (end == p) return std::nullopt;
    return v;
}

}  // namespace workerd
