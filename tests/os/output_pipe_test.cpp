// OutputPipe: a worker's pipe read on the loop, line by line, and on demand (read_now).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "daemon/os/output_pipe.hpp"

using namespace workerd;

namespace {

struct Collected {
    std::vector<std::string> lines;
    OutputPipe::LineHandler handler() {
        return [this](std::string_view line, bool) { lines.emplace_back(line); };
    }
};

void write_all(int fd, const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        REQUIRE(n > 0);
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace

TEST_CASE("what the child wrote before the pipe was watched is read, and the last line at end of stream") {
    boost::asio::io_context io;
    PipePair p = make_pipe();
    write_all(p.write_end.get(), "READY=1\nWATCHDOG=1\nno newline");
    Collected got;
    auto pipe = OutputPipe::start(io, std::move(p.read_end), got.handler());
    CHECK(got.lines == std::vector<std::string>{"READY=1", "WATCHDOG=1"});
    p.write_end.reset();
    io.run();  // reads to end of stream, then nothing is pending
    CHECK(got.lines == std::vector<std::string>{"READY=1", "WATCHDOG=1", "no newline"});
    CHECK(pipe->fd() == -1);
}

TEST_CASE("read_now takes what is waiting without the loop running, in order with the loop's reads") {
    boost::asio::io_context io;
    PipePair p = make_pipe();
    Collected got;
    auto pipe = OutputPipe::start(io, std::move(p.read_end), got.handler());
    write_all(p.write_end.get(), "a\nb");
    pipe->read_now();  // the loop has not run: the data is read here
    CHECK(got.lines == std::vector<std::string>{"a"});
    write_all(p.write_end.get(), "c\nd\n");
    io.poll();  // the loop's own read continues the line read_now began
    CHECK(got.lines == std::vector<std::string>{"a", "bc", "d"});
    pipe->read_now();  // nothing waiting: no change
    CHECK(got.lines.size() == 3);
    write_all(p.write_end.get(), "e\n");
    io.poll();
    CHECK(got.lines.back() == "e");
    p.write_end.reset();
    io.run();
}

TEST_CASE("a flood is read in turns, and every line arrives") {
    boost::asio::io_context io;
    PipePair p = make_pipe();
    Collected got;
    auto pipe = OutputPipe::start(io, std::move(p.read_end), got.handler());
    // More than one turn's worth (8 reads of 8 KiB) is waiting in the pipe at once.
    REQUIRE(::fcntl(p.write_end.get(), F_SETPIPE_SZ, 256 * 1024) >= 256 * 1024);
    std::string line(99, 'x');
    line += '\n';
    std::string flood;
    for (int i = 0; i < 2000; ++i) flood += line;  // 200 KB
    write_all(p.write_end.get(), flood);
    p.write_end.reset();
    std::size_t handlers = io.run();
    CHECK(got.lines.size() == 2000);
    CHECK(handlers >= 3);  // 200 KB in turns of at most 64 KiB
}
