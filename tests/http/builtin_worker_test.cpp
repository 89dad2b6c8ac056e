// Process tests: a real bundled worker (run_builtin_worker in a forked child) on a loopback
// socket, spoken to over real connections.
#include "daemon/http/builtin_worker.hpp"

#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <future>
#include <thread>

#include "daemon/os/listener.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd;
using namespace workerd::test;
using Clock = std::chrono::steady_clock;

namespace {

// A bundled worker in a child process, SIGKILLed and reaped on destruction.
struct Worker {
    TempDir dir;
    std::optional<Listener> listener;
    pid_t pid = -1;
    int port = 0;

    explicit Worker(http::BuiltinWorkerOptions options = {}) {
        dir.write("site/index.html", "<h1>hi</h1>\n");
        dir.write("site/data.txt", "0123456789abcdefghij");
        dir.write("outside.txt", "secret");
        ListenAddress a;
        a.host = "127.0.0.1";
        a.name = "listen0";
        listener.emplace(open_listener(a, 64));
        port = listener->address().port;
        options.listen_fds = {listener->fd()};
        if (options.root.empty()) options.root = dir.path() + "/site";
        options.slot = 4;
        options.generation = 7;
        const pid_t parent = ::getpid();
        pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(1);
            ::_exit(http::run_builtin_worker(options));
        }
        REQUIRE(eventually([&] { return http_get(port, "/healthz", 1s).has_value(); }, 5s));
    }
    ~Worker() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }
    // The connections the worker holds: its sockets besides the listener.
    int connections() const {
        const std::string listening = open_fds(::getpid()).at(listener->fd());
        int n = 0;
        for (const auto& [fd, link] : open_fds(pid)) {
            if (link.starts_with("socket:") && link != listening) ++n;
        }
        return n;
    }
    std::optional<int> wait_exit(Ms timeout) {
        int status = 0;
        if (eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout)) {
            pid = -1;
            return status;
        }
        return std::nullopt;
    }
};

http::BuiltinWorkerOptions demo_options() {
    http::BuiltinWorkerOptions o;
    o.demo = true;
    return o;
}

}  // namespace

TEST_CASE("flags and LISTEN_FDS") {
    ::setenv("LISTEN_FDS", "2", 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("WORKERD_SLOT", "3", 1);
    auto o = http::parse_builtin_worker_args({"--root", "/srv", "--demo", "--max-connections", "7",
                                              "--keepalive-timeout", "1500", "--max-body-size", "10"});
    CHECK(o.listen_fds == std::vector<int>{3, 4});
    CHECK(o.root == "/srv");
    CHECK(o.demo);
    CHECK(o.max_connections == 7);
    CHECK(o.keepalive_timeout == std::chrono::milliseconds(1500));
    CHECK(o.max_body_size == 10);
    CHECK(o.slot == 3);
    CHECK(::getenv("LISTEN_FDS") == nullptr);  // consumed, as sd_listen_fds(1) does
    ::setenv("LISTEN_FDS", "1", 1);
    ::setenv("LISTEN_PID", "1", 1);  // someone else's: ignored
    CHECK_THROWS_AS(http::parse_builtin_worker_args({}), std::invalid_argument);
    CHECK_THROWS_AS(http::parse_builtin_worker_args({"--listen-fd", "3", "--bogus"}), std::invalid_argument);
    CHECK_THROWS_AS(http::parse_builtin_worker_args({"--listen-fd", "3", "--max-connections", "0"}),
                    std::invalid_argument);
    CHECK(http::parse_builtin_worker_args({"--listen-fd", "3"}).precompressed);
    CHECK_FALSE(http::parse_builtin_worker_args({"--listen-fd", "3", "--no-precompressed"}).precompressed);
}

TEST_CASE("keep-alive, HEAD, headers") {
    Worker w;
    HttpConnection c(w.port);
    REQUIRE(c.request("/data.txt"));
    auto first = c.read_response();
    REQUIRE(first);
    CHECK(first->status == 200);
    CHECK(first->body == "0123456789abcdefghij");
    CHECK(first->headers["content-length"] == "20");
    CHECK(first->headers["server"] == "workerd");
    CHECK(first->headers["date"].size() == 29);
    CHECK(first->headers["content-type"] == "text/plain; charset=utf-8");
    REQUIRE(c.request("/data.txt", "HEAD"));
    auto head = c.read_response(5s, true);
    REQUIRE(head);
    CHECK(head->status == 200);
    CHECK(head->headers["content-length"] == "20");
    CHECK(head->body.empty());
    REQUIRE(c.request("/healthz"));  // same connection, third request
    auto health = c.read_response();
    REQUIRE(health);
    CHECK(health->body == "ok\n");

    // HTTP/1.0 without keep-alive: answered, then closed.
    HttpConnection old(w.port);
    REQUIRE(old.send("GET /healthz HTTP/1.0\r\n\r\n"));
    auto r = old.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(old.wait_closed(2s));
}

TEST_CASE("statuses: 404, 405, 301, 400 for traversal") {
    Worker w;
    CHECK(http_get(w.port, "/nope")->status == 404);
    auto post = http_request(w.port, "/data.txt", "POST");
    REQUIRE(post);
    CHECK(post->status == 405);
    CHECK(post->headers["allow"] == "GET, HEAD");
    CHECK(http_get(w.port, "/")->body == "<h1>hi</h1>\n");
    for (const char* bad : {"/../outside.txt", "/%2e%2e/outside.txt", "/..%2foutside.txt"}) {
        CAPTURE(bad);
        auto r = http_get(w.port, bad);
        REQUIRE(r);
        CHECK(r->status == 400);
        CHECK(r->body.find("secret") == std::string::npos);
    }
    CHECK(http_get(w.port, "/demo/whoami")->status == 404);  // demo off
}

TEST_CASE("conditional requests and ranges") {
    Worker w;
    auto full = http_get(w.port, "/data.txt");
    REQUIRE(full);
    const std::string etag = full->headers["etag"];
    const std::string modified = full->headers["last-modified"];
    REQUIRE(!etag.empty());
    HttpConnection c(w.port);
    REQUIRE(c.request("/data.txt", "GET", "If-None-Match: " + etag + "\r\n"));
    auto not_modified = c.read_response();
    REQUIRE(not_modified);
    CHECK(not_modified->status == 304);
    CHECK(not_modified->body.empty());
    REQUIRE(c.request("/data.txt", "GET", "If-Modified-Since: " + modified + "\r\n"));
    CHECK(c.read_response()->status == 304);
    REQUIRE(c.request("/data.txt", "GET", "If-None-Match: \"stale\"\r\n"));
    CHECK(c.read_response()->status == 200);
    REQUIRE(c.request("/data.txt", "GET", "Range: bytes=2-5\r\n"));
    auto partial = c.read_response();
    REQUIRE(partial);
    CHECK(partial->status == 206);
    CHECK(partial->body == "2345");
    CHECK(partial->headers["content-range"] == "bytes 2-5/20");
    REQUIRE(c.request("/data.txt", "GET", "Range: bytes=-3\r\n"));
    CHECK(c.read_response()->body == "hij");
    REQUIRE(c.request("/data.txt", "GET", "Range: bytes=50-\r\n"));
    auto unsatisfiable = c.read_response();
    REQUIRE(unsatisfiable);
    CHECK(unsatisfiable->status == 416);
    CHECK(unsatisfiable->headers["content-range"] == "bytes */20");

    // The whole file's head is made once a second and reused: the answers around a range, a
    // HEAD, an HTTP/1.0 request and a Connection: close are each their own.
    REQUIRE(c.request("/data.txt"));
    auto plain = c.read_response();
    REQUIRE(plain);
    CHECK(plain->status == 200);
    CHECK(plain->body == "0123456789abcdefghij");
    CHECK(plain->headers.count("content-range") == 0);
    CHECK(plain->headers["etag"] == etag);
    CHECK(plain->headers.count("connection") == 0);
    REQUIRE(c.request("/data.txt", "GET", "Range: bytes=0-0\r\n"));
    CHECK(c.read_response()->headers["content-range"] == "bytes 0-0/20");
    REQUIRE(c.request("/data.txt"));
    auto again = c.read_response();
    REQUIRE(again);
    CHECK(again->status == 200);
    CHECK(again->headers.count("content-range") == 0);
    CHECK(again->headers["content-length"] == "20");
    REQUIRE(c.request("/data.txt", "HEAD"));
    auto head = c.read_response(5s, true);
    REQUIRE(head);
    CHECK(head->headers["content-length"] == "20");
    CHECK(head->body.empty());
    REQUIRE(c.send("GET /data.txt HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"));
    auto old_client = c.read_response();
    REQUIRE(old_client);
    CHECK(old_client->headers["connection"] == "keep-alive");
    CHECK(old_client->body == "0123456789abcdefghij");
    REQUIRE(c.request("/data.txt", "GET", "Connection: close\r\n"));
    auto last = c.read_response();
    REQUIRE(last);
    CHECK(last->headers["connection"] == "close");
    CHECK(last->body == "0123456789abcdefghij");
    CHECK(c.wait_closed(2s));
}

TEST_CASE("limits: 431 for a large head, 413 for a large body, 503 past max_connections") {
    http::BuiltinWorkerOptions o;
    o.max_header_size = 2048;
    o.max_body_size = 100;
    o.max_connections = 2;
    Worker w(o);
    {
        HttpConnection c(w.port);
        REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 431);
        CHECK(c.wait_closed(2s));
    }
    {
        HttpConnection c(w.port);
        REQUIRE(c.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'b')));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 413);
        // Closed by the worker before the next two connect: one it still held would count
        // against max_connections and turn `a` away (seen on a loaded machine).
        CHECK(c.wait_closed(2s));
    }
    HttpConnection a(w.port), b(w.port);
    REQUIRE(a.request("/healthz"));
    auto first = a.read_response();
    REQUIRE(first);
    CHECK(first->status == 200);
    REQUIRE(b.request("/healthz"));
    auto second = b.read_response();
    REQUIRE(second);
    CHECK(second->status == 200);
    HttpConnection third(w.port);
    REQUIRE(third.request("/healthz"));
    auto busy = third.read_response();
    REQUIRE(busy);
    CHECK(busy->status == 503);
    CHECK(third.wait_closed(2s));
}

TEST_CASE("demo endpoints: whoami, io does not block the loop, block does") {
    Worker w(demo_options());
    auto who = http_get(w.port, "/demo/whoami");
    REQUIRE(who);
    CHECK(who->body == "{\"pid\":" + std::to_string(w.pid) + ",\"slot\":4,\"generation\":7}\n");
    CHECK(http_get(w.port, "/demo/io?ms=abc")->status == 400);

    // Two /demo/io waits overlap; two /demo/block calls queue behind each other.
    auto pair_time = [&](const std::string& path) {
        const auto start = Clock::now();
        auto a = std::async(std::launch::async, [&] { return http_get(w.port, path, 10s); });
        auto b = std::async(std::launch::async, [&] { return http_get(w.port, path, 10s); });
        auto ra = a.get();
        auto rb = b.get();
        CHECK((ra && ra->status == 200));
        CHECK((rb && rb->status == 200));
        return Clock::now() - start;
    };
    const auto io = pair_time("/demo/io?ms=400");
    const auto block = pair_time("/demo/block?ms=400");
    CHECK(io < std::chrono::milliseconds(780));    // concurrent: about 400 ms
    CHECK(block >= std::chrono::milliseconds(790));  // serialised: at least 800 ms
    auto cpu = http_get(w.port, "/demo/cpu?ms=50");
    REQUIRE(cpu);
    CHECK(cpu->body.find("\"burned_ms\":50") != std::string::npos);
}

TEST_CASE("SIGTERM drains: in-flight requests finish, keep-alive connections close without a race") {
    Worker w(demo_options());
    auto in_flight = std::async(std::launch::async, [&] { return http_get(w.port, "/demo/io?ms=500", 10s); });
    HttpConnection idle(w.port);
    REQUIRE(idle.request("/healthz"));
    REQUIRE(idle.read_response());
    HttpConnection reuse(w.port);
    REQUIRE(reuse.request("/healthz"));
    REQUIRE(reuse.read_response());
    // All three connections accepted by the worker (sockets besides the listener), so the
    // in-flight request is really in flight when TERM arrives.
    REQUIRE(eventually([&] { return w.connections() >= 3; }, 2s));

    const std::string listening = open_fds(::getpid()).at(w.listener->fd());
    auto holds_listener = [&] {
        for (const auto& [fd, link] : open_fds(w.pid)) {
            if (link == listening) return true;
        }
        return false;
    };
    REQUIRE(holds_listener());
    const auto term_at = Clock::now();
    ::kill(w.pid, SIGTERM);
    // Draining starts by closing the worker's copy of the listening socket.
    REQUIRE(eventually([&] { return !holds_listener(); }, 2s));
    // A request sent on a kept-alive connection just after TERM is answered, with close.
    REQUIRE(reuse.request("/healthz"));
    auto late = reuse.read_response();
    REQUIRE(late);
    CHECK(late->status == 200);
    CHECK(late->headers["connection"] == "close");
    CHECK(reuse.wait_closed(2s));

    auto done = in_flight.get();
    REQUIRE(done);
    CHECK(done->status == 200);

    // The idle connection stays open for the idle window, then the worker closes it.
    CHECK(idle.wait_closed(5s));
    CHECK(Clock::now() - term_at >= std::chrono::milliseconds(900));
    const auto status = w.wait_exit(5s);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    // New connections are no longer accepted by this worker (the queue is the daemon's).
}

TEST_CASE("a drain takes in the queued connections: one answered at once does not end it while another's request is on its way") {
    Worker w(demo_options());
    // The loop is held by /demo/block (HTTP/1.0: its connection closes after the answer) while
    // TERM arrives and two connections queue: one with its request, one without yet. When the
    // loop wakes, the drain takes both in; the first is answered and closed at once, and the
    // worker must still wait for the second (this once ended the drain, and reset it).
    REQUIRE(eventually([&] { return w.connections() == 0; }, 2s));  // the start's check is closed
    HttpConnection blocker(w.port);
    // Accepted first, so the loop blocks in the blocker's read, not in an accept burst that
    // would then take the other two in before TERM is seen.
    REQUIRE(eventually([&] { return w.connections() == 1; }, 2s));
    REQUIRE(blocker.send("GET /demo/block?ms=400 HTTP/1.0\r\nHost: t\r\n\r\n"));
    // The loop has read it and blocks: its thread sleeps inside /demo/block.
    REQUIRE(eventually([&] { return in_sleep_syscall(w.pid); }, 2s));
    ::kill(w.pid, SIGTERM);
    HttpConnection ready(w.port);
    REQUIRE(ready.request("/healthz"));
    HttpConnection later(w.port);
    REQUIRE(later.connected());
    auto blocked = blocker.read_response(5s);
    REQUIRE(blocked);
    CHECK(blocked->status == 200);
    auto first = ready.read_response(5s);
    REQUIRE(first);
    CHECK(first->status == 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // within the drain's idle window
    REQUIRE(later.request("/healthz"));
    auto second = later.read_response(5s);
    REQUIRE(second);
    CHECK(second->status == 200);
    CHECK(second->headers["connection"] == "close");
    const auto status = w.wait_exit(5s);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("a request head sent a byte at a time is cut at keepalive_timeout, not kept open by each byte") {
    http::BuiltinWorkerOptions o;
    o.keepalive_timeout = std::chrono::milliseconds(1000);
    Worker w(o);
    HttpConnection c(w.port);
    const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    const auto start = Clock::now();
    bool closed = false;
    for (char ch : head) {
        if (!c.send(std::string(1, ch))) {
            closed = true;
            break;
        }
        if (c.wait_closed(std::chrono::milliseconds(100))) {
            closed = true;
            break;
        }
    }
    CHECK(closed);
    // The idle sweep runs about once a second: closed within the timeout plus a sweep or two.
    CHECK(Clock::now() - start < std::chrono::milliseconds(4000));
}

TEST_CASE("static files: nothing outside the root, fresh within the validity after a change or a delete (a large file at once), large files whole") {
    Worker w;
    const std::string site = w.dir.path() + "/site";
    // Out of the root through a symlink (absolute, relative, or a directory), or through "..":
    // refused, whatever the cache holds.
    std::filesystem::create_symlink(w.dir.path() + "/outside.txt", site + "/abs-leak.txt");
    std::filesystem::create_symlink("../outside.txt", site + "/rel-leak.txt");
    std::filesystem::create_symlink(w.dir.path(), site + "/up");
    std::filesystem::create_symlink(site + "/data.txt", site + "/alias.txt");  // inside: served
    for (int round = 0; round < 2; ++round) {  // the second from the cache
        for (const char* path : {"/abs-leak.txt", "/rel-leak.txt", "/up/outside.txt"}) {
            CAPTURE(path);
            auto r = http_get(w.port, path);
            REQUIRE(r);
            CHECK(r->status == 404);
            CHECK(r->body.find("secret") == std::string::npos);
        }
        CHECK(http_get(w.port, "/../outside.txt")->status == 400);
        CHECK(http_get(w.port, "/up/../../outside.txt")->status == 400);
        CHECK(http_get(w.port, "/alias.txt")->body == "0123456789abcdefghij");
    }

    // Changed in place: a small file's bytes are served as they were (whole: the old bytes with
    // their own length and ETag) for at most the cache's validity, then the new ones.
    HttpConnection c(w.port);
    REQUIRE(c.request("/data.txt"));
    auto before = c.read_response();
    REQUIRE(before);
    const auto changed_at = Clock::now();
    w.dir.write("site/data.txt", "changed, and longer than before");
    std::optional<HttpResponse> after;
    while (Clock::now() - changed_at < std::chrono::seconds(3)) {
        REQUIRE(c.request("/data.txt"));
        after = c.read_response();
        REQUIRE(after);
        if (after->body != before->body) break;
        CHECK(after->headers["etag"] == before->headers["etag"]);  // the old snapshot, whole
        CHECK(after->headers["content-length"] == before->headers["content-length"]);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(Clock::now() - changed_at < std::chrono::milliseconds(1500));  // 1 s validity, plus slack
    CHECK(after->body == "changed, and longer than before");
    CHECK(after->headers["content-length"] == "31");
    CHECK(after->headers["etag"] != before->headers["etag"]);
    // Deleted: 404 within the validity.
    std::filesystem::remove(site + "/data.txt");
    const auto deleted_at = Clock::now();
    CHECK(eventually([&] { return c.request("/data.txt") && c.read_response()->status == 404; }, 3s));
    CHECK(Clock::now() - deleted_at < std::chrono::milliseconds(1500));

    // A file larger than what is kept in memory goes out with sendfile: whole, ranged, HEAD.
    std::string big(3 * 1024 * 1024 + 17, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    w.dir.write("site/big.bin", big);
    REQUIRE(c.request("/big.bin"));
    auto whole = c.read_response(10s);
    REQUIRE(whole);
    CHECK(whole->status == 200);
    CHECK(whole->headers["content-length"] == std::to_string(big.size()));
    CHECK(whole->body == big);
    // More than a turn sends (2 MiB): it goes out corked over several sendfile calls, and the
    // cork comes off with the last byte, or that byte's packet would wait for the kernel's
    // 200 ms cork timer: five answers in a row take far less than that each.
    const auto five_at = Clock::now();
    for (int i = 0; i < 5; ++i) {
        REQUIRE(c.request("/big.bin"));
        auto again = c.read_response(10s);
        REQUIRE(again);
        CHECK(again->body.size() == big.size());
    }
    const auto five = Clock::now() - five_at;
    MESSAGE("five 3 MiB answers in ", std::chrono::duration_cast<std::chrono::milliseconds>(five).count(), " ms");
    CHECK(five < std::chrono::milliseconds(900));
    REQUIRE(c.request("/big.bin", "GET", "Range: bytes=1000000-2999999\r\n"));
    auto part = c.read_response(10s);
    REQUIRE(part);
    CHECK(part->status == 206);
    CHECK(part->headers["content-range"] == "bytes 1000000-2999999/" + std::to_string(big.size()));
    CHECK(part->body == big.substr(1000000, 2000000));
    REQUIRE(c.request("/big.bin", "HEAD"));
    auto head = c.read_response(5s, true);
    REQUIRE(head);
    CHECK(head->headers["content-length"] == std::to_string(big.size()));
    // A large file is sent from its open descriptor, so each request checks it: changed in
    // place, the very next answer has the new length and ETag (never old headers on new bytes).
    const std::string smaller(1024 * 1024 + 5, 'z');
    w.dir.write("site/big.bin", smaller);
    REQUIRE(c.request("/big.bin"));
    auto rewritten = c.read_response(10s);
    REQUIRE(rewritten);
    CHECK(rewritten->headers["content-length"] == std::to_string(smaller.size()));
    CHECK(rewritten->headers["etag"] != whole->headers["etag"]);
    CHECK(rewritten->body == smaller);
    REQUIRE(c.request("/healthz"));  // the connection is still in step
    CHECK(c.read_response()->body == "ok\n");
}

TEST_CASE("precompressed siblings: file.gz / file.br only to a client that accepts them, with Vary") {
    Worker w;
    w.dir.write("site/app.js", "console.log('plain');\n");
    w.dir.write("site/app.js.gz", "GZIP-BYTES");
    w.dir.write("site/app.js.br", "BROTLI-BYTES");
    w.dir.write("site/style.css", "body {}\n");
    w.dir.write("site/style.css.gz", "GZ-CSS");
    HttpConnection c(w.port);
    auto get = [&](const std::string& path, const std::string& headers) {
        REQUIRE(c.request(path, "GET", headers));
        auto r = c.read_response();
        REQUIRE(r);
        return *r;
    };
    auto plain = get("/app.js", "");
    CHECK(plain.body == "console.log('plain');\n");
    CHECK(plain.headers.count("content-encoding") == 0);
    CHECK(plain.headers["vary"] == "Accept-Encoding");
    CHECK(plain.headers["content-type"] == "text/javascript; charset=utf-8");

    auto gz = get("/app.js", "Accept-Encoding: gzip, deflate\r\n");
    CHECK(gz.body == "GZIP-BYTES");
    CHECK(gz.headers["content-encoding"] == "gzip");
    CHECK(gz.headers["vary"] == "Accept-Encoding");
    CHECK(gz.headers["content-type"] == "text/javascript; charset=utf-8");
    CHECK(gz.headers["content-length"] == "10");
    CHECK(gz.headers["etag"] != plain.headers["etag"]);  // another representation

    auto br = get("/app.js", "Accept-Encoding: gzip, deflate, br\r\n");
    CHECK(br.body == "BROTLI-BYTES");
    CHECK(br.headers["content-encoding"] == "br");
    CHECK(get("/app.js", "Accept-Encoding: gzip, br;q=0\r\n").body == "GZIP-BYTES");
    CHECK(get("/app.js", "Accept-Encoding: gzip;q=0, br;q=0\r\n").body == "console.log('plain');\n");
    CHECK(get("/app.js", "Accept-Encoding: identity\r\n").body == "console.log('plain');\n");
    CHECK(get("/style.css", "Accept-Encoding: br\r\n").body == "body {}\n");
    CHECK(get("/style.css", "Accept-Encoding: br, gzip\r\n").body == "GZ-CSS");
    // The encoded one answers conditional requests with its own validator.
    auto again = get("/app.js", "Accept-Encoding: gzip\r\nIf-None-Match: " + gz.headers["etag"] + "\r\n");
    CHECK(again.status == 304);
    CHECK(again.headers["content-encoding"] == "gzip");
    // A file with no sibling says nothing of encodings.
    auto data = get("/data.txt", "Accept-Encoding: gzip\r\n");
    CHECK(data.headers.count("vary") == 0);
    CHECK(data.headers.count("content-encoding") == 0);

    // Off: siblings are plain files, served only when asked for by name.
    http::BuiltinWorkerOptions off;
    off.precompressed = false;
    Worker w2(off);
    w2.dir.write("site/app.js", "plain");
    w2.dir.write("site/app.js.gz", "GZIP-BYTES");
    auto r = http_request(w2.port, "/app.js");
    REQUIRE(r);
    CHECK(r->body == "plain");
    HttpConnection c2(w2.port);
    REQUIRE(c2.request("/app.js", "GET", "Accept-Encoding: gzip\r\n"));
    auto r2 = c2.read_response();
    REQUIRE(r2);
    CHECK(r2->body == "plain");
    CHECK(r2->headers.count("vary") == 0);
}

TEST_CASE("pipelined requests are answered in order, on one connection") {
    Worker w;
    HttpConnection c(w.port);
    std::string burst;
    for (int i = 0; i < 50; ++i) {
        burst += i % 2 == 0 ? "GET /data.txt HTTP/1.1\r\nHost: x\r\n\r\n" : "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    }
    REQUIRE(c.send(burst));
    for (int i = 0; i < 50; ++i) {
        CAPTURE(i);
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->body == (i % 2 == 0 ? "0123456789abcdefghij" : "ok\n"));
    }
}
