#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

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

// A guest that never answers a stats request: the call ends at its deadline with
// DEADLINE_EXCEEDED, as the real client's calls do. Records the deadlines it was given and how
// many calls it held at once (over every instance).
class StalledAgentClient : public FakeAgentClient {
 public:
  StalledAgentClient() : FakeAgentClient(AgentClient::Options{}) {}
  static inline std::atomic<int> in_flight{0};
  static inline std::atomic<int> most_in_flight{0};
  std::atomic<int64_t> last_timeout_ms{-1};

  absl::StatusOr<std::vector<GuestContainerStats>> Stats(const std::vector<std::string>&,
                                                         absl::Duration timeout) override {
    Stall(timeout);
    return absl::DeadlineExceededError("stats: the guest did not answer");
  }
  absl::StatusOr<GuestSandboxStats> SandboxStats(absl::Duration timeout) override {
    Stall(timeout);
    return absl::DeadlineExceededError("sandbox stats: the guest did not answer");
  }

 private:
  void Stall(absl::Duration timeout) {
    last_timeout_ms = absl::ToInt64Milliseconds(timeout);
    const int now = ++in_flight;
    int seen = most_in_flight.load();
    while (now > seen && !most_in_flight.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(timeout));
    --in_flight;
  }
};

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
    Reopen(ContainerControllerOptions{});
    AddSandbox("pod-a", SandboxState::kReady);
  }

  void Reopen(const ContainerControllerOptions& options) {
    containers_ = std::make_unique<ContainerController>(
        options, container_store_.get(), sandbox_store_.get(), view_.get(), &hypervisor_, nullptr);
  }

  // A ready pod whose VM the host can read, with `agent` and one running container `<id>-c`.
  void AddPod(const std::string& id, std::shared_ptr<AgentClient> agent) {
    if (id != "pod-a") AddSandbox(id, SandboxState::kReady);
    view_->host_stats[id] = Sample(1, 1);
    view_->agents[id] = std::move(agent);
    Container c;
    c.metadata.id = id + "-c";
    c.metadata.name = id + "-c";
    c.metadata.sandbox_id = id;
    c.status.state = ContainerState::kRunning;
    ASSERT_TRUE(container_store_->Add(c).ok());
    if (auto* fake = dynamic_cast<FakeAgentClient*>(view_->agents[id].get())) {
      fake->AddRunningContainer(c.metadata.id);
    }
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

// Four stalled guests and one that answers: the list takes about one deadline, not four (the
// agents are asked in parallel), every pod is there, the answering pod with its figures and the
// stalled ones with the host's figures only.
TEST_F(SandboxStatsTest, StalledGuestsCostOneShortDeadlineAndTheOthersAnswer) {
  ContainerControllerOptions options;
  options.stats_agent_timeout = absl::Milliseconds(500);
  Reopen(options);
  AddPod("pod-a", std::make_shared<FakeAgentClient>(AgentClient::Options{}));
  std::vector<std::shared_ptr<StalledAgentClient>> stalled;
  for (const char* id : {"pod-s1", "pod-s2", "pod-s3", "pod-s4"}) {
    stalled.push_back(std::make_shared<StalledAgentClient>());
    AddPod(id, stalled.back());
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<SandboxStatsInfo> all = containers_->ListSandboxStats(SandboxFilter{});
  const auto took = std::chrono::steady_clock::now() - start;
  // Asked one after another, four deadlines of 500 ms would be 2 s.
  EXPECT_LT(took, std::chrono::milliseconds(1500));
  ASSERT_EQ(all.size(), 5u);
  for (const SandboxStatsInfo& info : all) {
    ASSERT_EQ(info.containers.size(), 1u) << info.sandbox.metadata.id;
    ASSERT_TRUE(info.host.vm.has_value()) << info.sandbox.metadata.id;
    if (info.sandbox.metadata.id == "pod-a") {
      ASSERT_TRUE(info.guest.has_value());
      EXPECT_TRUE(info.containers[0].measured);
      EXPECT_EQ(info.containers[0].stats.memory_working_set_bytes, 4096u);
    } else {
      EXPECT_FALSE(info.guest.has_value()) << info.sandbox.metadata.id;
      EXPECT_FALSE(info.containers[0].measured) << info.sandbox.metadata.id;
    }
  }
  for (const auto& agent : stalled) EXPECT_EQ(agent->last_timeout_ms.load(), 500);
}

TEST_F(SandboxStatsTest, ContainerStatsOfAStalledGuestHaveNoFiguresAndTheOthersDo) {
  ContainerControllerOptions options;
  options.stats_agent_timeout = absl::Milliseconds(500);
  Reopen(options);
  AddPod("pod-a", std::make_shared<FakeAgentClient>(AgentClient::Options{}));
  for (const char* id : {"pod-s1", "pod-s2", "pod-s3", "pod-s4"}) {
    AddPod(id, std::make_shared<StalledAgentClient>());
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<ContainerStatsInfo> all = containers_->ListStats(ContainerFilter{});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::milliseconds(1500));
  ASSERT_EQ(all.size(), 5u);
  for (const ContainerStatsInfo& s : all) {
    if (s.container.metadata.id == "pod-a-c") {
      EXPECT_TRUE(s.measured);
      EXPECT_EQ(s.stats.cpu_usage_ns, 1000u);
    } else {
      EXPECT_FALSE(s.measured) << s.container.metadata.id;
      EXPECT_EQ(s.stats.container_id, s.container.metadata.id);
    }
  }
}

// The default deadline is the short stats one, not the 30 s of other agent calls.
TEST_F(SandboxStatsTest, StatsUseTheirOwnShortDeadlineByDefault) {
  auto agent = std::make_shared<StalledAgentClient>();
  AddPod("pod-a", agent);
  ASSERT_EQ(containers_->ListStats(ContainerFilter{}).size(), 1u);
  EXPECT_EQ(agent->last_timeout_ms.load(), 2000);
}

// At most stats_max_parallel agents are asked at once.
TEST_F(SandboxStatsTest, TheFanOutIsBounded) {
  ContainerControllerOptions options;
  options.stats_agent_timeout = absl::Milliseconds(100);
  options.stats_max_parallel = 2;
  Reopen(options);
  view_->host_stats["pod-a"] = Sample(1, 1);
  for (const char* id : {"pod-s1", "pod-s2", "pod-s3", "pod-s4", "pod-s5", "pod-s6"}) {
    AddPod(id, std::make_shared<StalledAgentClient>());
  }
  StalledAgentClient::most_in_flight = 0;
  EXPECT_EQ(containers_->ListSandboxStats(SandboxFilter{}).size(), 7u);
  EXPECT_EQ(StalledAgentClient::most_in_flight.load(), 2);
}

}  // namespace
}  // namespace podvisor
