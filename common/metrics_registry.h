#pragma once

// The process-wide prometheus-cpp registry behind common/metrics.h. Included only by the code
// that defines families or serves them (common/metrics.cc, cri/metrics_*.cc).

#include <memory>

#include "prometheus/registry.h"

namespace podvisor::metrics {

// Created on first use, never destroyed (families may be bumped until the process exits).
const std::shared_ptr<prometheus::Registry>& Registry();

}  // namespace podvisor::metrics
