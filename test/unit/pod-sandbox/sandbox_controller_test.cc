#include "pod-sandbox/sandbox_controller.h"

#include <filesystem>
#include <fstream>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/fakes/fake_agent_client.h"
#include "test/fakes/fake_hypervisor.h"
#include "test/fakes/fake_pod_network.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;
using testing::FakeAgentClient;
using testing::FakeHypervisor;
using testing::FakePodNetworkManager;

class SandboxControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RecordStore::Open(dir_.Join("s.db"));
    ASSERT_TRUE(r.ok());
    records_ = std::move(*r);
    MakeController();
  }

  void MakeController() {
    controller_.reset();
    store_ = std::make_unique<SandboxStore>(records_.get(), "sandbox");
    ASSERT_TRUE(store_->Load().ok());
    SandboxControllerOptions o;
    o.state_dir = dir_.Join("state");
    o.kernel = "/k";
    o.initrd = "/i";
    o.default_vcpus = 1;
    o.default_memory_mib = 256;
    o.boot_timeout = absl::Seconds(5);
    o.agent_dead_after = absl::Seconds(42);
    // A directory shaped like a v1 /sys/fs/cgroup, and a node of 4 GiB.
    o.cgroup_root = dir_.Join("cgroup");
    for (const char* c : {"memory", "cpu", "pids"}) {
      std::filesystem::create_directories(dir_.Join("cgroup/") + c);
    }
    o.node_memory_mib = 4096;
    o.shared_filesystem = shared_filesystem_;
    o.find_template = find_template_;
    controller_ = std::make_unique<SandboxController>(
        o, store_.get(), &hypervisor_, &network_,
        [this](const std::string& socket, AgentClient::Options options)
            -> absl::StatusOr<std::unique_ptr<AgentClient>> {
          dialed_.push_back(socket);
          dialed_dead_after_ = options.dead_after;
          if (!dial_result_.ok()) return dial_result_;
          auto agent = std::make_unique<FakeAgentClient>(std::move(options));
          agent->sandbox_setup_result = setup_result_;
          last_agent_ = agent.get();
          agent_log_ = agent->log;
          return agent;
        });
    controller_->SetReady(absl::OkStatus());
  }

  SandboxConfig Config(const std::string& name = "web") {
    SandboxConfig c;
    c.pod_name = name;
    c.pod_namespace = "default";
    c.pod_uid = "uid-" + name;
    c.hostname = name + "-host";
    c.dns = SandboxDns{{"10.0.0.10"}, {"svc.cluster.local"}, {"ndots:5"}};
    c.labels = {{"app", name}};
    return c;
  }

  testing::TempDir dir_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<SandboxStore> store_;
  FakeHypervisor hypervisor_;
  FakePodNetworkManager network_;
  std::unique_ptr<SandboxController> controller_;
  bool shared_filesystem_ = false;
  std::function<std::optional<VmTemplate>(uint32_t, uint64_t)> find_template_;
  absl::Status dial_result_;
  absl::Status setup_result_;
  std::vector<std::string> dialed_;
  absl::Duration dialed_dead_after_;
  FakeAgentClient* last_agent_ = nullptr;
  std::shared_ptr<FakeAgentClient::Log> agent_log_;
};

TEST_F(SandboxControllerTest, RunBootsVmSetsUpGuestAndIsReady) {
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->size(), 64u);
  EXPECT_TRUE(hypervisor_.Running(*id));
  const VmSpec spec = hypervisor_.LastSpec();
  EXPECT_EQ(spec.kernel, "/k");
  EXPECT_EQ(spec.vcpus, 1u);
  EXPECT_EQ(spec.memory_mib, 256u);
  ASSERT_EQ(spec.nics.size(), 1u);
  EXPECT_EQ(spec.nics[0].netns_path, network_.NetnsPath(*id));
  EXPECT_EQ(dialed_.back(), spec.agent_socket);
  // The heartbeat bound is the configured one (hypervisor.agent_dead_after_ms), not the
  // client's default.
  EXPECT_EQ(dialed_dead_after_, absl::Seconds(42));

  ASSERT_EQ(agent_log_->sandbox_setups.size(), 1u);
  const SandboxSetup& setup = agent_log_->sandbox_setups[0];
  EXPECT_EQ(setup.hostname, "web-host");
  ASSERT_TRUE(setup.dns.has_value());
  EXPECT_THAT(setup.dns->servers, ::testing::ElementsAre("10.0.0.10"));
  EXPECT_GT(setup.wall_time_ns, 0);
  EXPECT_EQ(setup.entropy.size(), 64u);
  ASSERT_EQ(agent_log_->network_setups.size(), 1u);
  EXPECT_THAT(agent_log_->network_setups[0].interfaces[0].addresses,
              ::testing::ElementsAre("10.99.0.2/24"));

  absl::StatusOr<SandboxInfo> info = controller_->Inspect(id->substr(0, 8));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->sandbox.status.state, SandboxState::kReady);
  EXPECT_EQ(info->sandbox.status.ip, "10.99.0.2");
  EXPECT_EQ(info->sandbox.status.agent_version, "fake-agent");
  EXPECT_TRUE(info->agent_connected);
  EXPECT_TRUE(controller_->Agent(*id).ok());
}

TEST_F(SandboxControllerTest, LongPodNameGivesAValidHostname) {
  SandboxConfig c = Config(std::string(70, 'p') + "-tail");
  c.hostname.clear();
  ASSERT_TRUE(controller_->Run(c).ok());
  ASSERT_EQ(agent_log_->sandbox_setups.size(), 1u);
  EXPECT_EQ(agent_log_->sandbox_setups[0].hostname, std::string(63, 'p'));
}

TEST_F(SandboxControllerTest, PodResourcesSizeTheVm) {
  SandboxConfig c = Config();
  c.cpu_quota = 250000;
  c.cpu_period = 100000;
  c.memory_limit_bytes = 512ll << 20;
  ASSERT_TRUE(controller_->Run(c).ok());
  EXPECT_EQ(hypervisor_.LastSpec().vcpus, 3u);
  EXPECT_EQ(hypervisor_.LastSpec().memory_mib, 512u + 128u);
}

TEST_F(SandboxControllerTest, VmRunsInThePodsCgroupWithThePodsLimits) {
  SandboxConfig c = Config();
  c.cgroup_parent = "/kubepods/burstable/poduid-web";
  c.memory_limit_bytes = 512ll << 20;
  c.cpu_quota = 50000;
  c.cpu_period = 100000;
  absl::StatusOr<std::string> id = controller_->Run(c);
  ASSERT_TRUE(id.ok()) << id.status();
  const std::string rel = "/kubepods/burstable/poduid-web/podvisor-" + *id;
  EXPECT_EQ(hypervisor_.LastSpec().cgroup_dirs,
            (std::vector<std::string>{dir_.Join("cgroup/memory") + rel,
                                      dir_.Join("cgroup/cpu") + rel,
                                      dir_.Join("cgroup/pids") + rel}));
  std::ifstream memory(dir_.Join("cgroup/memory") + rel + "/memory.limit_in_bytes");
  uint64_t limit = 0;
  memory >> limit;
  EXPECT_EQ(limit, (512ull + 128 + 256) << 20) << "VM memory plus QEMU's";
  std::ifstream quota(dir_.Join("cgroup/cpu") + rel + "/cpu.cfs_quota_us");
  int64_t q = 0;
  quota >> q;
  EXPECT_EQ(q, 50000);
  EXPECT_EQ(controller_->Inspect(*id)->sandbox.metadata.cgroup_parent, c.cgroup_parent);
}

TEST_F(SandboxControllerTest, UpdateResourcesSetsTheVmsQuotaAndRefusesMoreMemoryThanTheVm) {
  SandboxConfig c = Config();
  c.cgroup_parent = "/kubepods/burstable/poduid-web";
  c.memory_limit_bytes = 512ll << 20;
  c.cpu_quota = 50000;
  c.cpu_period = 100000;
  absl::StatusOr<std::string> id = controller_->Run(c);
  ASSERT_TRUE(id.ok()) << id.status();
  const std::string cpu =
      dir_.Join("cgroup/cpu") + "/kubepods/burstable/poduid-web/podvisor-" + *id;
  ASSERT_TRUE(
      controller_->UpdateResources(*id, {200000, 100000, 256ll << 20, 150000, 200ll << 20}).ok());
  std::ifstream quota(cpu + "/cpu.cfs_quota_us");
  int64_t q = 0;
  quota >> q;
  EXPECT_EQ(q, 200000);
  // The guest's pod cgroup gets the pod's limits too.
  ASSERT_EQ(agent_log_->pod_updates.size(), 1u);
  EXPECT_EQ(agent_log_->pod_updates[0].memory_limit_bytes, 200ll << 20);
  EXPECT_EQ(agent_log_->pod_updates[0].cpu_quota, 150000);
  EXPECT_EQ(agent_log_->pod_updates[0].cpu_period, 100000);

  absl::Status s = controller_->UpdateResources(*id, {0, 0, 1024ll << 20});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("1024 MiB does not fit the pod's VM"));
  EXPECT_EQ(agent_log_->pod_updates.size(), 1u) << "a refused update reached the guest";
  EXPECT_EQ(controller_->UpdateResources("nope", {}).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(controller_->Stop(*id).ok());
  EXPECT_EQ(controller_->UpdateResources(*id, {100000, 100000, 0}).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SandboxControllerTest, NoCgroupParentNoCgroup) {
  ASSERT_TRUE(controller_->Run(Config()).ok());
  EXPECT_TRUE(hypervisor_.LastSpec().cgroup_dirs.empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("cgroup/memory")));
}

TEST_F(SandboxControllerTest, VmLargerThanTheNodeOrABadCgroupParentIsRefused) {
  SandboxConfig c = Config();
  c.memory_limit_bytes = 4096ll << 20;  // + 128 MiB guest + 256 MiB QEMU > 4096 MiB
  absl::StatusOr<std::string> id = controller_->Run(c);
  ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("exceeds the node's 4096 MiB"));
  c.memory_limit_bytes = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(controller_->Run(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.memory_limit_bytes = 0;
  c.cgroup_parent = "/kubepods/../../escape";
  EXPECT_EQ(controller_->Run(c).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(controller_->List({}).empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("cgroup/memory")));
  // A VM that fits is still fine.
  c.cgroup_parent = "";
  c.memory_limit_bytes = 1ll << 30;
  EXPECT_TRUE(controller_->Run(c).ok());
}

// A template of 1 vCPU and 512 MiB; records what it was asked for.
class SandboxCloneTest : public SandboxControllerTest {
 protected:
  void SetUp() override {
    shared_filesystem_ = true;
    find_template_ = [this](uint32_t vcpus, uint64_t memory_mib) -> std::optional<VmTemplate> {
      asked_.push_back({vcpus, memory_mib});
      if (vcpus != 1 || memory_mib > 512) return std::nullopt;
      return VmTemplate{"0123456789abcdef", {1, 512}, "/t/ram", "/t/state", kTemplateMac};
    };
    SandboxControllerTest::SetUp();
  }
  std::vector<VmShape> asked_;
};

TEST_F(SandboxCloneTest, APodThatFitsIsClonedAndBecomesANewMachine) {
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(asked_.size(), 1u);
  EXPECT_EQ(asked_[0].memory_mib, 256u);  // the pod's own size ...
  const VmSpec spec = hypervisor_.LastSpec();
  EXPECT_EQ(spec.memory_mib, 512u);  // ... rounded up to the template's
  EXPECT_EQ(spec.memory_file, "/t/ram");
  EXPECT_EQ(spec.restore_state, "/t/state");
  EXPECT_EQ(spec.shared_fs_transport, SharedFsTransport::k9p);
  EXPECT_FALSE(spec.shared_dir.empty());

  ASSERT_EQ(agent_log_->sandbox_setups.size(), 1u);
  const SandboxSetup& setup = agent_log_->sandbox_setups[0];
  EXPECT_EQ(setup.shared_fs_type, "9p");
  EXPECT_EQ(setup.machine_id.size(), 32u);
  EXPECT_GT(setup.wall_time_ns, 0);
  EXPECT_EQ(setup.entropy.size(), 64u);
  EXPECT_EQ(setup.hostname, "web-host");
  ASSERT_EQ(agent_log_->network_setups.size(), 1u);
  const GuestInterface& nic = agent_log_->network_setups[0].interfaces[0];
  EXPECT_EQ(nic.mac, kTemplateMac);               // what the clone's guest sees
  EXPECT_EQ(nic.set_mac, "0a:58:0a:63:00:02");    // what the pod network wants

  absl::StatusOr<SandboxInfo> info = controller_->Inspect(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->sandbox.metadata.template_key, "0123456789abcdef");
  EXPECT_EQ(info->sandbox.metadata.shared_fs_transport, "9p");
  EXPECT_EQ(info->sandbox.metadata.memory_mib, 512u);
}

TEST_F(SandboxCloneTest, APodLargerThanEveryTemplateBootsCold) {
  SandboxConfig c = Config();
  c.memory_limit_bytes = 1024ll << 20;
  ASSERT_TRUE(controller_->Run(c).ok());
  const VmSpec spec = hypervisor_.LastSpec();
  EXPECT_EQ(spec.memory_mib, 1024u + 128u);
  EXPECT_TRUE(spec.restore_state.empty());
  EXPECT_TRUE(spec.memory_file.empty());
  EXPECT_EQ(spec.shared_fs_transport, SharedFsTransport::kVirtiofs);
  EXPECT_EQ(agent_log_->sandbox_setups[0].shared_fs_type, "virtiofs");
  EXPECT_EQ(agent_log_->sandbox_setups[0].machine_id.size(), 32u);
  EXPECT_TRUE(agent_log_->network_setups[0].interfaces[0].set_mac.empty());
  EXPECT_EQ(agent_log_->network_setups[0].interfaces[0].mac, "0a:58:0a:63:00:02");
}

TEST_F(SandboxCloneTest, APodWhoseCloneFailsBootsColdAndItsRecordSaysSo) {
  hypervisor_.FailNextCreate(absl::InternalError("load of migration failed"));
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(hypervisor_.create_calls(), 2);
  const VmSpec spec = hypervisor_.LastSpec();
  EXPECT_TRUE(spec.restore_state.empty());
  EXPECT_EQ(spec.memory_mib, 256u);  // the pod's own size again
  EXPECT_EQ(spec.shared_fs_transport, SharedFsTransport::kVirtiofs);
  EXPECT_EQ(agent_log_->sandbox_setups.back().shared_fs_type, "virtiofs");
  absl::StatusOr<SandboxInfo> info = controller_->Inspect(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->sandbox.metadata.template_key.empty());
  EXPECT_EQ(info->sandbox.metadata.memory_mib, 256u);
  // Durable: a restarted controller reads the cold record.
  MakeController();
  ASSERT_TRUE(controller_->Inspect(*id).ok());
  EXPECT_TRUE(controller_->Inspect(*id)->sandbox.metadata.template_key.empty());
}

TEST_F(SandboxCloneTest, AFailedColdBootAfterAFailedCloneUndoesEverything) {
  hypervisor_.FailNextCreate(absl::InternalError("load of migration failed"));
  dial_result_ = absl::DeadlineExceededError("no handshake");
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_FALSE(id.ok());
  EXPECT_TRUE(controller_->List({}).empty());
  EXPECT_TRUE(hypervisor_.RunningIds().empty());
  EXPECT_TRUE(network_.live.empty());
}

TEST_F(SandboxControllerTest, DuplicateNameFailsClearly) {
  absl::StatusOr<std::string> first = controller_->Run(Config());
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::string> second = controller_->Run(Config());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("web_default_uid-web_0"));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(*first));
  SandboxConfig next = Config();
  next.attempt = 1;
  EXPECT_TRUE(controller_->Run(next).ok());
}

TEST_F(SandboxControllerTest, FailedBootUndoesEverything) {
  dial_result_ = absl::DeadlineExceededError("no handshake");
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("console log"));
  EXPECT_TRUE(hypervisor_.RunningIds().empty());
  EXPECT_TRUE(network_.live.empty());
  EXPECT_TRUE(controller_->List({}).empty());
  EXPECT_TRUE(!std::filesystem::exists(dir_.Join("state/vm")) ||
              std::filesystem::is_empty(dir_.Join("state/vm")));
  // The name is free again.
  dial_result_ = absl::OkStatus();
  EXPECT_TRUE(controller_->Run(Config()).ok());
}

TEST_F(SandboxControllerTest, FailedGuestSetupUndoesEverything) {
  setup_result_ = absl::InternalError("resolv.conf: read-only");
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("sandbox setup"));
  EXPECT_TRUE(hypervisor_.RunningIds().empty());
  EXPECT_TRUE(network_.live.empty());
  EXPECT_TRUE(controller_->List({}).empty());
  EXPECT_TRUE(agent_log_->closed);
}

TEST_F(SandboxControllerTest, FailedNetworkUndoesEverything) {
  network_.setup_result = absl::InternalError("bridge plugin failed");
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("pod network: bridge plugin failed"));
  EXPECT_TRUE(hypervisor_.RunningIds().empty());
  EXPECT_TRUE(controller_->List({}).empty());
}

TEST_F(SandboxControllerTest, HostNetworkIsRejected) {
  SandboxConfig c = Config();
  c.network_mode = NamespaceMode::kNode;
  absl::StatusOr<std::string> id = controller_->Run(c);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("network"));
  EXPECT_TRUE(hypervisor_.RunningIds().empty());
}

TEST_F(SandboxControllerTest, StopAndRemoveAreIdempotent) {
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(controller_->Stop(*id).ok());
  EXPECT_FALSE(hypervisor_.Running(*id));
  EXPECT_TRUE(network_.torn_down.contains(*id));
  EXPECT_EQ(agent_log_->shutdowns, 1);
  EXPECT_EQ(controller_->Inspect(*id)->sandbox.status.state, SandboxState::kNotReady);
  EXPECT_EQ(controller_->Inspect(*id)->sandbox.status.reason, "");
  EXPECT_TRUE(controller_->Stop(*id).ok());
  EXPECT_FALSE(controller_->Agent(*id).ok());
  ASSERT_TRUE(controller_->Remove(*id).ok());
  EXPECT_FALSE(network_.live.contains(*id));
  EXPECT_TRUE(controller_->List({}).empty());
  EXPECT_TRUE(controller_->Remove(*id).ok());
  EXPECT_TRUE(controller_->Stop("0123456789abcdef").ok());
  EXPECT_TRUE(controller_->Remove("0123456789abcdef").ok());
  EXPECT_EQ(controller_->Inspect(*id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SandboxControllerTest, RemoveOfRunningSandboxStopsItFirst) {
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(controller_->Remove(*id).ok());
  EXPECT_FALSE(hypervisor_.Running(*id));
  EXPECT_TRUE(controller_->List({}).empty());
}

TEST_F(SandboxControllerTest, VmDeathMakesSandboxNotReady) {
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_TRUE(id.ok());
  hypervisor_.SimulateExit(*id, "crashed");
  absl::StatusOr<SandboxInfo> info = controller_->Inspect(*id);
  EXPECT_EQ(info->sandbox.status.state, SandboxState::kNotReady);
  EXPECT_THAT(info->sandbox.status.reason, HasSubstr("crashed"));
  // Stop still cleans up.
  EXPECT_TRUE(controller_->Stop(*id).ok());
}

TEST_F(SandboxControllerTest, AgentLossMakesSandboxNotReady) {
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_TRUE(id.ok());
  last_agent_->SimulateDisconnect(absl::UnavailableError("heartbeat missed"));
  absl::StatusOr<SandboxInfo> info = controller_->Inspect(*id);
  EXPECT_EQ(info->sandbox.status.state, SandboxState::kNotReady);
  EXPECT_THAT(info->sandbox.status.reason, HasSubstr("heartbeat missed"));
}

TEST_F(SandboxControllerTest, ListFilters) {
  absl::StatusOr<std::string> a = controller_->Run(Config("a"));
  absl::StatusOr<std::string> b = controller_->Run(Config("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(controller_->Stop(*b).ok());
  EXPECT_EQ(controller_->List({}).size(), 2u);
  SandboxFilter ready;
  ready.state = SandboxState::kReady;
  EXPECT_EQ(controller_->List(ready).size(), 1u);
  SandboxFilter labelled;
  labelled.label_selector = {{"app", "b"}};
  EXPECT_EQ(controller_->List(labelled).at(0).metadata.id, *b);
  SandboxFilter prefixed;
  prefixed.id_prefix = a->substr(0, 6);
  EXPECT_EQ(controller_->List(prefixed).size(), 1u);
}

TEST_F(SandboxControllerTest, RecoverReattachesAndCleansUp) {
  absl::StatusOr<std::string> alive = controller_->Run(Config("alive"));
  absl::StatusOr<std::string> dead = controller_->Run(Config("dead"));
  ASSERT_TRUE(alive.ok() && dead.ok());
  // A crash in the middle of a run left a record nobody got an id for.
  SandboxMetadata half;
  half.id = NewObjectId();
  half.name = "half";
  half.state_dir = dir_.Join("state/vm/half");
  ASSERT_TRUE(store_->Add({half, SandboxStatus{}}).ok());
  VmSpec half_vm;
  half_vm.id = half.id;
  ASSERT_TRUE(hypervisor_.Create(half_vm).ok());
  // A VM and a pod network no record owns.
  VmSpec orphan_vm;
  orphan_vm.id = "orphan";
  ASSERT_TRUE(hypervisor_.Create(orphan_vm).ok());
  PodNetworkRequest orphan_net;
  orphan_net.sandbox_id = "orphan";
  ASSERT_TRUE(network_.Setup(orphan_net).ok());

  controller_->Detach();  // the daemon goes away; VMs keep running
  hypervisor_.SimulateExitQuietly(*dead);
  MakeController();
  ASSERT_TRUE(controller_->Recover().ok());

  EXPECT_EQ(controller_->Inspect(*alive)->sandbox.status.state, SandboxState::kReady);
  EXPECT_TRUE(controller_->Agent(*alive).ok());
  EXPECT_EQ(controller_->Inspect(*dead)->sandbox.status.state, SandboxState::kNotReady);
  EXPECT_EQ(controller_->Inspect(half.id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(hypervisor_.Running(half.id));
  EXPECT_FALSE(hypervisor_.Running("orphan"));
  EXPECT_FALSE(network_.live.contains("orphan"));
  EXPECT_TRUE(network_.live.contains(*alive));
  EXPECT_TRUE(hypervisor_.Running(*alive));
}

TEST_F(SandboxControllerTest, CallsWaitForReadiness) {
  controller_->SetReady(absl::FailedPreconditionError("no guest kernel at /k"));
  absl::StatusOr<std::string> id = controller_->Run(Config());
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("no guest kernel at /k"));
  EXPECT_FALSE(controller_->ReadyStatus().ok());
}

}  // namespace
}  // namespace podvisor
