#pragma once

// Prometheus metric families built in order of first use, serialized with prometheus-cpp's
// text serializer.

#include <map>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "daemon/wire/notify.hpp"

namespace workerd {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

class Families {
public:
    MetricFamily& family(const std::string& name, const std::string& help, MetricType type) {
        auto it = index_.find(name);
        if (it != index_.end()) return families_[it->second];
        index_[name] = families_.size();
        families_.push_back(MetricFamily{name, help, type, {}});
        return families_.back();
    }
    void gauge(const std::string& name, const std::string& help, double value,
               std::vector<ClientMetric::Label> labels = {}) {
        sample(name, help, MetricType::Gauge, value, std::move(labels));
    }
    void counter(const std::string& name, const std::string& help, double value,
                 std::vector<ClientMetric::Label> labels = {}) {
        sample(name, help, MetricType::Counter, value, std::move(labels));
    }
    /// A histogram from the worker protocol's buckets: `bound(k)` in ms, the last one +Inf;
    /// with `stride`, only every stride-th bound is a Prometheus bucket (fewer series).
    template <std::size_t N>
    void histogram(const std::string& name, const std::string& help, const std::array<std::uint64_t, N>& counts,
                   std::uint64_t sum_us, double (*bound_ms)(int), std::size_t stride = 1) {
        ClientMetric m;
        std::uint64_t cumulative = 0;
        for (std::size_t k = 0; k < N; ++k) {
            cumulative += counts[k];
            if (k % stride == 0 || k == N - 1) {
                m.histogram.bucket.push_back({cumulative, bound_ms(static_cast<int>(k)) / 1000.0});
            }
        }
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = static_cast<double>(sum_us) / 1e6;
        family(name, help, MetricType::Histogram).metric.push_back(std::move(m));
    }
    std::string text() const { return prometheus::TextSerializer().Serialize(families_); }

private:
    void sample(const std::string& name, const std::string& help, MetricType type, double value,
                std::vector<ClientMetric::Label> labels) {
        ClientMetric m;
        m.label = std::move(labels);
        (type == MetricType::Gauge ? m.gauge.value : m.counter.value) = value;
        family(name, help, type).metric.push_back(std::move(m));
    }

    std::vector<MetricFamily> families_;
    std::map<std::string, std::size_t> index_;
};

}  // namespace workerd
