#pragma once

// The counters and histograms of podvisord that other modules bump, one call each. No
// prometheus-cpp header is included here, so any module may include this cheaply; the families
// live in one process-wide registry (common/metrics_registry.h) served by the daemon's metrics
// endpoint. Every function is thread-safe and cheap (a lookup and an atomic add).
//
// Names follow the Prometheus conventions: the `podvisor_` prefix, base units in the name
// (`_seconds`, `_bytes`) and `_total` on counters. docs/metrics.md lists every family.

#include <cstdint>
#include <string_view>

namespace podvisor::metrics {

// podvisor_cri_request_duration_seconds{method,code}: one observation per finished CRI call.
void ObserveCriRequest(std::string_view method, std::string_view code, double seconds);

// podvisor_vm_start_duration_seconds{mode}: VM create -> agent answered. `mode` is "cold" for a
// fresh boot ("clone" for a VM restored from a template).
void ObserveVmStart(std::string_view mode, double seconds);

// podvisor_template_build_duration_seconds (successful builds) and
// podvisor_template_builds_total{result}: one observation per template VM booted and saved.
void ObserveTemplateBuild(double seconds, bool ok);

// podvisor_agent_reconnects_total: the agent of a running VM reached again after a daemon restart.
void CountAgentReconnect();
// podvisor_agent_heartbeat_losses_total: an agent channel lost while its sandbox was READY.
void CountAgentHeartbeatLoss();

// podvisor_image_pull_bytes_total: bytes fetched from registries.
void AddImagePullBytes(int64_t bytes);
// podvisor_image_pull_duration_seconds (successful pulls) and podvisor_image_pulls_total{result}.
void ObserveImagePull(double seconds, bool ok);

// podvisor_streaming_sessions{kind} (open now) and podvisor_streaming_sessions_total{kind}: one
// object per exec / attach / port-forward session, alive as long as the session.
class StreamingSession {
 public:
  explicit StreamingSession(std::string_view kind);
  ~StreamingSession();
  StreamingSession(const StreamingSession&) = delete;
  StreamingSession& operator=(const StreamingSession&) = delete;

 private:
  void* gauge_;  // prometheus::Gauge*, owned by the registry
};

}  // namespace podvisor::metrics
