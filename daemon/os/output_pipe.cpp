#include "daemon/os/output_pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <boost/asio/post.hpp>

namespace workerd {

std::shared_ptr<OutputPipe> OutputPipe::start(boost::asio::io_context& io, UniqueFd read_end,
                                              LineHandler on_line, std::size_t max_line) {
    auto pipe = std::make_shared<OutputPipe>(io, std::move(read_end), std::move(on_line), max_line);
    // What the child wrote before the pipe was registered with the loop may have raised its
    // one edge already: read it now.
    pipe->read_now();
    return pipe;
}

OutputPipe::OutputPipe(boost::asio::io_context& io, UniqueFd read_end, LineHandler on_line,
                       std::size_t max_line)
    : stream_(io, read_end.release()), on_line_(std::move(on_line)), lines_(max_line) {
    stream_.non_blocking(true);
}

void OutputPipe::read_now() {
    if (stream_.is_open()) continue_after(read_available());
}

OutputPipe::Read OutputPipe::read_available() {
    auto sink = [this](std::string_view line, bool truncated) { on_line_(line, truncated); };
    for (int i = 0; i < kReadsPerTurn; ++i) {
        const ssize_t n = ::read(stream_.native_handle(), buffer_.data(), buffer_.size());
        if (n > 0) {
            lines_.feed(std::string_view(buffer_.data(), static_cast<std::size_t>(n)), sink);
            // A short read emptied the pipe: what comes later raises a new edge.
            if (static_cast<std::size_t>(n) < buffer_.size()) return Read::drained;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Read::drained;
        return Read::closed;  // end of stream, or an error: nothing more will come
    }
    return Read::more;
}

void OutputPipe::continue_after(Read result) {
    if (result == Read::closed) {
        lines_.flush([this](std::string_view line, bool truncated) { on_line_(line, truncated); });
        boost::system::error_code ignored;
        stream_.close(ignored);  // a pending wait ends with operation_aborted
        return;
    }
    // A pending wait or posted read reads next (the loop delivers every edge to the wait).
    if (scheduled_) return;
    scheduled_ = true;
    // The handlers hold a reference: this object lives while a read is due, and goes away
    // at end of stream.
    auto resume = [self = shared_from_this()] {
        self->scheduled_ = false;
        if (self->stream_.is_open()) self->continue_after(self->read_available());
    };
    if (result == Read::more) {
        boost::asio::post(stream_.get_executor(), resume);
        return;
    }
    stream_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [resume](const boost::system::error_code& ec) {
                           if (ec != boost::asio::error::operation_aborted) resume();
                       });
}

PipePair make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2 for a worker pipe");
    }
    return PipePair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace workerd
