#pragma once

// A spec for the end-to-end tests, built key by key instead of inline YAML repeated in every
// file:
//   SpecBuilder(port).workers(2).builtin().set("graceful_timeout", "5s")
// gives (after a comment line)
//   listen: ["127.0.0.1:PORT"]
//   workers: 2
//   app:
//     builtin: {demo: true}
//   graceful_timeout: 5s

#include <string>
#include <utility>
#include <vector>

namespace workerd::test {

class SpecBuilder {
public:
    explicit SpecBuilder(int port);
    SpecBuilder& workers(int n);
    /// The bundled worker with its /demo routes.
    SpecBuilder& builtin();
    /// A Python ASGI app (tests/data/apps MODULE:APP) under workerd_uvicorn from this tree, with
    /// Debian's /usr/bin/python3; `unbuffered`: PYTHONUNBUFFERED=1 (prints reach the log at once).
    SpecBuilder& uvicorn(const std::string& app, bool unbuffered = false);
    /// A top-level key, its value as YAML ("5s", "{initial: 100ms}"); set again, replaced.
    SpecBuilder& set(const std::string& key, const std::string& value);
    /// More YAML lines, appended as they are.
    SpecBuilder& extra(const std::string& yaml);

    std::string str() const;
    operator std::string() const { return str(); }  // NOLINT: a spec is text

private:
    std::string listen_;
    std::string workers_ = "1";
    std::string app_;
    std::vector<std::pair<std::string, std::string>> keys_;
    std::string extra_;
};

}  // namespace workerd::test
