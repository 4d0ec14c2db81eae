#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pod-sandbox/container_controller.h"
#include "test/fakes/fake_agent_client.h"
#include "test/fakes/fake_hypervisor.h"
#include "test/fakes/fake_sandbox_view.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using testing::FakeAgentClient;
using testing::FakeHypervisor;
using testing::FakeSandboxView;
using ::testing::HasSubstr;

// The container side against a fake view of the sandboxes: no VM, no sandbox controller.
class SandboxStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RecordStore::Open(dir_.Join("s.db"));
    ASSERT_TRUE(r.ok());
    records_ = std::move(*r);
    sandbox_store_ = std::make_unique<SandboxStore>(records_.get(), "sandbox");
    container_store_ = std::make_unique<ContainerStore>(records_.get(), "container");
    view_ = std::make_unique<FakeSandboxView>(sandbox_store_.get());
    containers_ = std::make_unique<ContainerController>(
        ContainerControllerOptions{}, container_store_.get(), sandbox_store_.get(), view_.get(),
        &hypervisor_, nullptr);
    AddSandbox("pod-a", SandboxState::kReady);
  }

  void AddSandbox(const std::string& id, SandboxState state) {
    Sandbox s;
    s.metadata.id = id;
    s.metadata.name = id;
    s.status.state = state;
    ASSERT_TRUE(sandbox_store_->Add(s).ok());
  }

  static VmHostStats Sample(int64_t at_ns, uint64_t cpu_ns) {
    VmHostStats h;
    h.timestamp_ns = at_ns;
    h.vm = ProcessCost{};
    h.vm->cpu_ns = cpu_ns;
    return h;
  }

  ::podvisor::testing::TempDir dir_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<SandboxStore> sandbox_store_;
  std::unique_ptr<ContainerStore> container_store_;
  std::unique_ptr<FakeSandboxView> view_;
  FakeHypervisor hypervisor_;
  std::unique_ptr<ContainerController> containers_;
};

TEST_F(SandboxStatsTest, InstallRegistersTheHooksWithTheView) {
  containers_->Install();
  EXPECT_TRUE(view_->hooks.on_agent_event);
  EXPECT_TRUE(view_->hooks.on_stopped);
  EXPECT_TRUE(view_->hooks.before_remove);
}

// The VM's CPU use is the difference between this daemon's samples: none for the first one.
TEST_F(SandboxStatsTest, VmCpuIsMeasuredBetweenSamples) {
  view_->host_stats["pod-a"] = Sample(1'000'000'000, 1'000'000'000);
  absl::StatusOr<SandboxStatsInfo> first = containers_->SandboxStats("pod-a");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->vm_nano_cores.has_value());
  EXPECT_FALSE(first->guest.has_value()) << "no agent: no guest figures";
  view_->host_stats["pod-a"] = Sample(2'000'000'000, 1'500'000'000);
  absl::StatusOr<SandboxStatsInfo> second = containers_->SandboxStats("pod");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->vm_nano_cores, std::optional<uint64_t>(500'000'000));
}

TEST_F(SandboxStatsTest, GuestFiguresComeFromTheAgent) {
  view_->host_stats["pod-a"] = Sample(1, 1);
  view_->agents["pod-a"] = std::make_shared<FakeAgentClient>(AgentClient::Options{});
  absl::StatusOr<SandboxStatsInfo> info = containers_->SandboxStats("pod-a");
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->guest.has_value());
  EXPECT_EQ(info->guest->process_count, 3u);
}

TEST_F(SandboxStatsTest, SandboxesWithoutStatsAreUnavailableOrLeftOut) {
  AddSandbox("pod-b", SandboxState::kNotReady);
  AddSandbox("pod-c", SandboxState::kReady);  // ready, but its VM cannot be read
  view_->host_stats["pod-a"] = Sample(1, 1);
  EXPECT_EQ(containers_->SandboxStats("pod-b").status().code(), absl::StatusCode::kUnavailable);
  absl::Status c = containers_->SandboxStats("pod-c").status();
  EXPECT_EQ(c.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(c.message(), HasSubstr("not ready"));
  EXPECT_EQ(containers_->SandboxStats("pod-x").status().code(), absl::StatusCode::kNotFound);
  std::vector<SandboxStatsInfo> all = containers_->ListSandboxStats(SandboxFilter{});
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].sandbox.metadata.id, "pod-a");
}

}  // namespace
}  // namespace podvisor
