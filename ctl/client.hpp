#pragma once

#include <chrono>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace workerctl {

/// workerctl's exit codes (docs/control-protocol.md, README).
enum Exit : int {
    kOk = 0,
    kFailed = 1,        ///< the daemon said no, or --wait did not get there in time
    kUsage = 2,
    kNotRunning = 3,    ///< no daemon at that socket
    kForbidden = 4,     ///< not allowed to use that socket
    kTimeout = 5,       ///< the daemon did not answer in time
};

/// A failure with its exit code and one plain sentence for the user.
struct Failure : std::runtime_error {
    Failure(Exit code, const std::string& message) : std::runtime_error(message), code(code) {}
    Exit code;
};

/// One connection to a daemon's control socket.
class Client {
public:
    /// Connects; throws Failure (kNotRunning, kForbidden).
    Client(const std::string& socket_path, std::chrono::milliseconds timeout);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Sends a command and returns its result; throws Failure (the daemon's error reply is
    /// kFailed, or kForbidden for "forbidden"; no reply in time is kTimeout).
    nlohmann::json call(const std::string& command, const nlohmann::json& args = nlohmann::json::object());

    /// Like call(), but a connection closed before the reply counts as success (`stop`: the
    /// daemon may exit before its answer is out).
    nlohmann::json call_allowing_close(const std::string& command, const nlohmann::json& args);

private:
    std::optional<std::string> read_line();

    int fd_ = -1;
    std::string path_;
    std::chrono::milliseconds timeout_;
    std::string pending_;
    long next_id_ = 1;
};

}  // namespace workerctl
