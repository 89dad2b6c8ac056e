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
// and SpecBuilder(port).command({"sleep", "600"}).set("heartbeat", "off")
//   listen: ["127.0.0.1:PORT"]
//   workers: 1
//   app:
//     command: ["sleep", "600"]
//   heartbeat: off

#include <string>
#include <utility>
#include <vector>

namespace workerd::test {

class SpecBuilder {
public:
    explicit SpecBuilder(int port);
    /// Another listen address after 127.0.0.1:PORT ("unix:/run/app.sock"); with `name`, as
    /// {address: ..., name: NAME}.
    SpecBuilder& also_listen(const std::string& address, const std::string& name = "");
    SpecBuilder& workers(int n);
    /// `workers: auto`, say.
    SpecBuilder& workers(const std::string& n);
    /// The bundled worker, `builtin: {OPTIONS}`: by default with its /demo routes; "" for none.
    SpecBuilder& builtin(const std::string& options = "demo: true");
    /// An external command, `command: ["ARGV0", ...]` (each argument a quoted YAML string).
    SpecBuilder& command(const std::vector<std::string>& argv);
    /// A Python script: command ["/usr/bin/python3", SCRIPT, ARGS...] (Debian's python3).
    SpecBuilder& python(const std::string& script, const std::vector<std::string>& args = {});
    /// app.cwd.
    SpecBuilder& cwd(const std::string& path);
    /// One variable more in app.env (`NAME: "VALUE"`).
    SpecBuilder& env(const std::string& name, const std::string& value);
    /// A Python ASGI app (tests/data/apps MODULE:APP) under workerd_uvicorn from this tree, with
    /// Debian's /usr/bin/python3; `unbuffered`: PYTHONUNBUFFERED=1 (prints reach the log at once).
    SpecBuilder& uvicorn(const std::string& app, bool unbuffered = false);
    /// app.preload: true (the workers are forked from a zygote per generation).
    SpecBuilder& preload() {
        preload_ = true;
        return *this;
    }
    /// The metrics endpoint on 127.0.0.1:PORT, with more of its keys as YAML ("min_ready: 2").
    SpecBuilder& metrics(int port, const std::string& options = "");
    /// A top-level key, its value as YAML ("5s", "{initial: 100ms}"); set again, replaced.
    SpecBuilder& set(const std::string& key, const std::string& value);
    /// More YAML lines, appended as they are.
    SpecBuilder& extra(const std::string& yaml);

    std::string str() const;
    operator std::string() const { return str(); }  // NOLINT: a spec is text

private:
    std::string listen_;
    std::string workers_ = "1";
    std::string builtin_;
    std::string command_;
    std::string cwd_;
    std::vector<std::pair<std::string, std::string>> env_;
    bool preload_ = false;
    std::vector<std::pair<std::string, std::string>> keys_;
    std::string extra_;
};

}  // namespace workerd::test
