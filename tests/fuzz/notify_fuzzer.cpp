// The worker protocol as the daemon reads it: bytes from a worker's pipe, in chunks of any
// size, split into lines (LineBuffer) and parsed (parse_notify_line). Nothing may crash, and a
// STATS message must survive the trip through its own format.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "daemon/wire/line_buffer.hpp"
#include "daemon/wire/notify.hpp"

namespace {

void check(std::string_view line) {
    const auto m = workerd::parse_notify_line(line);
    if (!m || m->kind != workerd::NotifyMessage::Kind::stats) return;
    const auto again = workerd::parse_notify_line("STATS=" + m->stats.format());
    if (!again || again->kind != workerd::NotifyMessage::Kind::stats) std::abort();
    const auto& a = m->stats;
    const auto& b = again->stats;
    if (a.served != b.served || a.inflight != b.inflight || a.oldest_ms != b.oldest_ms || a.sum_us != b.sum_us ||
        a.buckets != b.buckets || a.queue_sum_us != b.queue_sum_us || a.queue != b.queue || a.shed != b.shed) {
        std::abort();
    }
    for (double q : {0.0, 0.5, 0.99, 1.0}) {
        if (const auto p = a.percentile_ms(q); p && !(*p >= 0)) std::abort();
        if (const auto p = a.queue_percentile_ms(q); p && !(*p >= 0)) std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The first byte picks the chunk size, as a pipe read could end anywhere.
    const std::size_t chunk = 1 + data[0] % 64;
    std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    workerd::LineBuffer buffer(workerd::kMaxNotifyLine);
    const auto sink = [](std::string_view line, bool truncated) {
        if (line.size() > workerd::kMaxNotifyLine) std::abort();
        if (!truncated) check(line);
    };
    while (!rest.empty()) {
        const auto n = std::min(chunk, rest.size());
        buffer.feed(rest.substr(0, n), sink);
        rest.remove_prefix(n);
    }
    buffer.flush(sink);
    return 0;
}
