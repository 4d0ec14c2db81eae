#include "common/metrics.h"

#include <string>

#include "common/metrics_registry.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace podvisor::metrics {
namespace {

// CRI calls range from sub-millisecond lists to image pulls and pod starts of a minute.
const prometheus::Histogram::BucketBoundaries kRpcBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
// A VM start: tens of milliseconds for a clone, seconds for a cold boot under TCG.
const prometheus::Histogram::BucketBoundaries kVmStartBuckets = {
    0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 30, 60};
const prometheus::Histogram::BucketBoundaries kPullBuckets = {0.1, 0.5, 1,   2.5, 5,  10,
                                                              30,  60,  120, 300, 600};

struct Families {
  prometheus::Family<prometheus::Histogram>& cri =
      prometheus::BuildHistogram()
          .Name("podvisor_cri_request_duration_seconds")
          .Help("Latency of CRI calls by method and gRPC status code")
          .Register(*Registry());
  prometheus::Family<prometheus::Histogram>& vm_start =
      prometheus::BuildHistogram()
          .Name("podvisor_vm_start_duration_seconds")
          .Help("Pod VM start, create to agent answering, by mode (cold boot or clone)")
          .Register(*Registry());
  prometheus::Histogram& template_build =
      prometheus::BuildHistogram()
          .Name("podvisor_template_build_duration_seconds")
          .Help("Template VM builds (boot to agent-ready, then save), successful ones")
          .Register(*Registry())
          .Add({}, kPullBuckets);
  prometheus::Family<prometheus::Counter>& template_builds =
      prometheus::BuildCounter()
          .Name("podvisor_template_builds_total")
          .Help("Template VM builds by result (success or error)")
          .Register(*Registry());
  prometheus::Counter& reconnects =
      prometheus::BuildCounter()
          .Name("podvisor_agent_reconnects_total")
          .Help("Agents of running VMs reached again after a daemon restart")
          .Register(*Registry())
          .Add({});
  prometheus::Counter& heartbeat_losses =
      prometheus::BuildCounter()
          .Name("podvisor_agent_heartbeat_losses_total")
          .Help("Agent channels of READY sandboxes lost (missed heartbeats, closed channel)")
          .Register(*Registry())
          .Add({});
  prometheus::Counter& pull_bytes = prometheus::BuildCounter()
                                        .Name("podvisor_image_pull_bytes_total")
                                        .Help("Bytes fetched from registries by image pulls")
                                        .Register(*Registry())
                                        .Add({});
  prometheus::Histogram& pull_duration = prometheus::BuildHistogram()
                                             .Name("podvisor_image_pull_duration_seconds")
                                             .Help("Duration of successful image pulls")
                                             .Register(*Registry())
                                             .Add({}, kPullBuckets);
  prometheus::Family<prometheus::Counter>& pulls =
      prometheus::BuildCounter()
          .Name("podvisor_image_pulls_total")
          .Help("Image pulls by result (success or error)")
          .Register(*Registry());
  prometheus::Family<prometheus::Gauge>& sessions =
      prometheus::BuildGauge()
          .Name("podvisor_streaming_sessions")
          .Help("Streaming sessions open now, by kind (exec, attach, portforward)")
          .Register(*Registry());
  prometheus::Family<prometheus::Counter>& sessions_total =
      prometheus::BuildCounter()
          .Name("podvisor_streaming_sessions_total")
          .Help("Streaming sessions started, by kind")
          .Register(*Registry());

  Families() {
    // Both results exist from the start, so that rate() sees the first error.
    pulls.Add({{"result", "success"}});
    pulls.Add({{"result", "error"}});
    template_builds.Add({{"result", "success"}});
    template_builds.Add({{"result", "error"}});
  }
};

Families& F() {
  static Families* families = new Families();
  return *families;
}

}  // namespace

const std::shared_ptr<prometheus::Registry>& Registry() {
  static auto* registry =
      new std::shared_ptr<prometheus::Registry>(std::make_shared<prometheus::Registry>());
  return *registry;
}

void ObserveCriRequest(std::string_view method, std::string_view code, double seconds) {
  F().cri.Add({{"method", std::string(method)}, {"code", std::string(code)}}, kRpcBuckets)
      .Observe(seconds);
}

void ObserveVmStart(std::string_view mode, double seconds) {
  F().vm_start.Add({{"mode", std::string(mode)}}, kVmStartBuckets).Observe(seconds);
}

void ObserveTemplateBuild(double seconds, bool ok) {
  if (ok) F().template_build.Observe(seconds);
  F().template_builds.Add({{"result", ok ? "success" : "error"}}).Increment();
}

void CountAgentReconnect() { F().reconnects.Increment(); }
void CountAgentHeartbeatLoss() { F().heartbeat_losses.Increment(); }

void AddImagePullBytes(int64_t bytes) {
  if (bytes > 0) F().pull_bytes.Increment(static_cast<double>(bytes));
}

void ObserveImagePull(double seconds, bool ok) {
  F().pulls.Add({{"result", ok ? "success" : "error"}}).Increment();
  if (ok) F().pull_duration.Observe(seconds);
}

StreamingSession::StreamingSession(std::string_view kind) {
  const prometheus::Labels labels = {{"kind", std::string(kind)}};
  F().sessions_total.Add(labels).Increment();
  prometheus::Gauge& gauge = F().sessions.Add(labels);
  gauge.Increment();
  gauge_ = &gauge;
}

StreamingSession::~StreamingSession() { static_cast<prometheus::Gauge*>(gauge_)->Decrement(); }

}  // namespace podvisor::metrics
