// The spec parser on arbitrary bytes: it must never crash, hang or leak, and it either gives a
// spec or says why not, with a position inside the text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "daemon/os/spec_host.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto result = workerd::load_spec_text(text, "fuzz.yaml", 2);
    if (result.spec.has_value() == !result.errors.empty()) std::abort();  // exactly one of the two
    for (const auto& e : result.errors) {
        if (e.message.empty() || e.line < 0 || e.column < 0) std::abort();
        (void)e.to_string();
    }
    if (result.spec) {
        auto spec = *result.spec;
        if (spec.listen.empty() || spec.workers < 1 || spec.workers > workerd::kMaxWorkers) std::abort();
    }
    return 0;
}
