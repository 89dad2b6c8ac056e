#include "daemon/tune/tune_spec.hpp"

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

namespace workerd::tune {

std::string tuning_spec_text(const std::string& text, const Spec& spec, const TunePlaces& places) {
    YAML::Node root = YAML::Load(text);
    YAML::Node listen(YAML::NodeType::Sequence);
    for (std::size_t i = 0; i < spec.listen.size() && i < places.ports.size(); ++i) {
        YAML::Node item;
        item["address"] = fmt::format("127.0.0.1:{}", places.ports[i]);
        item["name"] = spec.listen[i].name.empty() ? fmt::format("listen{}", i) : spec.listen[i].name;
        listen.push_back(item);
    }
    root["listen"] = listen;
    root["workers"] = places.workers;
    root.remove("autoscale");
    root.remove("metrics");
    root.remove("reuse_port");  // kept below when set: a fresh node keeps the order readable
    if (spec.reuse_port_cpu) {
        root["reuse_port"] = "cpu";
    } else if (spec.reuse_port) {
        root["reuse_port"] = true;
    }
    YAML::Node control;
    control["socket"] = places.control_socket;
    root["control"] = control;
    if (root["log"] && root["log"].IsMap()) root["log"].remove("file");
    YAML::Node app = root["app"];
    app["cwd"] = spec.app.cwd;
    if (spec.app.builtin && !spec.app.builtin->root.empty() && app["builtin"] && app["builtin"].IsMap()) {
        app["builtin"]["root"] = spec.app.builtin->root;
    }
    YAML::Emitter out;
    out << root;
    return std::string(out.c_str()) + "\n";
}

}  // namespace workerd::tune
