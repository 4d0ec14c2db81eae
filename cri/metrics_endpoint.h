#pragma once

// The daemon's Prometheus endpoint: GET /metrics on a TCP address (loopback by default), serving
// the counters and histograms of common/metrics.h plus gauges computed at each scrape from the
// controllers (sandboxes and containers by state, VM memory, runtime readiness).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/sandbox_controller.h"

namespace podvisor::cri {

class MetricsEndpoint {
 public:
  // Listens on `address` (host:port; port 0 picks one). UNAVAILABLE when it cannot bind.
  // The controllers and the template store (nullptr when templates are off) must outlive the
  // endpoint.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& address,
                                                                SandboxController* sandboxes,
                                                                ContainerController* containers,
                                                                VmTemplateStore* templates);
  virtual ~MetricsEndpoint() = default;
  // host:port actually bound.
  virtual std::string address() const = 0;
  // http://host:port/metrics
  std::string Url() const { return "http://" + address() + "/metrics"; }
};

}  // namespace podvisor::cri
