#include "tests/support/spec_builder.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_support.hpp"

namespace workerd::test {

namespace {
// A YAML double-quoted string: JSON's escapes are YAML's.
std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }
}  // namespace

SpecBuilder::SpecBuilder(int port) : listen_(quoted(fmt::format("127.0.0.1:{}", port))) {}

SpecBuilder& SpecBuilder::also_listen(const std::string& address, const std::string& name) {
    listen_ += name.empty() ? ", " + quoted(address) : fmt::format(", {{address: {}, name: {}}}", quoted(address), name);
    return *this;
}

SpecBuilder& SpecBuilder::workers(int n) { return workers(std::to_string(n)); }

SpecBuilder& SpecBuilder::workers(const std::string& n) {
    workers_ = n;
    return *this;
}

SpecBuilder& SpecBuilder::builtin(const std::string& options) {
    builtin_ = "{" + options + "}";
    command_.clear();
    return *this;
}

SpecBuilder& SpecBuilder::command(const std::vector<std::string>& argv) {
    command_.clear();
    for (const auto& arg : argv) command_ += (command_.empty() ? "" : ", ") + quoted(arg);
    command_ = "[" + command_ + "]";
    builtin_.clear();
    return *this;
}

SpecBuilder& SpecBuilder::python(const std::string& script, const std::vector<std::string>& args) {
    std::vector<std::string> argv{"/usr/bin/python3", script};
    argv.insert(argv.end(), args.begin(), args.end());
    return command(argv);
}

SpecBuilder& SpecBuilder::cwd(const std::string& path) {
    cwd_ = path;
    return *this;
}

SpecBuilder& SpecBuilder::env(const std::string& name, const std::string& value) {
    env_.emplace_back(name, value);
    return *this;
}

SpecBuilder& SpecBuilder::uvicorn(const std::string& app, bool unbuffered) {
    command({"/usr/bin/python3", "-m", "workerd_uvicorn", app, "--no-access-log"})
        .cwd(source_path("tests/data/apps"))
        .env("PYTHONPATH", source_path("packaging/python"));
    return unbuffered ? env("PYTHONUNBUFFERED", "1") : *this;
}

SpecBuilder& SpecBuilder::metrics(int port, const std::string& options) {
    return set("metrics", fmt::format("{{listen: {}{}{}}}", quoted(fmt::format("127.0.0.1:{}", port)),
                                      options.empty() ? "" : ", ", options));
}

SpecBuilder& SpecBuilder::set(const std::string& key, const std::string& value) {
    auto it = std::find_if(keys_.begin(), keys_.end(), [&](const auto& kv) { return kv.first == key; });
    if (it != keys_.end()) it->second = value;
    else keys_.emplace_back(key, value);
    return *this;
}

SpecBuilder& SpecBuilder::extra(const std::string& yaml) {
    extra_ += yaml;
    if (!extra_.empty() && extra_.back() != '\n') extra_ += '\n';
    return *this;
}

std::string SpecBuilder::str() const {
    // The first line a comment, the keys from line 2, as in the inline specs the tests had
    // (their line:column assertions stay as they were).
    std::string out = fmt::format("# tests/support/spec_builder\nlisten: [{}]\nworkers: {}\n", listen_, workers_);
    if (!builtin_.empty()) out += "app:\n  builtin: " + builtin_ + "\n";
    if (!command_.empty()) {
        out += "app:\n  command: " + command_ + "\n";
        if (!cwd_.empty()) out += "  cwd: " + cwd_ + "\n";
        std::string env;
        for (const auto& [name, value] : env_) env += fmt::format("{}{}: {}", env.empty() ? "" : ", ", name, quoted(value));
        if (!env.empty()) out += "  env: {" + env + "}\n";
        if (preload_) out += "  preload: true\n";
    }
    for (const auto& [key, value] : keys_) out += fmt::format("{}: {}\n", key, value);
    return out + extra_;
}

}  // namespace workerd::test
