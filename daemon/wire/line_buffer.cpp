#include "daemon/wire/line_buffer.hpp"

namespace workerd {
namespace {

std::string_view trim_cr(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
}

}  // namespace

void LineBuffer::feed(std::string_view data, const Sink& sink) {
    while (!data.empty()) {
        const std::size_t nl = data.find('\n');
        const std::size_t take = nl == std::string_view::npos ? data.size() : nl;
        if (pending_.empty() && nl != std::string_view::npos && take <= max_line_) {
            sink(trim_cr(data.substr(0, take)), false);  // common case: no copy
            data.remove_prefix(take + 1);
            continue;
        }
        const std::size_t room = max_line_ - pending_.size();
        if (take > room) {
            pending_.append(data.substr(0, room));
            sink(pending_, true);
            pending_.clear();
            data.remove_prefix(room);
            continue;
        }
        pending_.append(data.substr(0, take));
        if (nl == std::string_view::npos) return;
        sink(trim_cr(pending_), false);
        pending_.clear();
        data.remove_prefix(take + 1);
    }
}

void LineBuffer::flush(const Sink& sink) {
    if (!pending_.empty()) sink(trim_cr(pending_), false);
    pending_.clear();
}

}  // namespace workerd
