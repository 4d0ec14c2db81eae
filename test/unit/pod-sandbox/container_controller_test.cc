#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_spec.h"
#include "pod-sandbox/sandbox_controller.h"

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pod-sandbox/container_streaming.h"
#include "test/fakes/fake_agent_client.h"
#include "test/fakes/fake_hypervisor.h"
#include "test/fakes/fake_image_controller.h"
#include "test/fakes/fake_pod_network.h"
#include "test/support/temp_dir.h"

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

const char kLayer0[] =
    "/images/layers/sha256-1111111111111111111111111111111111111111111111111111111111111111.erofs";
const char kLayer1[] =
    "/images/layers/sha256-2222222222222222222222222222222222222222222222222222222222222222.erofs";

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class ContainerControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RecordStore::Open(dir_.Join("s.db"));
    ASSERT_TRUE(r.ok());
    records_ = std::move(*r);
    sandbox_store_ = std::make_unique<SandboxStore>(records_.get(), "sandbox");
    container_store_ = std::make_unique<ContainerStore>(records_.get(), "container");
    SandboxControllerOptions o;
    o.state_dir = dir_.Join("state");
    o.kernel = "/k";
    o.initrd = "/i";
    sandboxes_ = std::make_unique<SandboxController>(
        o, sandbox_store_.get(), &hypervisor_, &network_,
        [this](const std::string&,
               AgentClient::Options options) -> absl::StatusOr<std::unique_ptr<AgentClient>> {
          auto agent = std::make_unique<FakeAgentClient>(std::move(options));
          agent_ = agent.get();
          log_ = agent->log;
          return agent;
        });
    sandboxes_->SetReady(absl::OkStatus());
    ImageMetadata image;
    image.id = "sha256:abcd";
    image.config.entrypoint = {"/bin/sh", "-c"};
    image.config.cmd = {"echo image"};
    image.config.env = {"PATH=/usr/bin:/bin", "FOO=image"};
    image.config.working_dir = "/srv";
    image.config.user = "1000:50";
    image.uid = 1000;
    images_.AddImage("busybox:latest", image, {kLayer0, kLayer1});
    containers_ = std::make_unique<ContainerController>(
        ContainerControllerOptions{}, container_store_.get(), sandbox_store_.get(),
        sandboxes_.get(), &hypervisor_, &images_);
    containers_->Install();
    SandboxConfig sc;
    sc.pod_name = "web";
    sc.pod_namespace = "default";
    sc.pod_uid = "uid-1";
    sc.hostname = "web-host";
    sc.log_directory = dir_.Join("logs");
    auto id = sandboxes_->Run(sc);
    ASSERT_TRUE(id.ok()) << id.status();
    sandbox_id_ = *id;
  }

  ContainerConfig Config(const std::string& name = "app") {
    ContainerConfig c;
    c.name = name;
    c.image = "busybox:latest";
    c.log_path = name + "/0.log";
    c.labels = {{"tier", "front"}};
    return c;
  }

  std::string CreateAndStart(const ContainerConfig& c) {
    absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, c);
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return "";
    absl::Status s = containers_->Start(*id);
    EXPECT_TRUE(s.ok()) << s;
    return *id;
  }

  testing::TempDir dir_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<SandboxStore> sandbox_store_;
  std::unique_ptr<ContainerStore> container_store_;
  FakeHypervisor hypervisor_;
  FakePodNetworkManager network_;
  FakeImageController images_;
  std::unique_ptr<SandboxController> sandboxes_;
  std::unique_ptr<ContainerController> containers_;
  FakeAgentClient* agent_ = nullptr;
  std::shared_ptr<FakeAgentClient::Log> log_;
  std::string sandbox_id_;
};

TEST_F(ContainerControllerTest, CreateAttachesLayersAndBuildsTheSpec) {
  ContainerConfig c = Config();
  c.envs = {{"FOO", "cri"}, {"BAR", "1"}};
  c.args = {"echo hello"};
  c.readonly_rootfs = true;
  c.cap_add = {"NET_ADMIN"};
  c.cap_drop = {"CAP_KILL"};
  c.resources.memory_limit_bytes = 64 << 20;
  c.mounts = {{"/etc/hosts", "/var/lib/kubelet/pods/x/etc-hosts", false},
              {"/dev/termination-log", "/var/lib/kubelet/pods/x/termination", false}};
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, c);
  ASSERT_TRUE(id.ok()) << id.status();

  // Two layer disks, read-only, in the VM and mounted by the agent.
  std::optional<VmSpec> vm = hypervisor_.SpecOf(sandbox_id_);
  ASSERT_TRUE(vm.has_value());
  ASSERT_EQ(vm->disks.size(), 2u);
  EXPECT_TRUE(vm->disks[0].read_only);
  EXPECT_EQ(vm->disks[0].path, kLayer0);
  EXPECT_LE(vm->disks[0].id.size(), 20u);
  EXPECT_NE(vm->disks[0].id, vm->disks[1].id);
  EXPECT_NE(vm->disks[0].index, vm->disks[1].index);
  ASSERT_EQ(log_->disks_attached.size(), 2u);

  ASSERT_EQ(log_->created.size(), 1u);
  EXPECT_EQ(log_->created[0].first, *id);
  const ContainerSpec& spec = log_->created[0].second;
  // Top layer first in lowerdir.
  ASSERT_TRUE(spec.rootfs_mount.has_value());
  EXPECT_EQ(spec.rootfs_mount->type, "overlay");
  EXPECT_THAT(spec.rootfs_mount->options,
              ElementsAre("lowerdir=/run/podvisor-layer-" + vm->disks[1].id +
                          ":/run/podvisor-layer-" + vm->disks[0].id));
  EXPECT_TRUE(spec.readonly_rootfs);
  // Entrypoint from the image, args from CRI; CRI env overrides the image's by key.
  EXPECT_THAT(spec.process.args, ElementsAre("/bin/sh", "-c", "echo hello"));
  EXPECT_THAT(spec.process.env, ElementsAre("PATH=/usr/bin:/bin", "FOO=cri", "BAR=1"));
  EXPECT_EQ(spec.process.cwd, "/srv");
  ASSERT_TRUE(spec.process.user.uid.has_value());
  EXPECT_EQ(*spec.process.user.uid, 1000u);
  EXPECT_EQ(spec.process.user.gid, 50u);
  EXPECT_THAT(spec.process.capabilities, Contains("CAP_NET_ADMIN"));
  EXPECT_THAT(spec.process.capabilities, Not(Contains("CAP_KILL")));
  EXPECT_NE(spec.process.stdout_stream, 0u);
  EXPECT_NE(spec.process.stderr_stream, 0u);
  EXPECT_EQ(spec.resources.memory_limit_bytes, 64 << 20);
  EXPECT_THAT(spec.masked_paths, Contains("/proc/kcore"));
  // termination-log stays in the rootfs; kubelet's hosts maps to the guest's; the pod's hostname
  // is added (no resolv.conf: this pod has no DNS config); read-only like the rootfs.
  ASSERT_EQ(spec.mounts.size(), 2u);
  EXPECT_EQ(spec.mounts[0].destination, "/etc/hosts");
  EXPECT_EQ(spec.mounts[0].source, "/etc/hosts");
  EXPECT_EQ(spec.mounts[1].destination, "/etc/hostname");
  EXPECT_EQ(spec.mounts[1].source, "/etc/hostname");
  EXPECT_THAT(spec.mounts[1].options, Contains("ro"));

  absl::StatusOr<Container> got = containers_->Inspect(id->substr(0, 10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status.state, ContainerState::kCreated);
  EXPECT_EQ(got->metadata.name, "app_web_default_uid-1_0");
  EXPECT_EQ(got->metadata.log_path, dir_.Join("logs/app/0.log"));
  EXPECT_EQ(got->metadata.image_ref, "busybox:latest@sha256:feed");
  EXPECT_TRUE(containers_->ImageInUse("sha256:abcd"));
  EXPECT_TRUE(images_.in_use_ && images_.in_use_("sha256:abcd"));
}

TEST_F(ContainerControllerTest, PodFilesAreMountedByDefault) {
  SandboxConfig sc;
  sc.pod_name = "dns";
  sc.pod_namespace = "default";
  sc.pod_uid = "uid-dns";
  sc.log_directory = dir_.Join("logs-dns");
  sc.dns = SandboxDns{{"10.96.0.10"}, {}, {}};
  absl::StatusOr<std::string> pod = sandboxes_->Run(sc);
  ASSERT_TRUE(pod.ok()) << pod.status();
  ASSERT_TRUE(containers_->Create(*pod, Config()).ok());
  ASSERT_FALSE(log_->created.empty());
  std::vector<std::string> destinations;
  for (const GuestMount& m : log_->created.back().second.mounts) {
    destinations.push_back(m.destination);
    EXPECT_EQ(m.source, m.destination);
    EXPECT_THAT(m.options, Contains("rw"));
  }
  EXPECT_THAT(destinations, ::testing::UnorderedElementsAre("/etc/hosts", "/etc/resolv.conf",
                                                            "/etc/hostname"));
}

TEST_F(ContainerControllerTest, CommandReplacesEntrypointAndImageCmd) {
  ContainerConfig c = Config();
  c.command = {"/bin/true"};
  c.run_as_user = 0;
  c.working_dir = "/tmp";
  ASSERT_TRUE(containers_->Create(sandbox_id_, c).ok());
  const ContainerSpec& spec = log_->created.back().second;
  EXPECT_THAT(spec.process.args, ElementsAre("/bin/true"));
  EXPECT_EQ(spec.process.cwd, "/tmp");
  EXPECT_EQ(*spec.process.user.uid, 0u);
  EXPECT_EQ(spec.process.user.gid, 0u);
}

// As containerd: a group without a user is refused (critest "runtime should return error if
// RunAsGroup is set without RunAsUser"); with a user or a username it is fine.
TEST_F(ContainerControllerTest, RunAsGroupNeedsAUser) {
  ContainerConfig c = Config();
  c.run_as_group = 1002;
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, c);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("run_as_group"));
  EXPECT_TRUE(containers_->List({}).empty());
  c.run_as_username = "www-data";
  EXPECT_TRUE(containers_->Create(sandbox_id_, c).ok());
  c.name = "by-uid";
  c.run_as_username.clear();
  c.run_as_user = 1001;
  EXPECT_TRUE(containers_->Create(sandbox_id_, c).ok());
}

TEST_F(ContainerControllerTest, HostPathVolumesAreRejectedClearly) {
  ContainerConfig c = Config();
  c.mounts = {{"/data", "/srv/data", false}};
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, c);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("/srv/data"));
  // Nothing is left behind: no disk, no record.
  EXPECT_TRUE(hypervisor_.SpecOf(sandbox_id_)->disks.empty());
  EXPECT_TRUE(containers_->List({}).empty());
}

TEST_F(ContainerControllerTest, ReadOnlyHostVolumesBecomeSnapshotDisks) {
  ASSERT_EQ(::system(("mkdir -p " + dir_.Join("vol") + " && echo v > " + dir_.Join("vol/a") +
                      " && echo f > " + dir_.Join("token"))
                         .c_str()),
            0);
  ContainerConfig c = Config();
  c.mounts = {{"/config", dir_.Join("vol"), true}, {"/run/token", dir_.Join("token"), true}};
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, c);
  ASSERT_TRUE(id.ok()) << id.status();
  std::optional<VmSpec> vm = hypervisor_.SpecOf(sandbox_id_);
  ASSERT_EQ(vm->disks.size(), 4u);  // two layers, two volumes
  std::set<uint32_t> indexes;
  for (const VmDisk& d : vm->disks) indexes.insert(d.index);
  EXPECT_EQ(indexes.size(), 4u);
  absl::StatusOr<Container> got = containers_->Inspect(*id);
  ASSERT_EQ(got->metadata.volumes.size(), 2u);
  const VolumeDisk& dir_volume = got->metadata.volumes[0];
  const VolumeDisk& file_volume = got->metadata.volumes[1];
  EXPECT_TRUE(std::filesystem::exists(dir_volume.disk.path));
  const ContainerSpec& spec = log_->created.back().second;
  ASSERT_EQ(spec.mounts.size(), 4u);  // the two volumes, then the pod's hosts and hostname
  EXPECT_EQ(spec.mounts[0].destination, "/config");
  EXPECT_EQ(spec.mounts[0].source, "/run/podvisor-volume-" + dir_volume.disk.serial);
  EXPECT_EQ(spec.mounts[1].source, "/run/podvisor-volume-" + file_volume.disk.serial + "/token");
  EXPECT_THAT(spec.mounts[1].options, Contains("ro"));

  ASSERT_TRUE(containers_->Remove(*id).ok());
  EXPECT_TRUE(hypervisor_.SpecOf(sandbox_id_)->disks.empty());
  EXPECT_FALSE(std::filesystem::exists(dir_volume.disk.path));
}

TEST_F(ContainerControllerTest, DuplicateNameIsRefused) {
  ASSERT_TRUE(containers_->Create(sandbox_id_, Config()).ok());
  absl::StatusOr<std::string> again = containers_->Create(sandbox_id_, Config());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ContainerControllerTest, FailedAgentCreateUndoesDisks) {
  agent_->create_result = absl::InternalError("crun said no");
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, Config());
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("crun said no"));
  EXPECT_TRUE(hypervisor_.SpecOf(sandbox_id_)->disks.empty());
  EXPECT_EQ(log_->disks_detached.size(), 2u);
}

TEST_F(ContainerControllerTest, OutputGoesToTheLogAndExitEventMarksExited) {
  std::string id = CreateAndStart(Config());
  absl::StatusOr<Container> c = containers_->Inspect(id);
  EXPECT_EQ(c->status.state, ContainerState::kRunning);
  EXPECT_GT(c->status.started_at_ns, 0);
  const ContainerSpec& spec = log_->created.back().second;
  agent_->EmitStream(spec.process.stdout_stream, "hello\nwor", false);
  agent_->EmitStream(spec.process.stdout_stream, "ld\n", true);
  agent_->EmitStream(spec.process.stderr_stream, "oops\n", true);
  ExitInfo exit;
  exit.exit_code = 1;
  agent_->SimulateExit(id, "", exit);

  c = containers_->Inspect(id);
  EXPECT_EQ(c->status.state, ContainerState::kExited);
  EXPECT_EQ(c->status.exit_code, 1);
  EXPECT_EQ(c->status.reason, "Error");
  EXPECT_GE(c->status.finished_at_ns, c->status.started_at_ns);
  std::string log = ReadAll(c->metadata.log_path);
  EXPECT_THAT(log,
              ::testing::MatchesRegex("[0-9TZ:.-]+ stdout F hello\n[0-9TZ:.-]+ stdout F world\n"
                                      "[0-9TZ:.-]+ stderr F oops\n"));
}

TEST_F(ContainerControllerTest, ExitCodesAndReasons) {
  std::string ok = CreateAndStart(Config("a"));
  std::string oom = CreateAndStart(Config("b"));
  ExitInfo e0;
  agent_->SimulateExit(ok, "", e0);
  ExitInfo eo;
  eo.exit_code = 137;
  eo.signal = 9;
  eo.oom_killed = true;
  agent_->SimulateExit(oom, "", eo);
  EXPECT_EQ(containers_->Inspect(ok)->status.reason, "Completed");
  EXPECT_EQ(containers_->Inspect(oom)->status.reason, "OOMKilled");
  EXPECT_EQ(containers_->Inspect(oom)->status.exit_code, 137);
}

TEST_F(ContainerControllerTest, EventsFromAnotherSandboxAreIgnored) {
  std::string id = CreateAndStart(Config());
  AgentEvent e;
  e.container_id = id;
  containers_->OnAgentEvent("some-other-sandbox", e);
  EXPECT_EQ(containers_->Inspect(id)->status.state, ContainerState::kRunning);
}

TEST_F(ContainerControllerTest, StopSendsTermThenKill) {
  std::string id = CreateAndStart(Config());
  agent_->ignore_sigterm = true;
  ASSERT_TRUE(containers_->Stop(id, absl::Milliseconds(200)).ok());
  EXPECT_THAT(log_->signals, ElementsAre(std::pair<std::string, int>{id, SIGTERM},
                                         std::pair<std::string, int>{id, SIGKILL}));
  absl::StatusOr<Container> c = containers_->Inspect(id);
  EXPECT_EQ(c->status.state, ContainerState::kExited);
  EXPECT_EQ(c->status.exit_code, 137);
}

TEST_F(ContainerControllerTest, StopUsesTheImagesStopSignal) {
  ImageMetadata image;
  image.id = "sha256:beef";
  image.config.cmd = {"nginx"};
  image.config.stop_signal = "SIGQUIT";
  images_.AddImage("nginx:1", image, {kLayer0});
  ContainerConfig c = Config();
  c.image = "nginx:1";
  std::string id = CreateAndStart(c);
  ASSERT_TRUE(containers_->Stop(id, absl::Seconds(5)).ok());
  EXPECT_THAT(log_->signals, ElementsAre(std::pair<std::string, int>{id, SIGQUIT}));
  EXPECT_EQ(containers_->Inspect(id)->status.exit_code, 128 + SIGQUIT);
}

TEST_F(ContainerControllerTest, TheConfigsStopSignalWinsOverTheImages) {
  ImageMetadata image;
  image.id = "sha256:beef";
  image.config.cmd = {"nginx"};
  image.config.stop_signal = "SIGQUIT";
  images_.AddImage("nginx:1", image, {kLayer0});
  ContainerConfig c = Config();
  c.image = "nginx:1";
  c.stop_signal = SIGUSR1;
  std::string id = CreateAndStart(c);
  EXPECT_EQ(containers_->Inspect(id)->metadata.stop_signal, SIGUSR1);
  ASSERT_TRUE(containers_->Stop(id, absl::Seconds(5)).ok());
  EXPECT_THAT(log_->signals, ElementsAre(std::pair<std::string, int>{id, SIGUSR1}));
}

TEST_F(ContainerControllerTest, StopWithZeroTimeoutKillsAtOnceAndStopIsIdempotent) {
  std::string id = CreateAndStart(Config());
  ASSERT_TRUE(containers_->Stop(id, absl::ZeroDuration()).ok());
  EXPECT_THAT(log_->signals, ElementsAre(std::pair<std::string, int>{id, SIGKILL}));
  ASSERT_TRUE(containers_->Stop(id, absl::Seconds(1)).ok());
  EXPECT_EQ(log_->signals.size(), 1u);
  EXPECT_TRUE(containers_->Stop("unknown", absl::Seconds(1)).ok());
}

TEST_F(ContainerControllerTest, RemoveDetachesLayersOnlyWhenUnused) {
  std::string a = CreateAndStart(Config("a"));
  std::string b = CreateAndStart(Config("b"));
  EXPECT_EQ(hypervisor_.SpecOf(sandbox_id_)->disks.size(), 2u);  // shared by both
  EXPECT_EQ(log_->disks_attached.size(), 2u);
  ASSERT_TRUE(containers_->Remove(a).ok());
  EXPECT_EQ(hypervisor_.SpecOf(sandbox_id_)->disks.size(), 2u);
  ASSERT_TRUE(containers_->Remove(b).ok());
  EXPECT_TRUE(hypervisor_.SpecOf(sandbox_id_)->disks.empty());
  EXPECT_THAT(log_->removed, ElementsAre(a, b));
  EXPECT_TRUE(containers_->List({}).empty());
  EXPECT_FALSE(containers_->ImageInUse("sha256:abcd"));
  EXPECT_TRUE(containers_->Remove(a).ok());  // unknown: fine
}

TEST_F(ContainerControllerTest, ListFilters) {
  std::string a = CreateAndStart(Config("a"));
  ContainerConfig cb = Config("b");
  cb.labels = {{"tier", "back"}};
  std::string b = containers_->Create(sandbox_id_, cb).value();
  ContainerFilter f;
  f.state = ContainerState::kRunning;
  ASSERT_EQ(containers_->List(f).size(), 1u);
  EXPECT_EQ(containers_->List(f)[0].metadata.id, a);
  f = {};
  f.label_selector = {{"tier", "back"}};
  ASSERT_EQ(containers_->List(f).size(), 1u);
  EXPECT_EQ(containers_->List(f)[0].metadata.id, b);
  f = {};
  f.sandbox_id_prefix = sandbox_id_.substr(0, 6);
  EXPECT_EQ(containers_->List(f).size(), 2u);
  f.sandbox_id_prefix = "zzz";
  EXPECT_TRUE(containers_->List(f).empty());
  f = {};
  f.id_prefix = b.substr(0, 12);
  EXPECT_EQ(containers_->List(f).size(), 1u);
}

TEST_F(ContainerControllerTest, ExecSyncReturnsOutputAndExitCode) {
  std::string id = CreateAndStart(Config());
  agent_->exec_stdout = "out";
  agent_->exec_stderr = "err";
  agent_->exec_exit_code = 3;
  absl::StatusOr<ExecSyncResult> r = containers_->ExecSync(id, {"sh", "-c", "x"}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "out");
  EXPECT_EQ(r->stderr_data, "err");
  EXPECT_EQ(r->exit_code, 3);
  ASSERT_EQ(log_->execs.size(), 1u);
  EXPECT_THAT(log_->execs[0].second.env, Contains("FOO=image"));
  EXPECT_EQ(log_->execs[0].second.cwd, "/srv");
}

// An exec'd process is the container's user with the same groups as its first process: critest
// "runtime should support SupplementalGroups" looks at `id -G` through ExecSync.
TEST_F(ContainerControllerTest, ExecRunsWithTheContainersUserAndSupplementalGroups) {
  ContainerConfig config = Config();
  config.run_as_user = 1000;
  config.run_as_group = 3000;
  config.supplemental_groups = {1234, 5678};
  std::string id = CreateAndStart(config);
  ASSERT_TRUE(containers_->ExecSync(id, {"id", "-G"}, absl::Seconds(5)).ok());
  ASSERT_EQ(log_->execs.size(), 1u);
  const GuestUser& user = log_->execs[0].second.user;
  EXPECT_EQ(user.uid, std::optional<uint32_t>(1000));
  EXPECT_EQ(user.gid, 3000u);
  EXPECT_FALSE(user.gid_from_passwd);
  EXPECT_THAT(user.additional_gids, ElementsAre(1234u, 5678u));
}

// A user without a group asked for gets its passwd group (the agent looks it up), in the
// container and in its execs alike.
TEST_F(ContainerControllerTest, AUserWithoutAGroupGetsItsPasswdGroup) {
  ContainerConfig config = Config();
  config.run_as_user = 1000;
  std::string id = CreateAndStart(config);
  EXPECT_TRUE(log_->created.back().second.process.user.gid_from_passwd);
  ASSERT_TRUE(containers_->ExecSync(id, {"id", "-g"}, absl::Seconds(5)).ok());
  EXPECT_TRUE(log_->execs.back().second.user.gid_from_passwd);
}

// An image whose User is "uid:0" names group 0 itself: the container and its execs both run with
// gid 0, not with the passwd group of the uid.
TEST_F(ContainerControllerTest, ExecKeepsTheGroupTheImageNamed) {
  ImageMetadata image;
  image.id = "sha256:root-group";
  image.config.cmd = {"sleep", "1000"};
  image.config.user = "1000:0";
  image.uid = 1000;
  images_.AddImage("root-group:latest", image, {kLayer0});
  ContainerConfig config = Config();
  config.image = "root-group:latest";
  std::string id = CreateAndStart(config);
  const GuestUser& created = log_->created.back().second.process.user;
  EXPECT_EQ(created.uid, std::optional<uint32_t>(1000));
  EXPECT_EQ(created.gid, 0u);
  EXPECT_FALSE(created.gid_from_passwd);
  ASSERT_TRUE(containers_->ExecSync(id, {"id", "-g"}, absl::Seconds(5)).ok());
  const GuestUser& exec = log_->execs.back().second.user;
  EXPECT_EQ(exec.uid, std::optional<uint32_t>(1000));
  EXPECT_EQ(exec.gid, 0u);
  EXPECT_FALSE(exec.gid_from_passwd);
}

TEST_F(ContainerControllerTest, ExecSyncTimesOut) {
  std::string id = CreateAndStart(Config());
  agent_->exec_hangs = true;
  absl::StatusOr<ExecSyncResult> r =
      containers_->ExecSync(id, {"sleep", "100"}, absl::Milliseconds(100));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(log_->signals.back().second, SIGKILL);
}

TEST_F(ContainerControllerTest, ExecSyncNeedsARunningContainer) {
  std::string id = containers_->Create(sandbox_id_, Config()).value();
  EXPECT_EQ(containers_->ExecSync(id, {"true"}, absl::Seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ContainerControllerTest, StatsComeFromTheAgent) {
  std::string id = CreateAndStart(Config());
  absl::StatusOr<ContainerStatsInfo> s = containers_->Stats(id);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->stats.cpu_usage_ns, 1000u);
  EXPECT_EQ(s->stats.memory_working_set_bytes, 4096u);
  EXPECT_EQ(containers_->ListStats({}).size(), 1u);
}

TEST_F(ContainerControllerTest, ReopenLogStartsANewFile) {
  std::string id = CreateAndStart(Config());
  const std::string path = containers_->Inspect(id)->metadata.log_path;
  const ContainerSpec& spec = log_->created.back().second;
  agent_->EmitStream(spec.process.stdout_stream, "one\n", false);
  ASSERT_EQ(::rename(path.c_str(), (path + ".1").c_str()), 0);
  ASSERT_TRUE(containers_->ReopenLog(id).ok());
  agent_->EmitStream(spec.process.stdout_stream, "two\n", false);
  EXPECT_THAT(ReadAll(path + ".1"), HasSubstr("stdout F one"));
  EXPECT_THAT(ReadAll(path), HasSubstr("stdout F two"));
  EXPECT_THAT(ReadAll(path), Not(HasSubstr("one")));
}

TEST_F(ContainerControllerTest, StoppingTheSandboxExitsItsContainersAndRemovingRemovesThem) {
  std::string id = CreateAndStart(Config());
  ASSERT_TRUE(sandboxes_->Stop(sandbox_id_).ok());
  absl::StatusOr<Container> c = containers_->Inspect(id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status.state, ContainerState::kExited);
  ASSERT_TRUE(sandboxes_->Remove(sandbox_id_).ok());
  EXPECT_EQ(containers_->Inspect(id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ContainerControllerTest, RecordsSurviveARestartAndLostSandboxesExitTheirContainers) {
  std::string id = CreateAndStart(Config());
  // The VM vanishes while the daemon is down: a new controller over the same records.
  ASSERT_TRUE(sandbox_store_
                  ->Update(sandbox_id_,
                           [](SandboxStatus& st) {
                             st.state = SandboxState::kNotReady;
                             return absl::OkStatus();
                           })
                  .ok());
  ContainerStore reloaded(records_.get(), "container");
  ASSERT_TRUE(reloaded.Load().ok());
  ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                            sandboxes_.get(), &hypervisor_, &images_);
  ASSERT_TRUE(again.Recover().ok());
  absl::StatusOr<Container> c = again.Inspect(id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status.state, ContainerState::kExited);
  EXPECT_EQ(c->metadata.config.labels.at("tier"), "front");
  EXPECT_EQ(c->metadata.layers.size(), 2u);
}

TEST_F(ContainerControllerTest, ARestartedDaemonTakesTheOutputOverWhereTheLogEnds) {
  ContainerConfig config = Config();
  config.stdin = true;
  std::string id = CreateAndStart(config);
  const ContainerSpec spec = log_->created.back().second;
  EXPECT_TRUE(spec.process.acked_output);
  // A whole line and the start of the next: only the whole line is in the log for good.
  agent_->EmitStream(spec.process.stdout_stream, "one\ntw", false);
  agent_->EmitStream(spec.process.stderr_stream, "err1\n", false);

  // A new daemon over the same records (the VM lives on), as after kill -9.
  ContainerStore reloaded(records_.get(), "container");
  ASSERT_TRUE(reloaded.Load().ok());
  ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                            sandboxes_.get(), &hypervisor_, &images_);
  ASSERT_TRUE(again.Recover().ok());
  std::vector<std::pair<std::string, OutputAttach>> attaches = agent_->attaches();
  ASSERT_EQ(attaches.size(), 1u);
  const OutputAttach& a = attaches[0].second;
  EXPECT_EQ(attaches[0].first, id);
  EXPECT_EQ(a.stdout_offset, 4u);
  EXPECT_EQ(a.stderr_offset, 5u);
  EXPECT_NE(a.stdout_stream, 0u);
  EXPECT_NE(a.stdout_stream, spec.process.stdout_stream);
  EXPECT_NE(a.stdin_stream, 0u);

  // Attach works on the container from before the restart.
  std::string attached;
  absl::StatusOr<uint64_t> handle =
      again.AddOutputConsumer(id, [&](LogStream which, absl::string_view data, bool) {
        if (which == LogStream::kStdout) attached.append(data.data(), data.size());
      });
  ASSERT_TRUE(handle.ok()) << handle.status();

  // The guest replays from offset 4: the cut line comes whole, then what followed.
  agent_->EmitStream(a.stdout_stream, "two\nthree\n", false);
  agent_->EmitStream(a.stderr_stream, "err2\n", false);
  EXPECT_EQ(attached, "two\nthree\n");
  EXPECT_TRUE(again.ReopenLog(id).ok());
  ExitInfo exit;
  agent_->SimulateExit(id, "", exit);
  // The new daemon learns of the exit from its own wait (this fake answers on a thread).
  absl::StatusOr<Container> c;
  for (int i = 0; i < 100; ++i) {
    c = again.Inspect(id);
    if (c.ok() && c->status.state == ContainerState::kExited) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status.state, ContainerState::kExited);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the waiter thread returns
  EXPECT_THAT(ReadAll(c->metadata.log_path),
              ::testing::MatchesRegex("[0-9TZ:.-]+ stdout F one\n[0-9TZ:.-]+ stderr F err1\n"
                                      "[0-9TZ:.-]+ stdout F two\n[0-9TZ:.-]+ stdout F three\n"
                                      "[0-9TZ:.-]+ stderr F err2\n"));
}

// The position file as the daemon leaves it when killed between its record and its log write.
void WriteIntent(const std::string& path, uint64_t before_out, uint64_t after_out, uint64_t inode,
                 uint64_t size_after) {
  const uint64_t v[6] = {before_out, 0, after_out, 0, inode, size_after};
  std::string buf(48, '\0');
  for (size_t k = 0; k < 48; ++k) buf[k] = static_cast<char>(v[k / 8] >> (8 * (k % 8)));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << buf;
}

TEST_F(ContainerControllerTest, ARestartTellsFromTheLogWhetherTheWriteUnderWayHappened) {
  std::string id = CreateAndStart(Config());
  const ContainerSpec spec = log_->created.back().second;
  agent_->EmitStream(spec.process.stdout_stream, "one\n", false);
  absl::StatusOr<Container> c = containers_->Inspect(id);
  ASSERT_TRUE(c.ok());
  const std::string pos =
      sandbox_store_->Get(sandbox_id_)->metadata.state_dir + "/output-" + id + ".pos";
  ASSERT_TRUE(std::filesystem::exists(pos));
  struct stat st;
  ASSERT_EQ(::stat(c->metadata.log_path.c_str(), &st), 0);
  const uint64_t size = static_cast<uint64_t>(st.st_size);

  auto recovered_offset = [&]() -> uint64_t {
    ContainerStore reloaded(records_.get(), "container");
    EXPECT_TRUE(reloaded.Load().ok());
    ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                              sandboxes_.get(), &hypervisor_, &images_);
    EXPECT_TRUE(again.Recover().ok());
    auto attaches = agent_->attaches();
    return attaches.empty() ? ~0ull : attaches.back().second.stdout_offset;
  };
  // Killed after recording "one\n" + "two\n" as under way, before writing it: from 4.
  WriteIntent(pos, 4, 8, st.st_ino, size + 40);
  EXPECT_EQ(recovered_offset(), 4u);
  // Killed after the write, before recording it as done: the file is that long, from 8.
  WriteIntent(pos, 4, 8, st.st_ino, size);
  EXPECT_EQ(recovered_offset(), 8u);
  // The file was rotated meanwhile: not the file of the record; from 4 (a line twice at worst,
  // never one lost).
  WriteIntent(pos, 4, 8, st.st_ino + 1, size);
  EXPECT_EQ(recovered_offset(), 4u);
}

TEST_F(ContainerControllerTest, LoggedOutputIsAcknowledgedToTheGuestInLargeSteps) {
  std::string id = CreateAndStart(Config());
  const ContainerSpec spec = log_->created.back().second;
  const uint32_t out = spec.process.stdout_stream;
  const std::string line = std::string(1023, 'x') + "\n";
  for (int i = 0; i < 255; ++i) agent_->EmitStream(out, line, false);
  EXPECT_FALSE(agent_->acks().contains(out)) << "under 256 KiB: no acknowledgement yet";
  // The start of a line is not in the log yet: not acknowledged.
  agent_->EmitStream(out, line + "abc", false);
  EXPECT_EQ(agent_->acks()[out], 256u * 1024);
}

// Session streams for the streaming runtime tests.
class StringSink : public streaming::ByteSink {
 public:
  bool Write(absl::string_view data) override {
    absl::MutexLock lock(&mu_);
    data_.append(data.data(), data.size());
    return true;
  }
  void Close() override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  std::string data() {
    absl::MutexLock lock(&mu_);
    return data_;
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::string data_;
  bool closed_ = false;
};

class StringSource : public streaming::ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  size_t Read(char* buf, size_t len) override {
    size_t n = std::min(len, data_.size());
    data_.copy(buf, n);
    data_.erase(0, n);
    return n;
  }
  void Cancel() override {}

 private:
  std::string data_;
};

TEST_F(ContainerControllerTest, StreamingExecPumpsOutputAndReturnsTheExitCode) {
  std::string id = CreateAndStart(Config());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  agent_->exec_stdout = "hi\n";
  agent_->exec_stderr = "oops";
  agent_->exec_exit_code = 3;
  StringSink out, err;
  StringSource in("input");
  absl::Notification done;
  streaming::SessionStreams streams{&in, &out, &err, nullptr, &done};
  streaming::ExecRequest request{id.substr(0, 8), {"sh", "-c", "x"}, false, true, true, true};
  absl::StatusOr<int> code = runtime.Exec(request, streams);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 3);
  EXPECT_EQ(out.data(), "hi\n");
  EXPECT_EQ(err.data(), "oops");
  EXPECT_TRUE(out.closed());
  EXPECT_TRUE(err.closed());
  const ProcessSpec& p = log_->execs.back().second;
  EXPECT_EQ(log_->execs.back().first, id);
  EXPECT_THAT(p.args, ElementsAre("sh", "-c", "x"));
  EXPECT_EQ(p.cwd, "/srv");
  EXPECT_NE(p.stdin_stream, 0u);
  EXPECT_FALSE(p.terminal);
}

TEST_F(ContainerControllerTest, StreamingExecKillsTheProcessWhenTheClientLeaves) {
  std::string id = CreateAndStart(Config());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  agent_->exec_hangs = true;
  StringSink out;
  absl::Notification done;
  done.Notify();
  streaming::SessionStreams streams{nullptr, &out, nullptr, nullptr, &done};
  streaming::ExecRequest request{id, {"sleep", "100"}, false, false, true, false};
  absl::StatusOr<int> code = runtime.Exec(request, streams);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGKILL);
  EXPECT_THAT(log_->signals, Contains(std::make_pair(id, SIGKILL)));
  EXPECT_TRUE(out.closed());
}

TEST_F(ContainerControllerTest, StreamingExecNeedsARunningContainer) {
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, Config());
  ASSERT_TRUE(id.ok());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  StringSink out;
  streaming::SessionStreams streams{nullptr, &out, nullptr, nullptr, nullptr};
  streaming::ExecRequest request{*id, {"true"}, false, false, true, false};
  EXPECT_EQ(runtime.Exec(request, streams).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ContainerControllerTest, AttachersSeeTheMainProcessOutputUntilItEnds) {
  ContainerConfig c = Config();
  c.stdin = true;
  std::string id = CreateAndStart(c);
  const ProcessSpec& spec = log_->created.back().second.process;
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  StringSink out[2], err[2];
  absl::Notification done;
  std::vector<std::thread> attachers;
  for (int i = 0; i < 2; ++i) {
    attachers.emplace_back([&, i] {
      streaming::SessionStreams streams{nullptr, &out[i], &err[i], nullptr, &done};
      streaming::AttachRequest request{id, false, false, true, true};
      EXPECT_TRUE(runtime.Attach(request, streams).ok());
    });
  }
  // Output until both attachers have seen some (they register on their own threads).
  while (out[0].data().empty() || out[1].data().empty()) {
    agent_->EmitStream(spec.stdout_stream, "x", false);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  agent_->EmitStream(spec.stderr_stream, "bye", true);
  agent_->EmitStream(spec.stdout_stream, "end", true);
  for (std::thread& t : attachers) t.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(out[i].data(), ::testing::EndsWith("xend"));
    EXPECT_EQ(err[i].data(), "bye");
    EXPECT_TRUE(out[i].closed());
    EXPECT_TRUE(err[i].closed());
  }
  // The log writer still got everything.
  EXPECT_THAT(ReadAll(dir_.Join("logs/app/0.log")), HasSubstr("stderr F bye"));

  // Output that already ended: a late attacher returns at once.
  StringSink late;
  streaming::SessionStreams streams{nullptr, &late, nullptr, nullptr, &done};
  EXPECT_TRUE(runtime.Attach({id, false, false, true, false}, streams).ok());
  EXPECT_TRUE(late.closed());
}

TEST_F(ContainerControllerTest, AttachWithStdinNeedsAContainerCreatedWithStdin) {
  std::string id = CreateAndStart(Config());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  StringSource in("x");
  StringSink out;
  streaming::SessionStreams streams{&in, &out, nullptr, nullptr, nullptr};
  EXPECT_EQ(runtime.Attach({id, false, true, true, false}, streams).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(containers_->WriteStdin(id, "x", false).code(), absl::StatusCode::kFailedPrecondition);
}

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
           [](ContainerLimits& l) { l.hugepage_limits = {{"huge", 1}}; },
           [](ContainerLimits& l) { l.unified = {{"../../memory.max", "1"}}; },
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
TEST_F(ContainerControllerTest, RecoveryReleasesWhatACrashedCreateLeft) {
  const std::string kept = CreateAndStart(Config("kept"));
  ImageMetadata other;
  other.id = "sha256:ef01";
  other.config.cmd = {"/bin/true"};
  const std::string kLayer2 =
      "/images/layers/"
      "sha256-3333333333333333333333333333333333333333333333333333333333333333.erofs";
  images_.AddImage("other:latest", other, {kLayer0, kLayer2});
  ASSERT_EQ(
      ::system(("mkdir -p " + dir_.Join("vol") + " && echo v > " + dir_.Join("vol/a")).c_str()), 0);
  ContainerConfig config = Config("lost");
  config.image = "other:latest";
  config.mounts = {{"/config", dir_.Join("vol"), true}};
  absl::StatusOr<std::string> lost = containers_->Create(sandbox_id_, config);
  ASSERT_TRUE(lost.ok()) << lost.status();
  const Container lost_record = *containers_->Inspect(*lost);
  ASSERT_EQ(lost_record.metadata.volumes.size(), 1u);
  const std::string snapshot = lost_record.metadata.volumes[0].disk.path;
  const std::string position =
      sandbox_store_->Get(sandbox_id_)->metadata.state_dir + "/output-" + *lost + ".pos";
  ASSERT_TRUE(std::filesystem::exists(snapshot));
  ASSERT_TRUE(std::filesystem::exists(position));
  ASSERT_EQ(hypervisor_.SpecOf(sandbox_id_)->disks.size(), 4u);  // 2 + 1 new layer + 1 volume
  // The record never reached the disk.
  ASSERT_TRUE(container_store_->Remove(*lost).ok());

  ContainerStore reloaded(records_.get(), "container");
  ASSERT_TRUE(reloaded.Load().ok());
  ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                            sandboxes_.get(), &hypervisor_, &images_);
  ASSERT_TRUE(again.Recover().ok());

  EXPECT_THAT(log_->removed, ElementsAre(*lost));
  absl::StatusOr<std::vector<GuestContainer>> guest = agent_->ListContainers(absl::Seconds(1));
  ASSERT_TRUE(guest.ok());
  ASSERT_EQ(guest->size(), 1u);
  EXPECT_EQ((*guest)[0].id, kept);
  const std::optional<VmSpec> vm = hypervisor_.SpecOf(sandbox_id_);
  std::vector<std::string> disks;
  for (const VmDisk& d : vm->disks) disks.push_back(d.id);
  const absl::StatusOr<Container> kept_record = again.Inspect(kept);
  ASSERT_TRUE(kept_record.ok());
  std::vector<std::string> kept_disks;
  for (const LayerDisk& d : kept_record->metadata.layers) kept_disks.push_back(d.serial);
  EXPECT_THAT(disks, ::testing::UnorderedElementsAreArray(kept_disks));
  EXPECT_EQ(log_->disks_detached.size(), 2u);  // the lost layer and the lost volume
  EXPECT_FALSE(std::filesystem::exists(snapshot));
  EXPECT_FALSE(std::filesystem::exists(position));
  EXPECT_TRUE(std::filesystem::exists(sandbox_store_->Get(sandbox_id_)->metadata.state_dir +
                                      "/output-" + kept + ".pos"));
  EXPECT_EQ(again.Inspect(kept)->status.state, ContainerState::kRunning);
}

// Shared-directory binds of a container without a record go; the recorded container's and
// anything that is not a container's directory stay.
TEST_F(ContainerControllerTest, ReconcileRemovesSharedDirectoriesNoRecordOwns) {
  const std::string kept = CreateAndStart(Config("kept"));
  Sandbox sandbox = *sandbox_store_->Get(sandbox_id_);
  sandbox.metadata.shared_dir = dir_.Join("shared");
  const std::string lost(64, 'a');
  for (const std::string& d : {kept + "/0", lost + "/0", std::string("pod-files")}) {
    std::filesystem::create_directories(sandbox.metadata.shared_dir + "/" + d);
  }
  std::ofstream(sandbox.metadata.shared_dir + "/" + lost + "/0/data") << "x";
  absl::StatusOr<ReconcileResult> r = containers_->Reconcile(sandbox);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared_dirs, ElementsAre(lost));
  EXPECT_TRUE(r->guest_containers.empty());
  EXPECT_TRUE(r->disks.empty());
  EXPECT_FALSE(std::filesystem::exists(sandbox.metadata.shared_dir + "/" + lost));
  EXPECT_TRUE(std::filesystem::exists(sandbox.metadata.shared_dir + "/" + kept + "/0"));
  EXPECT_TRUE(std::filesystem::exists(sandbox.metadata.shared_dir + "/pod-files"));
}

// A guest that cannot list its containers leaves everything where it is (nothing is removed on
// a guess) and recovery still succeeds.
TEST_F(ContainerControllerTest, ReconcileWithoutAnAnswerRemovesNothing) {
  const std::string kept = CreateAndStart(Config("kept"));
  ASSERT_TRUE(container_store_->Remove(kept).ok());
  agent_->list_result = absl::UnavailableError("the guest is busy");
  absl::StatusOr<ReconcileResult> r = containers_->Reconcile(*sandbox_store_->Get(sandbox_id_));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(log_->removed.empty());
  EXPECT_EQ(hypervisor_.SpecOf(sandbox_id_)->disks.size(), 2u);
}

}  // namespace
}  // namespace podvisor
