#include "daemon/wire/spec_keys.hpp"

#include <algorithm>

namespace workerd {

int key_distance(const std::string& a, const std::string& b) {
    const std::size_t n = a.size(), m = b.size();
    std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
    for (std::size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
    for (std::size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
    for (std::size_t i = 1; i <= n; ++i) {
        for (std::size_t j = 1; j <= m; ++j) {
            const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
            }
        }
    }
    return d[n][m];
}

std::string unknown_key_message(const std::string& key, const std::vector<std::string>& known) {
    std::string best;
    int best_distance = 1 << 30;
    for (const auto& k : known) {
        const int dist = key_distance(key, k);
        if (dist < best_distance) {
            best = k;
            best_distance = dist;
        }
    }
    const int limit = key.size() <= 4 ? 1 : 2;
    if (!best.empty() && best_distance <= limit) {
        return "unknown key '" + key + "'; did you mean '" + best + "'?";
    }
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    return "unknown key '" + key + "'; valid keys here: " + list;
}

}  // namespace workerd
