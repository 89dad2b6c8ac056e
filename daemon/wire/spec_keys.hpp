#pragma once

#include <string>
#include <vector>

namespace workerd {

/// Edit distance (insertions, deletions, substitutions, adjacent swaps) between two keys.
int key_distance(const std::string& a, const std::string& b);

/// "unknown key 'wokers'; did you mean 'workers'?" — the suggestion only when a known key is
/// close (distance <= 2, or <= 1 for short keys); otherwise lists the valid keys.
std::string unknown_key_message(const std::string& key, const std::vector<std::string>& known);

}  // namespace workerd
