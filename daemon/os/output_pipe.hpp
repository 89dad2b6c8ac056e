#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "daemon/wire/line_buffer.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// Reads one pipe from a worker (its stdout, stderr or protocol pipe) on the daemon's event loop, without
/// blocking, and hands out whole lines. Lives until the pipe reaches end of stream, which
/// may be after the worker was reaped (the last lines are not lost).
class OutputPipe : public std::enable_shared_from_this<OutputPipe> {
public:
    /// `truncated`: a piece of a line longer than the limit (see LineBuffer).
    using LineHandler = std::function<void(std::string_view line, bool truncated)>;

    /// Starts reading `read_end`; `on_line` is called for each line of at most `max_line`
    /// bytes (longer ones come in pieces).
    static std::shared_ptr<OutputPipe> start(boost::asio::io_context& io, UniqueFd read_end,
                                             LineHandler on_line, std::size_t max_line = 16 * 1024);

    OutputPipe(boost::asio::io_context& io, UniqueFd read_end, LineHandler on_line,
               std::size_t max_line);

    /// The read end while it is open, else -1.
    int fd() { return stream_.is_open() ? stream_.native_handle() : -1; }

    /// Reads what is waiting in the pipe now, without blocking, and hands out its lines. The
    /// daemon reads a worker's protocol pipe before judging it silent: the loop may have been
    /// late, not the worker. Safe beside the loop's own reading: this object reads the pipe
    /// itself once the loop says it is readable, so no data waits in a queued completion.
    void read_now();

private:
    enum class Read { drained, more, closed };
    /// Up to kReadsPerTurn reads: a flooding worker cannot hold the loop.
    Read read_available();
    /// After a read: wait for the pipe to be readable, come back after the loop's other work
    /// (more is waiting), or hand out the last line and close (end of stream).
    void continue_after(Read result);

    static constexpr int kReadsPerTurn = 8;
    boost::asio::posix::stream_descriptor stream_;
    LineHandler on_line_;
    LineBuffer lines_;
    bool scheduled_ = false;  ///< a wait or a posted read is pending; it reads next
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
