#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace workerd {

/// A latency recorder in the manner of HdrHistogram: log-linear buckets over microseconds, so
/// that any percentile it reports is within 0.4% of the true value (half a bucket: each power
/// of two above 256 µs is split into 128 equal buckets; below 256 µs every microsecond has its
/// own), from 0 to about 12 days. Fixed size (36 KiB), no allocation: recording is an index
/// computation and an increment. Histograms merge by adding counts.
class LatencyHistogram {
public:
    static constexpr int kSubBucketBits = 7;                          ///< 128 buckets per octave
    static constexpr std::uint64_t kLinearLimit = 2u << kSubBucketBits;  ///< exact below 256 µs
    static constexpr int kOctaves = 33;                                ///< 2^8 .. 2^40 µs
    static constexpr std::size_t kBuckets = kLinearLimit + (kOctaves << kSubBucketBits);
    static constexpr std::uint64_t kMaxMicros = (std::uint64_t{1} << 40) - 1;

    /// Records `count` values of `micros` (values past kMaxMicros count as kMaxMicros).
    void record(std::uint64_t micros, std::uint64_t count = 1);
    /// Adds every count of `other`.
    void merge(const LatencyHistogram& other);
    void reset();

    std::uint64_t count() const { return count_; }
    /// The value at percentile `p` (0..100): the smallest recorded value that at least p% of the
    /// values are at or below, as the middle of its bucket (exact below 256 µs). 0 when empty.
    std::uint64_t percentile(double p) const;
    std::uint64_t max() const { return count_ == 0 ? 0 : max_; }
    std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
    double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_); }

    /// The bucket a value falls in, and the values it holds (for tests and merging).
    static std::size_t bucket_of(std::uint64_t micros);
    static std::uint64_t bucket_low(std::size_t bucket);
    static std::uint64_t bucket_high(std::size_t bucket);  ///< inclusive

private:
    std::array<std::uint64_t, kBuckets> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t min_ = ~std::uint64_t{0};
    std::uint64_t max_ = 0;
};

}  // namespace workerd
