// The CRI form of pod stats and container resources: which domain figure lands in which field.

#include "cri/container_convert.h"
#include "cri/sandbox_convert.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

TEST(StatsConvertTest, PodStatsCarryTheVmCostGuestNetworkAndContainers) {
  SandboxStatsInfo info;
  info.sandbox.metadata.id = "pod1";
  info.sandbox.metadata.pod_name = "web";
  info.sandbox.metadata.pod_namespace = "ns";
  info.sandbox.metadata.pod_uid = "uid";
  info.sandbox.metadata.attempt = 2;
  info.sandbox.metadata.labels = {{"app", "web"}};
  info.host.timestamp_ns = 77;
  info.host.vm = ProcessCost{3000000000, 200 << 20, 150 << 20, 10 << 20, 10, 1};
  info.host.default_interface = "eth0";
  info.host.interfaces = {{"eth0", 1000, 1, 2000, 2}};
  info.vm_nano_cores = 250000000;
  GuestSandboxStats guest;
  guest.timestamp_ns = 78;
  guest.memory_available_bytes = 100 << 20;
  guest.process_count = 4;
  info.guest = guest;
  ContainerStatsInfo c;
  c.container.metadata.id = "c1";
  c.stats.memory_working_set_bytes = 4096;
  c.measured = true;
  info.containers.push_back(c);
  ContainerStatsInfo unmeasured;  // its guest did not answer in time
  unmeasured.container.metadata.id = "c2";
  info.containers.push_back(unmeasured);

  runtime::v1::PodSandboxStats out;
  ToProto(info, &out);
  EXPECT_EQ(out.attributes().id(), "pod1");
  EXPECT_EQ(out.attributes().metadata().name(), "web");
  EXPECT_EQ(out.attributes().metadata().attempt(), 2u);
  EXPECT_EQ(out.attributes().labels().at("app"), "web");
  const runtime::v1::LinuxPodSandboxStats& l = out.linux();
  EXPECT_EQ(l.cpu().usage_core_nano_seconds().value(), 3000000000u);
  EXPECT_EQ(l.cpu().usage_nano_cores().value(), 250000000u);
  EXPECT_EQ(l.memory().working_set_bytes().value(), 200u << 20);
  EXPECT_EQ(l.memory().rss_bytes().value(), 160u << 20);  // anon + shmem
  EXPECT_EQ(l.memory().available_bytes().value(), 100u << 20);
  EXPECT_EQ(l.network().default_interface().name(), "eth0");
  EXPECT_EQ(l.network().default_interface().rx_bytes().value(), 1000u);
  EXPECT_EQ(l.network().default_interface().tx_errors().value(), 2u);
  EXPECT_EQ(l.process().process_count().value(), 4u);
  ASSERT_EQ(l.containers_size(), 2);
  EXPECT_EQ(l.containers(0).attributes().id(), "c1");
  EXPECT_EQ(l.containers(0).memory().working_set_bytes().value(), 4096u);
  // No figures is not zero figures: the container is listed with its attributes only.
  EXPECT_EQ(l.containers(1).attributes().id(), "c2");
  EXPECT_FALSE(l.containers(1).has_cpu());
  EXPECT_FALSE(l.containers(1).has_memory());
  EXPECT_FALSE(l.containers(1).has_writable_layer());
}

TEST(StatsConvertTest, FiguresThatCouldNotBeReadAreLeftOut) {
  SandboxStatsInfo info;
  info.sandbox.metadata.id = "pod1";
  runtime::v1::PodSandboxStats out;
  ToProto(info, &out);
  EXPECT_FALSE(out.linux().has_cpu());
  EXPECT_FALSE(out.linux().has_memory());
  EXPECT_FALSE(out.linux().has_network());
  EXPECT_FALSE(out.linux().has_process());
}

TEST(StatsConvertTest, ResourcesRoundTrip) {
  runtime::v1::LinuxContainerResources in;
  in.set_cpu_period(100000);
  in.set_cpu_quota(50000);
  in.set_cpu_shares(512);
  in.set_memory_limit_in_bytes(64 << 20);
  in.set_memory_swap_limit_in_bytes(128 << 20);
  in.set_oom_score_adj(-997);
  in.set_cpuset_cpus("0");
  runtime::v1::HugepageLimit* h = in.add_hugepage_limits();
  h->set_page_size("2MB");
  h->set_limit(4 << 20);
  (*in.mutable_unified())["memory.high"] = "50000000";
  ContainerLimits l = FromProto(in);
  EXPECT_EQ(l.oom_score_adj, -997);
  EXPECT_EQ(l.hugepage_limits.at("2MB"), 4u << 20);
  runtime::v1::LinuxContainerResources back;
  ToProto(l, &back);
  EXPECT_EQ(back.SerializeAsString(), in.SerializeAsString());
}

TEST(StatsConvertTest, PodStatsFilter) {
  runtime::v1::PodSandboxStatsFilter f;
  f.set_id("abc");
  (*f.mutable_label_selector())["app"] = "web";
  SandboxFilter out = FromProto(f);
  EXPECT_EQ(out.id_prefix, "abc");
  EXPECT_EQ(out.label_selector.at("app"), "web");
  EXPECT_FALSE(out.state.has_value());
}

}  // namespace
}  // namespace podvisor::cri
