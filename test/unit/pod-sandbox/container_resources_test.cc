// ContainerController resources and stats: UpdateContainerResources, limits, pod sandbox stats
// (container_update.cc, container_stats.cc).

#include "test/unit/pod-sandbox/container_controller_fixture.h"

namespace podvisor {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using testing::FakeAgentClient;
using testing::FakeHypervisor;
using testing::FakeImageController;
using testing::FakePodNetworkManager;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

TEST_F(ContainerControllerTest, UpdateResourcesReachesTheAgentAndTheRecord) {
  ContainerConfig c = Config();
  c.resources.memory_limit_bytes = 128 << 20;
  c.resources.cpu_shares = 1024;
  std::string id = CreateAndStart(c);
  ContainerLimits update;
  update.memory_limit_bytes = 48 << 20;
  update.cpu_quota = 50000;
  update.cpu_period = 100000;
  update.oom_score_adj = -500;
  update.unified = {{"memory.high", "40000000"}};
  ASSERT_TRUE(containers_->UpdateResources(id.substr(0, 8), update).ok());
  ASSERT_EQ(log_->resource_updates.size(), 1u);
  const ContainerResources& sent = log_->resource_updates[0].second;
  EXPECT_EQ(log_->resource_updates[0].first, id);
  EXPECT_EQ(sent.memory_limit_bytes, 48 << 20);
  EXPECT_EQ(sent.cpu_quota, 50000);
  EXPECT_EQ(sent.cpu_shares, 0u);  // not part of the update: unchanged in the guest
  EXPECT_EQ(sent.oom_score_adj, std::optional<int32_t>(-500));
  EXPECT_EQ(sent.unified.at("memory.high"), "40000000");
  // The record has the merged limits (ContainerStatus.resources).
  absl::StatusOr<Container> got = containers_->Inspect(id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status.resources.memory_limit_bytes, 48 << 20);
  EXPECT_EQ(got->status.resources.cpu_shares, 1024);
  EXPECT_EQ(got->status.resources.cpu_quota, 50000);
  EXPECT_EQ(got->status.resources.oom_score_adj, -500);
}

TEST_F(ContainerControllerTest, UpdateResourcesOfACreatedContainerIsKept) {
  ContainerConfig c = Config();
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, c);
  ASSERT_TRUE(id.ok());
  ContainerLimits update;
  update.memory_limit_bytes = 40 << 20;
  ASSERT_TRUE(containers_->UpdateResources(*id, update).ok());
  ASSERT_TRUE(containers_->Start(*id).ok());
  EXPECT_EQ(containers_->Inspect(*id)->status.resources.memory_limit_bytes, 40 << 20);
}

TEST_F(ContainerControllerTest, UpdateResourcesValidates) {
  std::string id = CreateAndStart(Config());
  ContainerLimits update;
  EXPECT_TRUE(absl::IsNotFound(containers_->UpdateResources("nope", update)));
  for (auto bad : std::vector<std::function<void(ContainerLimits&)>>{
           [](ContainerLimits& l) { l.memory_limit_bytes = -5; },
           [](ContainerLimits& l) { l.memory_limit_bytes = 1024; },
           [](ContainerLimits& l) { l.cpu_shares = 1 << 30; },
           [](ContainerLimits& l) { l.cpu_quota = -7; },
           [](ContainerLimits& l) { l.cpu_period = 10; },
           [](ContainerLimits& l) { l.oom_score_adj = 1001; },
           [](ContainerLimits& l) { l.cpuset_cpus = "0;rm"; },
           [](ContainerLimits& l) {
             l.hugepage_limits = {{"huge", 1}};
           },
           [](ContainerLimits& l) {
             l.unified = {{"../../memory.max", "1"}};
           },
           [](ContainerLimits& l) {
             l.memory_limit_bytes = 64 << 20;
             l.memory_swap_limit_bytes = 32 << 20;
           }}) {
    ContainerLimits l;
    bad(l);
    absl::Status s = containers_->UpdateResources(id, l);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  }
  EXPECT_TRUE(log_->resource_updates.empty());
  // -1 means unlimited.
  update.memory_limit_bytes = -1;
  update.cpu_quota = -1;
  EXPECT_TRUE(containers_->UpdateResources(id, update).ok());

  ASSERT_TRUE(containers_->Stop(id, absl::ZeroDuration()).ok());
  absl::Status exited = containers_->UpdateResources(id, update);
  EXPECT_TRUE(absl::IsFailedPrecondition(exited)) << exited;
  EXPECT_THAT(exited.message(), HasSubstr("exited"));
}

TEST_F(ContainerControllerTest, UpdateResourcesGuestRefusalIsNotRecorded) {
  std::string id = CreateAndStart(Config());
  agent_->update_result = absl::InvalidArgumentError("crun update: write cpuset.cpus");
  ContainerLimits update;
  update.cpuset_cpus = "7";
  absl::Status s = containers_->UpdateResources(id, update);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_EQ(containers_->Inspect(id)->status.resources.cpuset_cpus, "");
}

TEST_F(ContainerControllerTest, CreateRefusesAbsurdLimits) {
  ContainerConfig c = Config();
  c.resources.memory_limit_bytes = -3;
  EXPECT_TRUE(absl::IsInvalidArgument(containers_->Create(sandbox_id_, c).status()));
}

TEST_F(ContainerControllerTest, SandboxStatsCarryAttributesGuestAndContainers) {
  std::string id = CreateAndStart(Config());
  absl::StatusOr<SandboxStatsInfo> s = containers_->SandboxStats(sandbox_id_.substr(0, 10));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->sandbox.metadata.id, sandbox_id_);
  ASSERT_TRUE(s->guest.has_value());
  EXPECT_EQ(s->guest->process_count, 3u);
  ASSERT_EQ(s->containers.size(), 1u);
  EXPECT_EQ(s->containers[0].container.metadata.id, id);
  EXPECT_EQ(s->containers[0].stats.memory_working_set_bytes, 4096u);
  EXPECT_GT(s->host.timestamp_ns, 0);
  EXPECT_TRUE(absl::IsNotFound(containers_->SandboxStats("nope").status()));
}

TEST_F(ContainerControllerTest, ListSandboxStatsFiltersAndLeavesOutStoppedSandboxes) {
  SandboxConfig other;
  other.pod_name = "db";
  other.pod_namespace = "default";
  other.pod_uid = "uid-2";
  other.labels = {{"app", "db"}};
  absl::StatusOr<std::string> db = sandboxes_->Run(other);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(containers_->ListSandboxStats({}).size(), 2u);
  SandboxFilter by_label;
  by_label.label_selector = {{"app", "db"}};
  std::vector<SandboxStatsInfo> got = containers_->ListSandboxStats(by_label);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sandbox.metadata.id, *db);
  SandboxFilter by_id;
  by_id.id_prefix = sandbox_id_;
  got = containers_->ListSandboxStats(by_id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sandbox.metadata.id, sandbox_id_);

  ASSERT_TRUE(sandboxes_->Stop(*db).ok());
  EXPECT_TRUE(absl::IsUnavailable(containers_->SandboxStats(*db).status()));
  got = containers_->ListSandboxStats({});
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sandbox.metadata.id, sandbox_id_);
}

// A crash inside CreateContainer after the guest created the container and before its record was
// written: the guest container, its own layer disk, its volume snapshot disk and image and its log
// position file belong to no record. The next daemon's recovery releases them all and leaves the
// recorded container alone.

}  // namespace
}  // namespace podvisor
