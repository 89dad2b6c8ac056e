#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "daemon/line_buffer.hpp"
#include "daemon/unique_fd.hpp"

namespace workerd {

/// Reads one pipe from a worker (its stdout or stderr) on the daemon's event loop, without
/// blocking, and hands out whole lines. Lives until the pipe reaches end of stream, which
/// may be after the worker was reaped (the last lines are not lost).
class OutputPipe : public std::enable_shared_from_this<OutputPipe> {
public:
    using LineHandler = std::function<void(std::string_view line)>;

    /// Starts reading `read_end`; `on_line` is called for each line, `on_close` once at EOF.
    static std::shared_ptr<OutputPipe> start(boost::asio::io_context& io, UniqueFd read_end,
                                             LineHandler on_line);

    OutputPipe(boost::asio::io_context& io, UniqueFd read_end, LineHandler on_line);

private:
    void read_more();

    boost::asio::posix::stream_descriptor stream_;
    LineHandler on_line_;
    LineBuffer lines_;
    std::array<char, 8192> buffer_{};
};

/// A pipe for a worker's output: the read end stays in the daemon, the write end goes to the
/// child. Both close-on-exec. Throws std::system_error.
struct PipePair {
    UniqueFd read_end;
    UniqueFd write_end;
};
PipePair make_pipe();

}  // namespace workerd
