// UpdateContainerResources, the OOM killer and PodSandboxStats against a real pod VM (TCG):
// limits reach the container's guest cgroup, a container over its memory limit ends OOMKilled,
// and the pod's stats carry real figures from the host (QEMU, netns) and the guest.

#include "test/integration/pod-sandbox/container_vm_fixture.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;

class ContainerResourcesVmTest : public ContainerVmTest {
 protected:
  grpc::Status Update(const std::string& id, const v1::LinuxContainerResources& r) {
    v1::UpdateContainerResourcesRequest req;
    req.set_container_id(id);
    *req.mutable_linux() = r;
    v1::UpdateContainerResourcesResponse resp;
    return cri_->runtime().UpdateContainerResources(CriClient::Context(120).get(), req, &resp);
  }

  // A file of the container's own cgroup (the container sees its cgroup at /sys/fs/cgroup).
  std::string CgroupFile(const std::string& id, const std::string& file) {
    v1::ExecSyncResponse resp;
    grpc::Status s = Exec(id, {"/bin/busybox", "cat", "/sys/fs/cgroup/" + file}, 60, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.exit_code(), 0) << resp.stderr();
    std::string out = resp.stdout();
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  v1::PodSandboxStats PodStats() {
    v1::PodSandboxStatsRequest req;
    req.set_pod_sandbox_id(pod_);
    v1::PodSandboxStatsResponse resp;
    grpc::Status s = cri_->runtime().PodSandboxStats(CriClient::Context(60).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.stats();
  }
};

TEST_F(ContainerResourcesVmTest, ContainerOverItsMemoryLimitIsOomKilled) {
  v1::ContainerConfig c = Config("hog", {"/bin/busybox", "tail", "/dev/zero"});
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(32 << 20);
  std::string id = Run(c);
  ASSERT_FALSE(id.empty());
  v1::ContainerStatus st = WaitExited(id);
  EXPECT_EQ(st.exit_code(), 137);
  EXPECT_EQ(st.reason(), "OOMKilled");
  EXPECT_EQ(st.resources().linux().memory_limit_in_bytes(), 32 << 20);
}

TEST_F(ContainerResourcesVmTest, UpdateReachesTheGuestCgroupOfARunningContainer) {
  v1::ContainerConfig c = Config("sleeper", {"/bin/busybox", "sleep", "3600"});
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(128 << 20);
  std::string id = Run(c);
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(CgroupFile(id, "memory.max"), std::to_string(128 << 20));

  v1::LinuxContainerResources r;
  r.set_memory_limit_in_bytes(48 << 20);
  r.set_cpu_period(100000);
  r.set_cpu_quota(50000);
  r.set_cpu_shares(512);
  r.set_oom_score_adj(500);
  ASSERT_TRUE(Update(id, r).ok());
  EXPECT_EQ(CgroupFile(id, "memory.max"), std::to_string(48 << 20));
  EXPECT_EQ(CgroupFile(id, "cpu.max"), "50000 100000");
  // The container's main process got the new oom_score_adj.
  v1::ExecSyncResponse adj;
  ASSERT_TRUE(Exec(id, {"/bin/busybox", "cat", "/proc/1/oom_score_adj"}, 60, &adj).ok());
  EXPECT_EQ(adj.stdout(), "500\n");
  // ContainerStatus reports the limits now in force.
  v1::ContainerStatus st = Status(id);
  EXPECT_EQ(st.resources().linux().memory_limit_in_bytes(), 48 << 20);
  EXPECT_EQ(st.resources().linux().cpu_quota(), 50000);
  EXPECT_EQ(st.resources().linux().cpu_shares(), 512);
  EXPECT_EQ(st.resources().linux().oom_score_adj(), 500);

  // A process that outgrows the lowered limit is killed by the guest's OOM killer.
  v1::ExecSyncResponse hog;
  ASSERT_TRUE(Exec(id, {"/bin/busybox", "tail", "/dev/zero"}, 300, &hog).ok());
  EXPECT_EQ(hog.exit_code(), 137);
  EXPECT_THAT(CgroupFile(id, "memory.events"), HasSubstr("oom_kill 1"));

  // Values no cgroup takes are refused before the guest is asked.
  v1::LinuxContainerResources bad;
  bad.set_memory_limit_in_bytes(-5);
  EXPECT_EQ(Update(id, bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad.set_memory_limit_in_bytes(0);
  bad.set_cpu_shares(1 << 30);
  EXPECT_EQ(Update(id, bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(Stop(id, 0).ok());
  WaitExited(id);
  grpc::Status exited = Update(id, r);
  EXPECT_EQ(exited.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(exited.error_message(), HasSubstr("exited"));
  EXPECT_EQ(Update("no-such-container", r).error_code(), grpc::StatusCode::NOT_FOUND);
}

// UpdatePodSandboxResources holds the pod's containers together in the guest: a container with
// no limit of its own cannot take more than the pod's memory limit, and the limit can be lifted.
TEST_F(ContainerResourcesVmTest, PodMemoryLimitHoldsContainersWithoutTheirOwn) {
  std::string id = Run(Config("free", {"/bin/busybox", "sleep", "3600"}));
  ASSERT_FALSE(id.empty());
  // 64 MiB in one buffer, written: fits the VM, not a 32 MiB pod.
  const std::vector<std::string> grab = {"/bin/busybox", "dd",     "if=/dev/zero",
                                         "of=/dev/null", "bs=64M", "count=1"};
  auto update_pod = [&](int64_t memory) {
    v1::UpdatePodSandboxResourcesRequest req;
    req.set_pod_sandbox_id(pod_);
    req.mutable_resources()->set_memory_limit_in_bytes(memory);
    v1::UpdatePodSandboxResourcesResponse resp;
    return cri_->runtime().UpdatePodSandboxResources(CriClient::Context(120).get(), req, &resp);
  };
  v1::ExecSyncResponse before;
  ASSERT_TRUE(Exec(id, grab, 300, &before).ok());
  EXPECT_EQ(before.exit_code(), 0) << before.stderr();

  grpc::Status s = update_pod(32 << 20);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  v1::ExecSyncResponse limited;
  ASSERT_TRUE(Exec(id, grab, 300, &limited).ok());
  EXPECT_EQ(limited.exit_code(), 137) << "the pod's limit did not hold: " << limited.stderr();

  s = update_pod(0);  // no limit
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::ExecSyncResponse lifted;
  ASSERT_TRUE(Exec(id, grab, 300, &lifted).ok());
  EXPECT_EQ(lifted.exit_code(), 0) << lifted.stderr();
}

TEST_F(ContainerResourcesVmTest, CreatedContainerStartsWithTheUpdatedLimits) {
  v1::ContainerConfig c = Config("later", {"/bin/busybox", "sleep", "3600"});
  c.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(128 << 20);
  std::string id = Create(c);
  ASSERT_FALSE(id.empty());
  v1::LinuxContainerResources r;
  r.set_memory_limit_in_bytes(40 << 20);
  ASSERT_TRUE(Update(id, r).ok());
  ASSERT_TRUE(Start(id).ok());
  EXPECT_EQ(CgroupFile(id, "memory.max"), std::to_string(40 << 20));
  EXPECT_EQ(Status(id).resources().linux().memory_limit_in_bytes(), 40 << 20);
}

TEST_F(ContainerResourcesVmTest, PodStatsCarryTheVmCostNetworkProcessesAndContainers) {
  std::string server = Run(Config("web", {"/bin/busybox", "sh", "-c",
                                          "mkdir -p /www && echo stats-pod > /www/index.html && "
                                          "exec /bin/busybox httpd -f -p 8080 -h /www"}));
  ASSERT_FALSE(server.empty());
  v1::PodSandboxStatusRequest sreq;
  sreq.set_pod_sandbox_id(pod_);
  v1::PodSandboxStatusResponse status;
  ASSERT_TRUE(cri_->runtime().PodSandboxStatus(CriClient::Context().get(), sreq, &status).ok());
  ASSERT_THAT(HttpGet(status.status().network().ip(), 8080, 60), HasSubstr("stats-pod"));

  v1::PodSandboxStats first = PodStats();
  EXPECT_EQ(first.attributes().id(), pod_);
  EXPECT_EQ(first.attributes().metadata().name(), "pod");
  EXPECT_EQ(first.attributes().metadata().uid(), "uid-pod");
  const v1::LinuxPodSandboxStats& l = first.linux();
  EXPECT_GT(l.cpu().usage_core_nano_seconds().value(), 0u);
  EXPECT_GT(l.memory().working_set_bytes().value(), 16u << 20);  // a booted VM's RSS
  EXPECT_GT(l.memory().available_bytes().value(), 0u);
  EXPECT_EQ(l.network().default_interface().name(), "eth0");
  EXPECT_GT(l.network().default_interface().rx_bytes().value(), 0u);
  EXPECT_GT(l.network().default_interface().tx_bytes().value(), 0u);
  EXPECT_GE(l.process().process_count().value(), 2u);  // the agent and httpd at least
  ASSERT_EQ(l.containers_size(), 1);
  EXPECT_EQ(l.containers(0).attributes().id(), server);
  EXPECT_GT(l.containers(0).memory().working_set_bytes().value(), 0u);

  // A second sample has a CPU rate, and the VM's CPU time only grows.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  v1::PodSandboxStats second = PodStats();
  EXPECT_GE(second.linux().cpu().usage_core_nano_seconds().value(),
            l.cpu().usage_core_nano_seconds().value());
  EXPECT_TRUE(second.linux().cpu().has_usage_nano_cores());

  // The list filters by id and labels; a stopped pod has no stats.
  v1::ListPodSandboxStatsRequest list;
  list.mutable_filter()->set_id(pod_);
  v1::ListPodSandboxStatsResponse listed;
  ASSERT_TRUE(
      cri_->runtime().ListPodSandboxStats(CriClient::Context(60).get(), list, &listed).ok());
  ASSERT_EQ(listed.stats_size(), 1);
  (*list.mutable_filter()->mutable_label_selector())["app"] = "none";
  listed.Clear();
  ASSERT_TRUE(
      cri_->runtime().ListPodSandboxStats(CriClient::Context(60).get(), list, &listed).ok());
  EXPECT_EQ(listed.stats_size(), 0);

  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod_);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped).ok());
  v1::PodSandboxStatsRequest req;
  req.set_pod_sandbox_id(pod_);
  v1::PodSandboxStatsResponse resp;
  EXPECT_EQ(cri_->runtime().PodSandboxStats(CriClient::Context(60).get(), req, &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  list.mutable_filter()->clear_label_selector();
  listed.Clear();
  ASSERT_TRUE(
      cri_->runtime().ListPodSandboxStats(CriClient::Context(60).get(), list, &listed).ok());
  EXPECT_EQ(listed.stats_size(), 0);
}

}  // namespace
}  // namespace podvisor::testing
