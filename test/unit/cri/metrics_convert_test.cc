// CRI-provided metrics: cAdvisor's names, label values that match the descriptors.
#include "cri/metrics_convert.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

using ::testing::ElementsAre;

SandboxStatsInfo Info() {
  SandboxStatsInfo info;
  info.sandbox.metadata.id = "pod1";
  info.sandbox.metadata.pod_name = "web";
  info.host.timestamp_ns = 5'000'000'000;
  ProcessCost vm;
  vm.cpu_ns = 7'500'000'000;
  vm.rss_bytes = 300 << 20;
  vm.anon_bytes = 200 << 20;
  vm.shmem_bytes = 50 << 20;
  info.host.vm = vm;
  info.host.interfaces = {{"eth0", 1000, 1, 2000, 2}};
  ContainerStatsInfo c;
  c.container.metadata.id = "c1";
  c.container.metadata.config.name = "app";
  c.container.metadata.image_ref = "docker.io/library/nginx@sha256:ab";
  c.stats.timestamp_ns = 6'000'000'000;
  c.stats.cpu_usage_ns = 3'200'000'000;
  c.stats.memory_working_set_bytes = 10 << 20;
  c.stats.memory_usage_bytes = 12 << 20;
  c.stats.memory_rss_bytes = 8 << 20;
  c.stats.rootfs_used_bytes = 4096;
  c.stats.pids = 3;
  info.containers.push_back(c);
  return info;
}

TEST(MetricsConvertTest, DescriptorsHaveCadvisorNamesAndLabels) {
  runtime::v1::ListMetricDescriptorsResponse d;
  AllMetricDescriptors(&d);
  std::map<std::string, std::vector<std::string>> keys;
  for (const auto& m : d.descriptors()) {
    EXPECT_FALSE(m.help().empty()) << m.name();
    keys[m.name()] = {m.label_keys().begin(), m.label_keys().end()};
  }
  EXPECT_THAT(keys["container_cpu_usage_seconds_total"], ElementsAre("id", "name", "image"));
  EXPECT_THAT(keys["container_memory_working_set_bytes"], ElementsAre("id", "name", "image"));
  EXPECT_THAT(keys["container_network_receive_bytes_total"],
              ElementsAre("id", "name", "image", "interface"));
}

TEST(MetricsConvertTest, PodAndContainerFiguresUnderTheirNames) {
  runtime::v1::ListMetricDescriptorsResponse d;
  AllMetricDescriptors(&d);
  std::map<std::string, int> label_count;
  for (const auto& m : d.descriptors()) label_count[m.name()] = m.label_keys_size();

  runtime::v1::PodSandboxMetrics out;
  ToMetrics(Info(), &out);
  EXPECT_EQ(out.pod_sandbox_id(), "pod1");
  std::map<std::string, const runtime::v1::Metric*> pod;
  for (const auto& m : out.metrics()) {
    ASSERT_TRUE(label_count.contains(m.name())) << m.name();
    EXPECT_EQ(m.label_values_size(), label_count[m.name()]) << m.name();
    pod[m.name()] = &m;
  }
  ASSERT_TRUE(pod.contains("container_cpu_usage_seconds_total"));
  EXPECT_EQ(pod["container_cpu_usage_seconds_total"]->value().value(), 7u);
  EXPECT_EQ(pod["container_cpu_usage_seconds_total"]->metric_type(), runtime::v1::COUNTER);
  EXPECT_EQ(pod["container_memory_working_set_bytes"]->value().value(), 300u << 20);
  EXPECT_EQ(pod["container_memory_working_set_bytes"]->metric_type(), runtime::v1::GAUGE);
  EXPECT_THAT(pod["container_network_transmit_bytes_total"]->label_values(),
              ElementsAre("pod1", "web", "", "eth0"));
  EXPECT_EQ(pod["container_network_transmit_bytes_total"]->value().value(), 2000u);

  ASSERT_EQ(out.container_metrics_size(), 1);
  const runtime::v1::ContainerMetrics& cm = out.container_metrics(0);
  EXPECT_EQ(cm.container_id(), "c1");
  std::map<std::string, const runtime::v1::Metric*> c;
  for (const auto& m : cm.metrics()) {
    EXPECT_EQ(m.label_values_size(), label_count[m.name()]) << m.name();
    EXPECT_EQ(m.timestamp(), 6'000'000'000);
    c[m.name()] = &m;
  }
  EXPECT_THAT(c["container_cpu_usage_seconds_total"]->label_values(),
              ElementsAre("c1", "app", "docker.io/library/nginx@sha256:ab"));
  EXPECT_EQ(c["container_cpu_usage_seconds_total"]->value().value(), 3u);
  EXPECT_EQ(c["container_memory_working_set_bytes"]->value().value(), 10u << 20);
  EXPECT_EQ(c["container_memory_rss"]->value().value(), 8u << 20);
  EXPECT_EQ(c["container_fs_usage_bytes"]->value().value(), 4096u);
  EXPECT_EQ(c["container_processes"]->value().value(), 3u);
}

}  // namespace
}  // namespace podvisor::cri
