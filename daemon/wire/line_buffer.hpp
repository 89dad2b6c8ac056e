#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace workerd {

/// Splits a byte stream into lines. Bytes arrive in arbitrary chunks (a pipe read may end in
/// the middle of a line); complete lines are handed out without their '\n' (and without a
/// trailing '\r'). A line longer than `max_line` is handed out in pieces of `max_line` bytes
/// with `truncated` set, so one endless line cannot grow memory.
class LineBuffer {
public:
    using Sink = std::function<void(std::string_view line, bool truncated)>;

    explicit LineBuffer(std::size_t max_line = 16 * 1024) : max_line_(max_line) {}

    /// Appends `data` and calls `sink` for every line it completes.
    void feed(std::string_view data, const Sink& sink);

    /// Hands out what is left (a last line without '\n'), e.g. at end of stream.
    void flush(const Sink& sink);

private:
    std::size_t max_line_;
    std::string pending_;
};

}  // namespace workerd
