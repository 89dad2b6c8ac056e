// The control protocol as the daemon reads it: one request line to one reply line, through the
// framing (ControlServer::handle_line) and the request reader (parse_control_request). Every
// line gets exactly one reply, a JSON object with "ok", and a scale target is always in range.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "daemon/wire/control_request.hpp"
#include "daemon/shell/control_server.hpp"
#include "daemon/wire/spec.hpp"

using json = nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string line(reinterpret_cast<const char*>(data), size);
    const workerd::ControlServer::Handler handler = [](const std::string& command, const json& args) {
        const auto request = workerd::parse_control_request(command, args);
        if (request.command == workerd::ControlRequest::Command::scale && !request.scale_auto) {
            const int target = workerd::scale_target(request, 4);
            if (target < 1 || target > workerd::kMaxWorkers) std::abort();
        }
        return json{{"command", command}};
    };
    const std::string reply = workerd::ControlServer::handle_line(line, handler);
    if (reply.find('\n') != std::string::npos) std::abort();  // one line, whatever came in
    const json parsed = json::parse(reply);                    // throws (a crash) if not JSON
    if (!parsed.is_object() || !parsed.contains("ok") || !parsed["ok"].is_boolean()) std::abort();
    if (!parsed["ok"].get<bool>() && !parsed["error"]["code"].is_string()) std::abort();
    return 0;
}
