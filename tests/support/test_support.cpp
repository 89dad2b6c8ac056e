#include "tests/support/test_support.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "daemon/os/spawn.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd::test {

namespace fs = std::filesystem;

std::string bin_path(const std::string& name) { return std::string(WORKERD_BIN_DIR) + "/" + name; }
std::string source_path(const std::string& relative) {
    return std::string(WORKERD_SOURCE_DIR) + "/" + relative;
}

bool eventually(const std::function<bool()>& condition, Ms timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
}

TempDir::TempDir() {
    std::string pattern = (fs::temp_directory_path() / "workerd-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
    const fs::path p = fs::path(path_) / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    return p.string();
}

int free_tcp_port() {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        throw std::runtime_error("bind for a free port failed");
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& log_path,
                           const std::vector<std::string>& env, const std::vector<int>& fds) {
    std::vector<std::string> env_storage;
    for (char** e = ::environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    env_storage.insert(env_storage.end(), env.begin(), env.end());
    const std::vector<char*> envp = exec_array(env_storage);
    std::vector<std::string> argv_storage = argv;
    const std::vector<char*> args = exec_array(argv_storage);
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::runtime_error("cannot open " + log_path);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
        // Above the target range first, so that no dup2 overwrites a source still needed.
        int moved[16];
        for (std::size_t i = 0; i < fds.size() && i < 16; ++i) moved[i] = ::fcntl(fds[i], F_DUPFD, 100);
        for (std::size_t i = 0; i < fds.size() && i < 16; ++i) ::dup2(moved[i], 3 + static_cast<int>(i));
        ::execve(args[0], args.data(), envp.data());
        ::_exit(127);
    }
    ::close(log_fd);
}

ChildProcess::~ChildProcess() {
    if (!status_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
    }
}

void ChildProcess::signal(int sig) const {
    if (!status_) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait_exit(Ms timeout) {
    eventually(
        [&] {
            if (status_) return true;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
            return status_.has_value();
        },
        timeout);
    return status_;
}

std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    for (const auto& entry : fs::directory_iterator("/proc")) {
        const std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        const std::string stat = read_file("/proc/" + name + "/stat");
        // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
        const auto close = stat.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(stat.substr(close + 1));
        std::string state;
        pid_t ppid = 0;
        rest >> state >> ppid;
        if (ppid == parent && state != "Z") out.push_back(std::stoi(name));
    }
    return out;
}

namespace {
bool is_guardian(pid_t pid) {
    const auto argv = command_line_of(pid);
    return argv.size() == 2 && argv[1] == "guard";
}

// Preload's zygote (workerd_uvicorn names it so): a child of the daemon, not a worker.
bool is_zygote(pid_t pid) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    return name == "workerd-zygote";
}
}  // namespace

std::vector<pid_t> workers_of(pid_t daemon) {
    auto pids = children_of(daemon);
    std::erase_if(pids, [](pid_t pid) { return is_guardian(pid) || is_zygote(pid); });
    return pids;
}

std::vector<pid_t> descendants_of(pid_t root) {
    std::vector<pid_t> out;
    std::vector<pid_t> frontier{root};
    while (!frontier.empty()) {
        const pid_t p = frontier.back();
        frontier.pop_back();
        for (pid_t c : children_of(p)) {
            out.push_back(c);
            frontier.push_back(c);
        }
    }
    return out;
}

std::vector<std::string> command_line_of(pid_t pid) {
    const std::string raw = read_file("/proc/" + std::to_string(pid) + "/cmdline");
    std::vector<std::string> argv;
    std::size_t start = 0;
    while (start < raw.size()) {
        const std::size_t end = raw.find('\0', start);
        argv.push_back(raw.substr(start, end == std::string::npos ? std::string::npos : end - start));
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return argv;
}

bool process_alive(pid_t pid) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = stat.rfind(')');
    return close != std::string::npos && stat.size() > close + 2 && stat[close + 2] != 'Z';
}

bool all_gone(const std::vector<pid_t>& pids) {
    for (pid_t p : pids) {
        if (process_alive(p)) return false;
    }
    return true;
}

bool settled_in(pid_t pid, const std::string& comm) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto open = stat.find('(');
    const auto close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || stat.size() < close + 3) return false;
    return stat.substr(open + 1, close - open - 1) == comm && stat[close + 2] == 'S';
}

std::map<int, std::string> open_fds(pid_t pid) {
    std::map<int, std::string> out;
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        std::error_code link_ec;
        out[std::stoi(entry.path().filename())] = fs::read_symlink(entry.path(), link_ec).string();
    }
    return out;
}

bool in_sleep_syscall(pid_t pid) {
    const std::string call = read_file("/proc/" + std::to_string(pid) + "/syscall");
    return call.starts_with(std::to_string(SYS_clock_nanosleep) + " ") ||
           call.starts_with(std::to_string(SYS_nanosleep) + " ");
}

std::map<std::string, std::string> environment_of(pid_t pid) {
    std::map<std::string, std::string> out;
    const std::string raw = read_file("/proc/" + std::to_string(pid) + "/environ");
    std::size_t start = 0;
    while (start < raw.size()) {
        const std::size_t end = raw.find('\0', start);
        const std::string entry = raw.substr(start, end - start);
        const auto eq = entry.find('=');
        if (eq != std::string::npos) out[entry.substr(0, eq)] = entry.substr(eq + 1);
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return out;
}

RunResult run_program(const std::vector<std::string>& argv, Ms timeout, const std::vector<std::string>& env) {
    TempDir dir;
    const std::string log = dir.path() + "/out";
    ChildProcess p(argv, log, env);
    const auto status = p.wait_exit(timeout);
    REQUIRE_MESSAGE(status, "still running: " << argv.front() << "\n" << read_file(log));
    REQUIRE_MESSAGE(WIFEXITED(*status), argv.front() << " died by a signal\n" << read_file(log));
    return {WEXITSTATUS(*status), read_file(log)};
}

RunResult run_as_nobody(const std::vector<std::string>& argv, Ms timeout) {
    std::vector<std::string> as_nobody{"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
    as_nobody.insert(as_nobody.end(), argv.begin(), argv.end());
    return run_program(as_nobody, timeout);
}

bool skipped_unless_root(const std::string& what) {
    if (::geteuid() == 0) return false;
    MESSAGE("skipped, not root: " << what << " needs root (CI runs as root)");
    return true;
}

std::vector<std::string> workerd_start(const std::string& spec_path, const std::string& binary) {
    std::vector<std::string> argv{binary.empty() ? bin_path("workerd") : binary, "start"};
    const std::string text = "\n" + read_file(spec_path);
    if (::geteuid() == 0 && text.find("\nuser:") == std::string::npos) argv.emplace_back("--allow-root");
    argv.push_back(spec_path);
    return argv;
}

namespace {

std::vector<std::string> wrk_argv(int port, int seconds, const std::string& path, int connections,
                                  std::chrono::seconds request_timeout, const std::vector<std::string>& extra) {
    // --timeout 10s by default: these loads count failed requests, not slow ones; wrk's own
    // default of 2 s turns a busy moment on a loaded 2-core machine into errors.
    std::vector<std::string> argv{"/usr/bin/wrk", "-t2", "-c" + std::to_string(connections), "-d" + std::to_string(seconds) + "s",
                                  "--timeout", std::to_string(request_timeout.count()) + "s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("http://127.0.0.1:" + std::to_string(port) + path);
    return argv;
}

}  // namespace

WrkLoad::WrkLoad(const TempDir& dir, int port, int seconds, const std::string& path, int connections,
                 std::chrono::seconds request_timeout, const std::vector<std::string>& extra)
    : out_(dir.path() + "/wrk.out"), wrk_(wrk_argv(port, seconds, path, connections, request_timeout, extra), out_) {}

std::string WrkLoad::report() {
    const auto status = wrk_.wait_exit(60s);
    REQUIRE(status);
    return read_file(out_);
}

std::string WrkLoad::finish() {
    const auto status = wrk_.wait_exit(60s);
    REQUIRE(status);
    const std::string out = read_file(out_);
    CAPTURE(out);
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(out.find("Requests/sec") != std::string::npos);
    CHECK(out.find("Non-2xx") == std::string::npos);
    CHECK(out.find("Socket errors") == std::string::npos);
    return out;
}

long wrk_socket_errors(const std::string& report) {
    const auto at = report.find("Socket errors:");
    if (at == std::string::npos) return 0;
    long c = 0, r = 0, w = 0, t = 0;
    std::sscanf(report.c_str() + at, "Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &c, &r, &w, &t);
    return c + r + w + t;
}

long wrk_requests(const std::string& report) {
    const auto at = report.find(" requests in ");
    if (at == std::string::npos) return 0;
    const auto start = report.rfind('\n', at);
    return std::stol(report.substr(start == std::string::npos ? 0 : start + 1, at));
}

double cpu_seconds_of(pid_t pid) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    // Fields after the command (which may hold spaces) in parentheses: 14 and 15 are utime, stime.
    std::istringstream in(stat.substr(stat.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; in >> field; ++i) {
        if (i == 14) utime = std::stol(field);
        if (i == 15) {
            stime = std::stol(field);
            break;
        }
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

long rss_of(pid_t pid) {
    std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
    }
    return 0;
}

Daemon::Daemon(const TempDir& dir, const std::string& spec_yaml, const std::vector<std::string>& env,
               const std::string& binary)
    : log_path_(dir.path() + "/daemon.log") {
    std::string text = spec_yaml;
    const auto at = text.find("\ncontrol:");
    if (at == std::string::npos) {
        control_socket_ = dir.path() + "/control.sock";
        text += "\ncontrol: {socket: " + control_socket_ + "}\n";
    } else {
        const auto s = text.find("socket:", at);
        const auto end = text.find_first_of(",}\n", s);
        control_socket_ = text.substr(s + 8, end - s - 8);
    }
    const std::string spec = dir.write("workerd.yaml", text);
    process_ = std::make_unique<ChildProcess>(workerd_start(spec, binary), log_path_, env);
}

Daemon::~Daemon() {
    // Workers die with the daemon (PR_SET_PDEATHSIG); kill the ones we can see anyway, by pid.
    const auto left = process_->exited() ? std::vector<pid_t>{} : workers();
    process_.reset();
    for (pid_t pid : left) ::kill(pid, SIGKILL);
    // Under `make test-sanitize` the daemon and bundled workers are instrumented: a report in
    // the log (workers' stderr lands there too) fails the test that ran them.
    const std::string text = log();
    for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
        CHECK_MESSAGE(text.find(marker) == std::string::npos, text);
    }
}

std::string Daemon::log() const { return read_file(log_path_); }

nlohmann::json workerd_load(const std::vector<std::string>& args, Ms timeout) {
    std::vector<std::string> argv{bin_path("workerd"), "load"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--json");
    const auto r = run_program(argv, timeout);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    // The JSON object is the whole stdout (progress goes to a terminal only).
    const auto open = r.output.find('{');
    REQUIRE(open != std::string::npos);
    return nlohmann::json::parse(r.output.substr(open));
}

nlohmann::json Daemon::status() const {
    const auto r = ctl({"status", "--json"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    return nlohmann::json::parse(r.output);
}

RunResult Daemon::ctl(const std::vector<std::string>& args, Ms timeout) const {
    std::vector<std::string> argv{bin_path("workerctl"), "-s", control_socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv, timeout);
}

int Daemon::count_in_log(const std::string& needle) const {
    std::istringstream in(log());
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
    return n;
}

bool Daemon::wait_for_log(const std::string& needle, Ms timeout, int times) const {
    return eventually([&] { return count_in_log(needle) >= times; }, timeout);
}


std::vector<pid_t> Daemon::workers() const { return workers_of(pid()); }

std::optional<pid_t> Daemon::guardian() const {
    for (pid_t p : children_of(pid())) {
        if (is_guardian(p)) return p;
    }
    return std::nullopt;
}

bool Daemon::wait_status(const std::function<bool(const nlohmann::json&)>& holds, Ms timeout) const {
    return test::wait_status(control_socket_, holds, timeout);
}

bool Daemon::wait_ready(int n, Ms timeout) const {
    return wait_status([n](const nlohmann::json& s) { return fleet_ready(s, n); }, timeout);
}

bool Daemon::wait_rolled_out(long generation, Ms timeout) const {
    return wait_status(
        [generation](const nlohmann::json& s) {
            const auto rollout = s.find("rollout");
            return rollout != s.end() && rollout->is_object() && rollout->value("generation", -1L) == generation &&
                   rollout->value("state", "") == "done";
        },
        timeout);
}

bool Daemon::wait_for_workers(std::size_t n, Ms timeout) const {
    return eventually([&] { return workers().size() == n; }, timeout);
}

namespace {

bool wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) == 1;
}

std::optional<HttpResponse> parse_response(const std::string& raw) {
    const auto head_end = raw.find("\r\n\r\n");
    if (head_end == std::string::npos) return std::nullopt;
    std::istringstream head(raw.substr(0, head_end));
    std::string line;
    std::getline(head, line);
    HttpResponse r;
    if (std::sscanf(line.c_str(), "HTTP/%*d.%*d %d", &r.status) != 1) return std::nullopt;
    while (std::getline(head, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    r.body = raw.substr(head_end + 4);
    return r;
}

// A whole response read until the server closed: nullopt when cut short.
std::optional<HttpResponse> parse_complete_response(const std::string& raw) {
    auto r = parse_response(raw);
    if (!r) return r;
    if (auto it = r->headers.find("content-length"); it != r->headers.end()) {
        if (r->body.size() < std::stoul(it->second)) return std::nullopt;
    }
    return r;
}

}  // namespace

HttpConnection::HttpConnection(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        fd_ = fd;
    } else {
        ::close(fd);
    }
}

HttpConnection::~HttpConnection() {
    if (fd_ >= 0) ::close(fd_);
}

bool HttpConnection::send(const std::string& raw) {
    std::size_t sent = 0;
    while (sent < raw.size()) {
        const ssize_t n = ::send(fd_, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) return false;
        sent += static_cast<std::size_t>(n);
    }
    return true;
}

bool HttpConnection::request(const std::string& path, const std::string& method,
                             const std::string& extra_headers) {
    return send(method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n");
}

std::optional<HttpResponse> HttpConnection::read_response(Ms timeout, bool head) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[16384];
    while (true) {
        const auto head_end = buffered_.find("\r\n\r\n");
        if (head_end != std::string::npos) {
            auto r = parse_response(buffered_.substr(0, head_end + 4));
            if (!r) return std::nullopt;
            std::size_t length = 0;
            if (auto it = r->headers.find("content-length"); it != r->headers.end() && !head &&
                                                              r->status != 304) {
                length = std::stoul(it->second);
            }
            if (buffered_.size() >= head_end + 4 + length) {
                r->body = buffered_.substr(head_end + 4, length);
                buffered_.erase(0, head_end + 4 + length);
                return r;
            }
        }
        if (!wait_fd(fd_, POLLIN, deadline)) return std::nullopt;
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) return std::nullopt;
        buffered_.append(buf, static_cast<std::size_t>(n));
    }
}

bool HttpConnection::wait_closed(Ms timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (wait_fd(fd_, POLLIN, deadline)) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) return true;
        buffered_.append(buf, static_cast<std::size_t>(n));
    }
    return false;
}

std::optional<HttpResponse> http_request(int port, const std::string& path,
                                         const std::string& method, Ms timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        if (errno != EINPROGRESS || !wait_fd(fd.get(), POLLOUT, deadline)) return std::nullopt;
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return std::nullopt;
    }
    const std::string request =
        method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    std::size_t sent = 0;
    while (sent < request.size()) {
        const ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
        } else if (n < 0 && errno == EAGAIN) {
            if (!wait_fd(fd.get(), POLLOUT, deadline)) return std::nullopt;
        } else {
            return std::nullopt;
        }
    }
    std::string raw;
    char buf[16384];
    while (true) {
        if (!wait_fd(fd.get(), POLLIN, deadline)) return std::nullopt;
        const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return std::nullopt;  // reset
        }
        raw.append(buf, static_cast<std::size_t>(n));
    }
    return parse_complete_response(raw);
}

int http_status(int port, const std::string& path, Ms timeout) {
    const auto r = http_get(port, path, timeout);
    return r ? r->status : 0;
}

bool answers_within(int port, Ms timeout, const std::string& path) {
    return eventually([&] { return http_get(port, path).has_value(); }, timeout);
}

}  // namespace workerd::test

namespace workerd::test {

ControlClient::ControlClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

ControlClient::~ControlClient() {
    if (fd_ >= 0) ::close(fd_);
}

bool ControlClient::send(const std::string& data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
}

std::optional<nlohmann::json> ControlClient::reply(Ms timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pending_.find('\n') == std::string::npos) {
        const auto left = std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now()).count();
        pollfd p{fd_, POLLIN, 0};
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
        char buf[65536];
        const ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n <= 0) return std::nullopt;
        pending_.append(buf, static_cast<std::size_t>(n));
    }
    const auto nl = pending_.find('\n');
    const std::string line = pending_.substr(0, nl);
    pending_.erase(0, nl + 1);
    return nlohmann::json::parse(line);
}

std::optional<nlohmann::json> control_status(const std::string& socket) {
    ControlClient client(socket);
    if (!client.connected()) return std::nullopt;
    const auto reply = client.call("status", nlohmann::json::object(), 2s);
    // Gone from the daemon before this returns: tests count the daemon's descriptors.
    client.finish(1s);
    if (!reply || !reply->value("ok", false)) return std::nullopt;
    return (*reply)["result"];
}

bool wait_status(const std::string& socket, const std::function<bool(const nlohmann::json&)>& holds, Ms timeout) {
    return eventually(
        [&] {
            const auto status = control_status(socket);
            return status && holds(*status);
        },
        timeout);
}

bool fleet_ready(const nlohmann::json& status, int n) {
    return status.value("ready", -1) == n && status.value("desired", -1) == n;
}

bool ControlClient::finish(Ms timeout) {
    if (fd_ < 0) return true;
    ::shutdown(fd_, SHUT_WR);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (wait_fd(fd_, POLLIN, deadline)) {
        if (::read(fd_, buf, sizeof buf) <= 0) return true;  // EOF (or reset): the daemon closed
    }
    return false;
}

std::optional<nlohmann::json> ControlClient::call(const std::string& command, const nlohmann::json& args, Ms timeout) {
    if (!send(nlohmann::json{{"id", 1}, {"command", command}, {"args", args}}.dump() + "\n")) return std::nullopt;
    return reply(timeout);
}

}  // namespace workerd::test
