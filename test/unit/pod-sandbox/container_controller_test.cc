// ContainerController: create, lifecycle, exec, lists and logs (container_create.cc,
// container_lifecycle.cc, container_exec.cc).

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
  EXPECT_THAT(destinations,
              ::testing::UnorderedElementsAre("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"));
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

// SupplementalGroupsPolicy reaches the agent for the container and its execs (Strict: no image
// groups), and the user the agent reports having given the init process is the record's.
TEST_F(ContainerControllerTest, StrictGroupsReachTheAgentAndTheResolvedUserIsRecorded) {
  ContainerConfig merge = Config("merge");
  merge.run_as_user = 1000;
  merge.run_as_group = 3000;
  merge.supplemental_groups = {4000};
  agent_->created_user = ContainerUser{1000, 3000, {3000, 4000, 50000}};
  std::string merged = CreateAndStart(merge);
  EXPECT_FALSE(log_->created.back().second.process.user.strict_groups);
  absl::StatusOr<Container> m = containers_->Inspect(merged);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->metadata.resolved_user, (ContainerUser{1000, 3000, {3000, 4000, 50000}}));

  ContainerConfig strict = merge;
  strict.name = "strict";
  strict.log_path = "strict/0.log";
  strict.supplemental_groups_policy = SupplementalGroupsPolicy::kStrict;
  agent_->created_user = ContainerUser{1000, 3000, {3000, 4000}};
  std::string id = CreateAndStart(strict);
  EXPECT_TRUE(log_->created.back().second.process.user.strict_groups);
  ASSERT_TRUE(containers_->ExecSync(id, {"id", "-G"}, absl::Seconds(5)).ok());
  EXPECT_TRUE(log_->execs.back().second.user.strict_groups);
  absl::StatusOr<Container> c = containers_->Inspect(id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->metadata.resolved_user, (ContainerUser{1000, 3000, {3000, 4000}}));

  // An agent too old to report it: created all the same, the user unknown.
  agent_->report_no_user = true;
  std::string old = CreateAndStart(Config("old-agent"));
  absl::StatusOr<Container> o = containers_->Inspect(old);
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->metadata.resolved_user.has_value());
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

}  // namespace
}  // namespace podvisor
