#include "daemon/output_pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace workerd {

std::shared_ptr<OutputPipe> OutputPipe::start(boost::asio::io_context& io, UniqueFd read_end,
                                              LineHandler on_line, std::size_t max_line) {
    auto pipe = std::make_shared<OutputPipe>(io, std::move(read_end), std::move(on_line), max_line);
    pipe->read_more();
    return pipe;
}

OutputPipe::OutputPipe(boost::asio::io_context& io, UniqueFd read_end, LineHandler on_line,
                       std::size_t max_line)
    : stream_(io, read_end.release()), on_line_(std::move(on_line)), lines_(max_line) {
    stream_.non_blocking(true);
}

void OutputPipe::read_more() {
    // The handler holds a reference to this object: it lives exactly as long as reads are
    // pending, and goes away at end of stream.
    stream_.async_read_some(boost::asio::buffer(buffer_),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        std::size_t n) {
                                auto sink = [&](std::string_view line, bool truncated) { self->on_line_(line, truncated); };
                                if (ec) {
                                    self->lines_.flush(sink);
                                    return;
                                }
                                self->lines_.feed(std::string_view(self->buffer_.data(), n), sink);
                                self->read_more();
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
