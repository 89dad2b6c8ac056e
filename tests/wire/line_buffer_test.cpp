#include "daemon/wire/line_buffer.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using workerd::LineBuffer;

namespace {
struct Collect {
    std::vector<std::string> lines;
    std::vector<bool> truncated;
    LineBuffer::Sink sink() {
        return [this](std::string_view l, bool t) {
            lines.emplace_back(l);
            truncated.push_back(t);
        };
    }
};
}  // namespace

TEST_CASE("lines split across chunks are joined") {
    LineBuffer b;
    Collect c;
    b.feed("hel", c.sink());
    CHECK(c.lines.empty());
    b.feed("lo\nwor", c.sink());
    b.feed("ld\r\n\n", c.sink());
    CHECK(c.lines == std::vector<std::string>{"hello", "world", ""});
}

TEST_CASE("a last line without newline comes out at flush") {
    LineBuffer b;
    Collect c;
    b.feed("a\nb", c.sink());
    b.flush(c.sink());
    CHECK(c.lines == std::vector<std::string>{"a", "b"});
}

TEST_CASE("over-long lines are cut into bounded pieces") {
    LineBuffer b(4);
    Collect c;
    b.feed("abcdefghij\nxy\n", c.sink());
    CHECK(c.lines == std::vector<std::string>{"abcd", "efgh", "ij", "xy"});
    CHECK(c.truncated == std::vector<bool>{true, true, false, false});
    LineBuffer d(4);
    Collect e;
    d.feed("ab", e.sink());
    d.feed("cdef\n", e.sink());
    CHECK(e.lines == std::vector<std::string>{"abcd", "ef"});
}
