#include "daemon/core/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace workerd {

std::size_t LatencyHistogram::bucket_of(std::uint64_t micros) {
    const std::uint64_t v = std::min(micros, kMaxMicros);
    if (v < kLinearLimit) return static_cast<std::size_t>(v);
    // v in [2^m, 2^(m+1)), m >= 8: the top 8 bits (1 + 7) pick the bucket within the octave.
    const int m = std::bit_width(v) - 1;
    const int shift = m - kSubBucketBits;
    const std::uint64_t sub = (v >> shift) - (std::uint64_t{1} << kSubBucketBits);  // 0..127
    return static_cast<std::size_t>(kLinearLimit + (static_cast<std::uint64_t>(m - kSubBucketBits - 1) << kSubBucketBits) + sub);
}

std::uint64_t LatencyHistogram::bucket_low(std::size_t bucket) {
    if (bucket < kLinearLimit) return bucket;
    const std::size_t i = bucket - kLinearLimit;
    const int octave = static_cast<int>(i >> kSubBucketBits);  // 0 for [256, 512)
    const std::uint64_t sub = i & ((std::size_t{1} << kSubBucketBits) - 1);
    const int shift = octave + 1;
    return ((std::uint64_t{1} << kSubBucketBits) + sub) << shift;
}

std::uint64_t LatencyHistogram::bucket_high(std::size_t bucket) {
    if (bucket < kLinearLimit) return bucket;
    const int shift = static_cast<int>((bucket - kLinearLimit) >> kSubBucketBits) + 1;
    return bucket_low(bucket) + (std::uint64_t{1} << shift) - 1;
}

void LatencyHistogram::record(std::uint64_t micros, std::uint64_t count) {
    if (count == 0) return;
    const std::uint64_t v = std::min(micros, kMaxMicros);
    counts_[bucket_of(v)] += count;
    count_ += count;
    sum_ += v * count;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
    if (other.count_ == 0) return;
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

void LatencyHistogram::reset() { *this = LatencyHistogram{}; }

std::uint64_t LatencyHistogram::percentile(double p) const {
    if (count_ == 0) return 0;
    const double clamped = std::clamp(p, 0.0, 100.0);
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(clamped / 100.0 * static_cast<double>(count_))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        seen += counts_[i];
        if (seen >= rank) {
            // The middle of the bucket, kept within what was really recorded.
            const std::uint64_t mid = bucket_low(i) + (bucket_high(i) - bucket_low(i)) / 2;
            return std::clamp(mid, min_, max_);
        }
    }
    return max_;
}

}  // namespace workerd
