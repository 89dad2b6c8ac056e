// Reading control requests: commands, arguments, and the errors a script gets back.
#include <climits>

#include <doctest/doctest.h>

#include <fmt/format.h>

#include "daemon/wire/control_request.hpp"
#include "daemon/shell/control_server.hpp"
#include "daemon/wire/spec.hpp"

using namespace workerd;
using json = nlohmann::json;
using Command = ControlRequest::Command;

namespace {

std::string error_code(const std::string& command, const json& args) {
    try {
        parse_control_request(command, args);
    } catch (const ControlError& e) {
        return e.code;
    }
    return "";
}

}  // namespace

TEST_CASE("commands and their arguments") {
    CHECK(parse_control_request("status", json::object()).command == Command::status);
    CHECK_FALSE(parse_control_request("status", json::object()).changes_fleet());
    const auto scale = parse_control_request("scale", {{"workers", 6}});
    CHECK(scale.command == Command::scale);
    CHECK(scale.workers == 6);
    CHECK(scale.changes_fleet());
    CHECK(parse_control_request("scale", {{"delta", -2}}).delta == -2);
    CHECK(parse_control_request("scale", {{"auto", true}}).scale_auto);
    CHECK(parse_control_request("restart", {{"slot", 3}}).slot == 3);
    CHECK(parse_control_request("restart", {{"all", true}}).all);
    CHECK(parse_control_request("stop", {{"now", true}}).now);
    CHECK_FALSE(parse_control_request("stop", json::object()).now);
    CHECK_FALSE(parse_control_request("stop", json::object()).changes_fleet());
}

TEST_CASE("bad arguments are bad_argument, unknown commands unknown_command") {
    CHECK(error_code("frobnicate", json::object()) == "unknown_command");
    CHECK(error_code("scale", json::object()) == "bad_argument");
    CHECK(error_code("scale", {{"workers", "6"}}) == "bad_argument");
    CHECK(error_code("scale", {{"workers", 6.5}}) == "bad_argument");
    CHECK(error_code("scale", {{"auto", "yes"}}) == "bad_argument");
    CHECK(error_code("scale", {{"workers", 1ULL << 40}}) == "bad_argument");
    CHECK(error_code("scale", {{"workers", 18446744073709551615ULL}}) == "bad_argument");
    CHECK(error_code("scale", {{"delta", -(1LL << 40)}}) == "bad_argument");
    CHECK(error_code("restart", json::object()) == "bad_argument");
    CHECK(error_code("restart", {{"slot", nullptr}}) == "bad_argument");
    CHECK(error_code("stop", {{"now", 1}}) == "bad_argument");
}

TEST_CASE("scale takes exactly one of workers, delta and auto") {
    CHECK(error_code("scale", {{"workers", 3}, {"delta", 1}}) == "bad_argument");
    CHECK(error_code("scale", {{"workers", 3}, {"auto", true}}) == "bad_argument");
    CHECK(error_code("scale", {{"auto", false}}) == "bad_argument");
    CHECK(error_code("scale", {{"workers", 3}}).empty());
    CHECK(error_code("scale", {{"auto", true}}).empty());
}

TEST_CASE("a count past an int reads like any count out of range") {
    try {
        parse_control_request("scale", {{"workers", 1000000000000LL}});
        FAIL("accepted");
    } catch (const ControlError& e) {
        CHECK(e.code == "bad_argument");
        CHECK(std::string(e.what()) == fmt::format("the fleet must have 1 to {} workers, not 1000000000000", kMaxWorkers));
    }
    try {
        scale_target(parse_control_request("scale", {{"workers", 999999}}), 4);
        FAIL("accepted");
    } catch (const ControlError& e) {
        CHECK(std::string(e.what()) == fmt::format("the fleet must have 1 to {} workers, not 999999", kMaxWorkers));
    }
}

TEST_CASE("scale targets stay in 1..kMaxWorkers, without overflow") {
    ControlRequest r = parse_control_request("scale", {{"delta", INT_MAX}});
    CHECK_THROWS_AS(scale_target(r, 4), ControlError);
    r = parse_control_request("scale", {{"delta", INT_MIN}});
    CHECK_THROWS_AS(scale_target(r, 4), ControlError);
    CHECK(scale_target(parse_control_request("scale", {{"delta", 2}}), 4) == 6);
    CHECK(scale_target(parse_control_request("scale", {{"delta", -3}}), 4) == 1);
    CHECK_THROWS_AS(scale_target(parse_control_request("scale", {{"delta", -4}}), 4), ControlError);
    CHECK(scale_target(parse_control_request("scale", {{"workers", kMaxWorkers}}), 4) == kMaxWorkers);
    CHECK_THROWS_AS(scale_target(parse_control_request("scale", {{"workers", kMaxWorkers + 1}}), 4), ControlError);
}

TEST_CASE("the request framing answers every line with one JSON reply") {
    const ControlServer::Handler handler = [](const std::string& command, const json& args) {
        const auto r = parse_control_request(command, args);
        return json{{"command", static_cast<int>(r.command)}};
    };
    auto reply = [&](const std::string& line) { return json::parse(ControlServer::handle_line(line, handler)); };
    CHECK(reply(R"({"id": 7, "command": "status"})")["ok"] == true);
    CHECK(reply(R"({"id": 7, "command": "status"})")["id"] == 7);
    CHECK(reply("not json")["error"]["code"] == "bad_request");
    CHECK(reply("[1, 2]")["error"]["code"] == "bad_request");
    CHECK(reply(R"({"command": 5})")["error"]["code"] == "bad_request");
    CHECK(reply(R"({"command": "scale", "args": []})")["error"]["code"] == "bad_argument");
    CHECK(reply(R"({"id": "x", "command": "scale", "args": {"delta": 99999999999}})")["error"]["code"] == "bad_argument");
    CHECK(reply(R"({"command": "nope"})")["error"]["code"] == "unknown_command");
    // What was wrong with the JSON, said plainly: an overflowing number is not bad UTF-8.
    const auto overflow = reply(R"({"id": 1e400, "command": "status"})");
    CHECK(overflow["error"]["code"] == "bad_request");
    CHECK(overflow["error"]["message"].get<std::string>().find("number overflow") != std::string::npos);
    const auto bad_utf8 = reply("{\"command\": \"st\xff\"}");
    CHECK(bad_utf8["error"]["code"] == "bad_request");
    CHECK(bad_utf8["error"]["message"].get<std::string>().find("UTF-8") != std::string::npos);
    CHECK(reply("[1, 2]")["error"]["message"] == "the request must be a JSON object");
}
