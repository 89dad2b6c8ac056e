#include "tests/support/spec_builder.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "tests/support/test_support.hpp"

namespace workerd::test {

SpecBuilder::SpecBuilder(int port) : listen_(fmt::format("[\"127.0.0.1:{}\"]", port)) {}

SpecBuilder& SpecBuilder::workers(int n) {
    workers_ = std::to_string(n);
    return *this;
}

SpecBuilder& SpecBuilder::builtin() {
    app_ = "  builtin: {demo: true}\n";
    return *this;
}

SpecBuilder& SpecBuilder::uvicorn(const std::string& app, bool unbuffered) {
    app_ = fmt::format(
        "  command: [\"/usr/bin/python3\", \"-m\", \"workerd_uvicorn\", \"{}\", \"--no-access-log\"]\n"
        "  cwd: {}\n"
        "  env: {{PYTHONPATH: \"{}\"{}}}\n",
        app, source_path("tests/data/apps"), source_path("packaging/python"),
        unbuffered ? ", PYTHONUNBUFFERED: \"1\"" : "");
    return *this;
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
    std::string out = fmt::format("# tests/support/spec_builder\nlisten: {}\nworkers: {}\n", listen_, workers_);
    if (!app_.empty()) out += "app:\n" + app_;
    for (const auto& [key, value] : keys_) out += fmt::format("{}: {}\n", key, value);
    return out + extra_;
}

}  // namespace workerd::test
