#include "daemon/os/spec_host.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "daemon/os/spawn.hpp"

namespace workerd {
namespace {

namespace fs = std::filesystem;
using What = HostLookup::What;

// Numeric ids are accepted as names too ("0", "1000").
std::optional<unsigned> numeric_id(const std::string& name) {
    if (!name.empty() && name.size() < 10 && name.find_first_not_of("0123456789") == std::string::npos) {
        return static_cast<unsigned>(std::stoul(name));
    }
    return std::nullopt;
}
std::optional<unsigned> uid_of(const std::string& name) {
    if (const passwd* pw = ::getpwnam(name.c_str())) return pw->pw_uid;
    return numeric_id(name);
}
std::optional<unsigned> gid_of(const std::string& name) {
    if (const group* gr = ::getgrnam(name.c_str())) return gr->gr_gid;
    return numeric_id(name);
}

// `user`: the uid, the primary group unless `group` names one, and the login and home the
// workers get as USER, LOGNAME and HOME. False when there is no such user.
bool resolve_user(const std::string& name, RunAsSpec& r, bool group_given) {
    if (const passwd* pw = ::getpwnam(name.c_str())) {
        r.uid = pw->pw_uid;
        if (!group_given) r.gid = pw->pw_gid;
        r.login = pw->pw_name;
        r.home = pw->pw_dir;
        return true;
    }
    const auto uid = numeric_id(name);
    if (!uid) return false;
    r.uid = *uid;
    if (const passwd* byuid = ::getpwuid(*uid)) {
        if (!group_given) r.gid = byuid->pw_gid;
        r.login = byuid->pw_name;
        r.home = byuid->pw_dir;
    }
    return true;
}

// Why the program cannot run as things are, or "".
std::string program_problem(const std::string& program, const AppSpec& app) {
    if (program.find('/') != std::string::npos) {
        // Relative to app.cwd: the worker changes there before exec.
        const fs::path path = (fs::path(program).is_absolute() ? fs::path(program) : fs::path(app.cwd) / program).lexically_normal();
        std::error_code ec;
        const auto st = fs::status(path, ec);
        if (!fs::exists(st)) return fmt::format("{} does not exist", path.string());
        if (!fs::is_regular_file(st) || ::access(path.c_str(), X_OK) != 0) return fmt::format("{} is not an executable file", path.string());
        return {};
    }
    const auto env = app.env.find("PATH");
    const char* daemon_path = std::getenv("PATH");
    const std::string path = env != app.env.end() ? env->second : daemon_path != nullptr ? daemon_path : "";
    if (!resolve_executable(program, path).empty()) return {};
    return fmt::format("'{}' is not found in PATH ({})", program, path.empty() ? "unset: /usr/local/bin:/usr/bin:/bin" : path);
}

std::string directory_problem(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return fmt::format("{}: {}", path, std::strerror(errno));
    if (!S_ISDIR(st.st_mode)) return fmt::format("{} is not a directory", path);
    return {};
}

}  // namespace

SpecLoadResult resolve_on_host(SpecReading reading, const std::string& shown_file) {
    SpecLoadResult result;
    result.errors = std::move(reading.errors);
    Spec& spec = reading.spec;
    const auto at = [&](const HostLookup& l, std::string message) {
        return SpecError{shown_file, l.line, l.column, l.key, std::move(message)};
    };
    bool group_given = false;
    for (const HostLookup& l : reading.lookups) group_given = group_given || l.what == What::group;
    const HostLookup* user = nullptr;
    for (const HostLookup& l : reading.lookups) {
        std::string problem;
        switch (l.what) {
            case What::user:
                user = &l;
                if (!resolve_user(l.text, spec.run_as, group_given)) problem = fmt::format("no such user '{}'", l.text);
                break;
            case What::group:
                if (auto gid = gid_of(l.text)) spec.run_as.gid = *gid;
                else problem = fmt::format("no such group '{}'", l.text);
                break;
            case What::control_group:
                if (auto gid = gid_of(l.text)) spec.control.group = *gid;
                else problem = fmt::format("no such group '{}'", l.text);
                break;
            case What::control_user:
                if (auto uid = uid_of(l.text)) spec.control.allow_users.push_back(*uid);
                else problem = fmt::format("no such user '{}'", l.text);
                break;
            case What::control_member:
                if (auto gid = gid_of(l.text)) spec.control.allow_groups.push_back(*gid);
                else problem = fmt::format("no such group '{}'", l.text);
                break;
            case What::directory:
                problem = directory_problem(l.text);
                break;
            case What::program:
                if (auto why = program_problem(l.text, spec.app); !why.empty()) {
                    result.warnings.push_back(at(l, why + "; no worker can start until it is there"));
                }
                break;
        }
        if (!problem.empty()) result.errors.push_back(at(l, problem));
    }
    if (user != nullptr && spec.run_as.uid && !spec.run_as.gid) {
        result.errors.push_back(at(*user, fmt::format("user {} has no entry in the user database; set `group` too", user->text)));
    }
    for (auto& e : result.errors) e.file = shown_file;
    if (result.errors.empty()) result.spec = std::move(spec);
    return result;
}

SpecLoadResult load_spec_text(const std::string& text, const std::string& file, int cpu_count) {
    // Read against the absolute path, so that every path in the spec is absolute; messages
    // name the file as the user gave it.
    const std::string absolute_file = fs::absolute(file).lexically_normal().string();
    return resolve_on_host(read_spec(text, absolute_file, cpu_count), file);
}

SpecLoadResult load_spec_file(const std::string& path, int cpu_count) {
    std::ifstream in(path);
    if (!in) {
        SpecLoadResult result;
        result.errors.push_back({path, 0, 0, "", fmt::format("cannot read the spec: {}", std::strerror(errno))});
        return result;
    }
    std::stringstream text;
    text << in.rdbuf();
    return load_spec_text(text.str(), path, cpu_count);
}

}  // namespace workerd
