#include "common/metrics.h"

#include <string>

#include "common/metrics_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace podvisor::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Text() {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, Registry()->Collect());
  return out.str();
}

TEST(MetricsTest, BumpsShowInTheTextFormat) {
  ObserveCriRequest("ListPodSandbox", "OK", 0.003);
  ObserveCriRequest("ListPodSandbox", "OK", 0.004);
  ObserveVmStart("cold", 1.4);
  CountAgentReconnect();
  CountAgentHeartbeatLoss();
  AddImagePullBytes(1000);
  AddImagePullBytes(-5);  // ignored: counters never go down
  ObserveImagePull(2.0, true);
  ObserveImagePull(0.1, false);
  const std::string text = Text();
  EXPECT_THAT(text, HasSubstr("# TYPE podvisor_cri_request_duration_seconds histogram"));
  EXPECT_THAT(text, HasSubstr(
      "podvisor_cri_request_duration_seconds_count{code=\"OK\",method=\"ListPodSandbox\"} 2"));
  EXPECT_THAT(text, HasSubstr("podvisor_vm_start_duration_seconds_count{mode=\"cold\"} 1"));
  EXPECT_THAT(text, HasSubstr("podvisor_vm_start_duration_seconds_bucket{mode=\"cold\",le=\"1.5\"} 1"));
  EXPECT_THAT(text, HasSubstr("podvisor_vm_start_duration_seconds_bucket{mode=\"cold\",le=\"1\"} 0"));
  EXPECT_THAT(text, HasSubstr("podvisor_agent_reconnects_total 1"));
  EXPECT_THAT(text, HasSubstr("podvisor_agent_heartbeat_losses_total 1"));
  EXPECT_THAT(text, HasSubstr("podvisor_image_pull_bytes_total 1000"));
  EXPECT_THAT(text, HasSubstr("podvisor_image_pulls_total{result=\"success\"} 1"));
  EXPECT_THAT(text, HasSubstr("podvisor_image_pulls_total{result=\"error\"} 1"));
  EXPECT_THAT(text, HasSubstr("podvisor_image_pull_duration_seconds_count 1"));
}

TEST(MetricsTest, StreamingSessionsCountWhileOpen) {
  {
    StreamingSession a("exec");
    StreamingSession b("exec");
    EXPECT_THAT(Text(), HasSubstr("podvisor_streaming_sessions{kind=\"exec\"} 2"));
  }
  const std::string text = Text();
  EXPECT_THAT(text, HasSubstr("podvisor_streaming_sessions{kind=\"exec\"} 0"));
  EXPECT_THAT(text, HasSubstr("podvisor_streaming_sessions_total{kind=\"exec\"} 2"));
  EXPECT_THAT(text, Not(HasSubstr("kind=\"attach\"")));
}

}  // namespace
}  // namespace podvisor::metrics
