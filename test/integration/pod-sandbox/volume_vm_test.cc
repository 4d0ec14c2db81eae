// Host-path volumes in real pod VMs: with the shared filesystem a hostPath volume is live both
// ways, read-only where asked, the termination log reaches the host, and removing the container
// or the pod unmounts it and leaves the host data alone. Every such test runs twice: against a
// pod booted cold (virtiofs) and against a pod cloned from a template VM (QEMU's 9p server).
// Without the shared filesystem, read-only volumes are snapshots and writable ones are refused.

// clang-format off
#include "test/integration/pod-sandbox/container_vm_fixture.h"  // first: CRI Signal vs <signal.h>
// clang-format on

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;

// The mount points of this (the host's) mount namespace whose path contains `needle`.
std::vector<std::string> MountsContaining(const std::string& needle) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point.find(needle) != std::string::npos) out.push_back(mount_point);
  }
  return out;
}

// The volume binds under the pod VMs' shared directories below `state_vm` (<state>/vm/): every
// mount there except each pod's own bounded tmpfs (<state>/vm/<id>/shared), which lives as long
// as the pod.
std::vector<std::string> VolumeMountsUnder(const std::string& state_vm) {
  std::vector<std::string> out;
  for (const std::string& m : MountsContaining(state_vm)) {
    if (!absl::EndsWith(m, "/shared")) out.push_back(m);
  }
  return out;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path) << content;
}

class VolumeVmBase : public ContainerVmTest {
 protected:
  v1::Mount* AddMount(v1::ContainerConfig& c, const std::string& container_path,
                      const std::string& host_path, bool readonly) {
    v1::Mount* m = c.add_mounts();
    m->set_container_path(container_path);
    m->set_host_path(host_path);
    m->set_readonly(readonly);
    return m;
  }

  // ExecSync of `sh -c script`; its stdout (stderr goes into the failure message).
  std::string Sh(const std::string& id, const std::string& script, int* exit_code = nullptr) {
    v1::ExecSyncResponse out;
    grpc::Status s = Exec(id, {"sh", "-c", script}, 60, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (exit_code) *exit_code = out.exit_code();
    return out.stdout() + out.stderr();
  }

  grpc::Status RemoveContainer(const std::string& id) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    v1::RemoveContainerResponse resp;
    return cri_->runtime().RemoveContainer(CriClient::Context(120).get(), req, &resp);
  }
};

class VolumeVmTest : public VolumeVmBase, public ::testing::WithParamInterface<PodBoot> {
 protected:
  VolumeVmTest() { boot_ = GetParam(); }
};
INSTANTIATE_TEST_SUITE_P(ColdAndClone, VolumeVmTest,
                         ::testing::Values(PodBoot::kCold, PodBoot::kClone), PodBootName);

TEST_P(VolumeVmTest, HostPathVolumeBothWaysReadOnlyAndTerminationLog) {
  const std::string data = dir_.Join("data");
  const std::string config_dir = dir_.Join("config");
  const std::string empty_dir = dir_.Join("pods/uid/volumes/kubernetes.io~empty-dir/cache");
  const std::string termination = dir_.Join("termination-log");
  ASSERT_TRUE(fs::create_directories(data));
  ASSERT_TRUE(fs::create_directories(config_dir));
  WriteFile(data + "/from-host", "written on the host\n");
  WriteFile(config_dir + "/setting", "v1\n");
  WriteFile(termination, "");

  v1::ContainerConfig c = Config("vols", {"sleep", "1000"});
  AddMount(c, "/data", data, false);
  AddMount(c, "/config", config_dir, true);
  AddMount(c, "/cache", empty_dir, false);  // missing on the host: created as a directory
  AddMount(c, "/dev/termination-log", termination, false);
  const std::string id = Run(c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  EXPECT_TRUE(fs::is_directory(empty_dir));

  // Host -> container, for files there before the start.
  EXPECT_EQ(Sh(id, "cat /data/from-host /config/setting"), "written on the host\nv1\n");
  // Container -> host: a file, a directory, a file in it, an append.
  int rc = -1;
  Sh(id, "echo from the container > /data/out && mkdir -p /data/sub/deeper && "
         "echo nested > /data/sub/deeper/f && echo more >> /data/from-host", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ReadAll(data + "/out"), "from the container\n");
  EXPECT_EQ(ReadAll(data + "/sub/deeper/f"), "nested\n");
  EXPECT_EQ(ReadAll(data + "/from-host"), "written on the host\nmore\n");
  // Host -> container, for files written while it runs (a configMap update, say).
  WriteFile(data + "/later", "after the start\n");
  WriteFile(config_dir + "/setting", "v2\n");
  std::string seen;
  for (int i = 0; i < 40; ++i) {
    seen = Sh(id, "cat /data/later /config/setting 2>/dev/null");
    if (seen == "after the start\nv2\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  EXPECT_EQ(seen, "after the start\nv2\n");
  // Read-only means read-only, inside and through the host mount.
  std::string denied = Sh(id, "echo x > /config/new 2>&1; echo rc=$?");
  EXPECT_THAT(denied, HasSubstr("Read-only file system"));
  EXPECT_FALSE(fs::exists(config_dir + "/new"));
  // The emptyDir-like volume is writable and shared.
  Sh(id, "echo cached > /cache/item", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ReadAll(empty_dir + "/item"), "cached\n");
  // kubelet reads the termination message from the host file.
  Sh(id, "echo 'goodbye: disk full' > /dev/termination-log", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ReadAll(termination), "goodbye: disk full\n");

  // Every volume is a mount under the sandbox's shared directory, until the container goes.
  const std::string state = dir_.Join("st");
  EXPECT_EQ(VolumeMountsUnder(state + "/vm/").size(), 4u);
  grpc::Status stopped = Stop(id, 0);
  ASSERT_TRUE(stopped.ok()) << stopped.error_message() << "\n" << daemon_->ReadLog();
  grpc::Status s = RemoveContainer(id);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(VolumeMountsUnder(state + "/vm/").empty());
  // Nothing of the host's was deleted with the container.
  EXPECT_EQ(ReadAll(data + "/out"), "from the container\n");
  EXPECT_EQ(ReadAll(data + "/sub/deeper/f"), "nested\n");
  EXPECT_EQ(ReadAll(config_dir + "/setting"), "v2\n");
  EXPECT_EQ(ReadAll(empty_dir + "/item"), "cached\n");
  EXPECT_EQ(ReadAll(termination), "goodbye: disk full\n");
}

TEST_P(VolumeVmTest, RemovingThePodUnmountsVolumesAndKeepsHostData) {
  const std::string data = dir_.Join("keep");
  ASSERT_TRUE(fs::create_directories(data + "/d"));
  WriteFile(data + "/d/precious", "do not delete\n");
  v1::ContainerConfig c = Config("keeper", {"sleep", "1000"});
  AddMount(c, "/keep", data, false);
  AddMount(c, "/keep-ro", data, true);
  const std::string id = Run(c);
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Sh(id, "cat /keep/d/precious /keep-ro/d/precious"), "do not delete\ndo not delete\n");
  // Two containers may share a host path, each through its own mount.
  v1::ContainerConfig c2 = Config("sharer", {"sleep", "1000"});
  AddMount(c2, "/shared", data, false);
  const std::string id2 = Run(c2);
  ASSERT_FALSE(id2.empty());
  int rc = -1;
  Sh(id2, "echo hi > /shared/from-2", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(Sh(id, "cat /keep/from-2"), "hi\n");

  // The pod goes with its containers still there (kubelet's order on a force delete).
  v1::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(pod_);
  v1::RemovePodSandboxResponse resp;
  grpc::Status s = cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  pod_.clear();
  EXPECT_TRUE(VolumeMountsUnder(dir_.Join("st") + "/vm/").empty());
  EXPECT_EQ(ReadAll(data + "/d/precious"), "do not delete\n");
  EXPECT_EQ(ReadAll(data + "/from-2"), "hi\n");
}

TEST_P(VolumeVmTest, HostPathsAVmCannotReachAreRefusedClearly) {
  v1::ContainerConfig c = Config("sock", {"sleep", "1000"});
  AddMount(c, "/dev/null-from-host", "/dev/null", false);
  grpc::Status s = TryCreate(c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("/dev/null"));
  EXPECT_TRUE(VolumeMountsUnder(dir_.Join("st") + "/vm/").empty());
}

// Propagation, as critest checks it: the host path is a shared mount; a mount made on the host
// under it after the start reaches a HostToContainer container and not a private one;
// Bidirectional is refused; ContainerStatus reports what was asked.
TEST_P(VolumeVmTest, MountPropagationHostToContainerAndPrivate) {
  const std::string source = dir_.Join("prop");
  const std::string flagged = dir_.Join("flagged");
  ASSERT_TRUE(fs::create_directories(source + "/mnt"));
  ASSERT_TRUE(fs::create_directories(flagged));
  WriteFile(flagged + "/flag", "mounted later\n");
  ASSERT_EQ(::mount(source.c_str(), source.c_str(), nullptr, MS_BIND | MS_REC, nullptr), 0);
  auto unmount = absl::MakeCleanup([&] {
    ::umount2((source + "/mnt").c_str(), MNT_DETACH);
    ::umount2(source.c_str(), MNT_DETACH);
  });
  ASSERT_EQ(::mount(nullptr, source.c_str(), nullptr, MS_SHARED | MS_REC, nullptr), 0);

  v1::ContainerConfig slave = Config("h2c", {"sleep", "1000"});
  AddMount(slave, "/vol", source, false)->set_propagation(v1::PROPAGATION_HOST_TO_CONTAINER);
  v1::ContainerConfig priv = Config("private", {"sleep", "1000"});
  AddMount(priv, "/vol", source, false)->set_propagation(v1::PROPAGATION_PRIVATE);
  const std::string slave_id = Run(slave);
  const std::string priv_id = Run(priv);
  ASSERT_FALSE(slave_id.empty());
  ASSERT_FALSE(priv_id.empty());
  EXPECT_EQ(Status(slave_id).mounts(0).propagation(), v1::PROPAGATION_HOST_TO_CONTAINER);
  EXPECT_EQ(Status(priv_id).mounts(0).propagation(), v1::PROPAGATION_PRIVATE);

  ASSERT_EQ(::mount(flagged.c_str(), (source + "/mnt").c_str(), nullptr, MS_BIND, nullptr), 0);
  EXPECT_EQ(Sh(slave_id, "cat /vol/mnt/flag"), "mounted later\n");
  EXPECT_EQ(Sh(priv_id, "ls -A /vol/mnt"), "");

  v1::ContainerConfig both = Config("bidi", {"sleep", "1000"});
  AddMount(both, "/vol", source, false)->set_propagation(v1::PROPAGATION_BIDIRECTIONAL);
  grpc::Status s = TryCreate(both);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("bidirectional"));

  for (const std::string& id : {slave_id, priv_id}) {
    ASSERT_TRUE(Stop(id, 0).ok());
    ASSERT_TRUE(RemoveContainer(id).ok());
  }
  EXPECT_EQ(ReadAll(flagged + "/flag"), "mounted later\n");
}

// Guest root owns everything in its VM, the shared filesystem included: a privileged container
// mounts the share's tag itself and writes through it past the container's own mounts. What the
// host enforces holds: read-only on the top mount (a tmpfs below it stays writable), recursive
// read-only at every depth, nosuid and nodev at every depth of the host-side binds. For a cold
// boot the share is virtiofs, for a template clone QEMU's 9p server: the same holds for both.
class GuestRootVolumeVmTest : public VolumeVmBase, public ::testing::WithParamInterface<PodBoot> {
 protected:
  GuestRootVolumeVmTest() { boot_ = GetParam(); }
};
INSTANTIATE_TEST_SUITE_P(Boots, GuestRootVolumeVmTest,
                         ::testing::Values(PodBoot::kCold, PodBoot::kClone), PodBootName);

TEST_P(GuestRootVolumeVmTest, GuestRootMountingTheShareIsHeldByTheHost) {
  const std::string ro = dir_.Join("ro");
  const std::string rro = dir_.Join("rro");
  const std::string rw = dir_.Join("rw");
  for (const std::string& d : {ro + "/tmp", rro + "/tmp", rw})
    ASSERT_TRUE(fs::create_directories(d));
  // critest's case: a tmpfs mounted on the host below a read-only volume.
  ASSERT_EQ(::mount("tmpfs", (ro + "/tmp").c_str(), "tmpfs", 0, "size=4m"), 0);
  ASSERT_EQ(::mount("tmpfs", (rro + "/tmp").c_str(), "tmpfs", 0, "size=4m"), 0);
  absl::Cleanup unmount = [&] {
    ::umount2((ro + "/tmp").c_str(), MNT_DETACH);
    ::umount2((rro + "/tmp").c_str(), MNT_DETACH);
  };
  v1::ContainerConfig c = Config("root", {"sleep", "1000"});
  c.mutable_linux()->mutable_security_context()->set_privileged(true);
  // The VM's PID namespace: its PID 1 (the agent's side of the guest) is in reach.
  c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::POD);
  AddMount(c, "/ro", ro, true);                                   // volume 0
  AddMount(c, "/rro", rro, true)->set_recursive_read_only(true);  // volume 1
  AddMount(c, "/rw", rw, false);                                  // volume 2
  const std::string id = Run(c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();

  // The container's own view: non-recursive read-only leaves the tmpfs below writable.
  EXPECT_THAT(Sh(id, "echo x > /ro/new 2>&1; echo rc=$?"), HasSubstr("Read-only file system"));
  EXPECT_EQ(Sh(id, "echo below > /ro/tmp/from-container && echo ok"), "ok\n");
  EXPECT_EQ(ReadAll(ro + "/tmp/from-container"), "below\n");
  EXPECT_THAT(Sh(id, "echo x > /rro/tmp/new 2>&1; echo rc=$?"), HasSubstr("Read-only file system"));

  // Guest root lifts every guest mount flag. A cold boot's virtiofs tag it mounts itself; a
  // clone's 9p channel takes one mount, the agent's (a second is EBUSY), so there it remounts
  // the container's own binds of that mount read-write instead.
  const std::string mnt = "/mnt-share";
  std::string share;
  if (boot_ == PodBoot::kClone) {
    EXPECT_THAT(Sh(id, "busybox mkdir -p " + mnt +
                           " && busybox mount -t 9p -o "
                           "trans=virtio,version=9p2000.L podvisor-shared " +
                           mnt + " 2>&1"),
                HasSubstr("busy"));
    ASSERT_EQ(Sh(id,
                 "busybox mkdir -p /vols && for n in 0:ro 1:rro 2:rw; do "
                 "busybox ln -s /${n#*:} /vols/${n%%:*}; "
                 "busybox mount -o remount,bind,rw /${n#*:} || exit 1; done; echo remounted"),
              "remounted\n");
    share = "/vols";
  } else {
    ASSERT_EQ(Sh(id, "busybox mkdir -p " + mnt + " && busybox mount -t virtiofs podvisor-shared " +
                         mnt + " && echo mounted"),
              "mounted\n");
    share = mnt + "/" + id;
  }
  EXPECT_THAT(Sh(id, "echo x > " + share + "/0/new 2>&1; echo rc=$?"),
              HasSubstr("Read-only file system"));
  EXPECT_FALSE(fs::exists(ro + "/new"));
  EXPECT_EQ(Sh(id, "echo through > " + share + "/0/tmp/through && echo ok"), "ok\n");
  EXPECT_EQ(ReadAll(ro + "/tmp/through"), "through\n");
  EXPECT_THAT(Sh(id, "echo x > " + share + "/1/tmp/new 2>&1; echo rc=$?"),
              HasSubstr("Read-only file system"));
  EXPECT_FALSE(fs::exists(rro + "/tmp/new"));
  // A setuid binary and a device node planted through the writable volume.
  Sh(id, "busybox cp /bin/busybox " + share + "/2/suid && busybox chmod 4755 " + share +
             "/2/suid; busybox mknod " + share + "/2/null c 1 3; true");
  const std::string host_bind = dir_.Join("st") + "/vm/" + pod_.substr(0, 16) + "/shared/" + id;
  for (const std::string& p :
       {host_bind + "/0", host_bind + "/0/tmp", host_bind + "/1/tmp", host_bind + "/2"}) {
    struct statvfs sv {};
    ASSERT_EQ(::statvfs(p.c_str(), &sv), 0) << p;
    EXPECT_TRUE(sv.f_flag & ST_NOSUID) << p;
    EXPECT_TRUE(sv.f_flag & ST_NODEV) << p;
  }
  // Whatever the guest made of them, the host does not open the device through the share.
  if (fs::exists(fs::symlink_status(host_bind + "/2/null"))) {
    const int fd = ::open((host_bind + "/2/null").c_str(), O_RDWR | O_CLOEXEC);
    EXPECT_LT(fd, 0);
    EXPECT_EQ(errno, EACCES);
    if (fd >= 0) ::close(fd);
  }
  // The shared directory itself is bounded: filling it ends in ENOSPC, not on the host's disk.
  // A clone's share is reached through the guest's own mount of it (the one 9p channel), in the
  // root of the VM's PID 1.
  const std::string top =
      boot_ == PodBoot::kCold ? mnt : std::string("/proc/1/root/run/podvisor/shared");
  EXPECT_THAT(Sh(id, "busybox ls -d " + top + "/" + id + " && busybox dd if=/dev/zero of=" + top +
                         "/junk bs=1M count=64 2>&1; echo rc=$?"),
              HasSubstr("No space left on device"));
  {
    const std::string host_top = dir_.Join("st") + "/vm/" + pod_.substr(0, 16) + "/shared";
    struct statvfs sv {};
    ASSERT_EQ(::statvfs(host_top.c_str(), &sv), 0) << host_top;
    EXPECT_LE((sv.f_blocks - sv.f_bfree) * sv.f_frsize, uint64_t{16} << 20) << host_top;
  }
  Sh(id, "busybox rm -f " + top + "/junk");
  if (boot_ == PodBoot::kCold) Sh(id, "busybox umount " + mnt);
  ASSERT_TRUE(RemoveContainer(id).ok());
  EXPECT_TRUE(MountsContaining(host_bind).empty());
  EXPECT_EQ(ReadAll(ro + "/tmp/through"), "through\n");
}

// The same pod without the shared filesystem: read-only volumes are snapshots, writable ones are
// refused naming the path.
class SnapshotVolumeVmTest : public VolumeVmBase {
 protected:
  SnapshotVolumeVmTest() { shared_filesystem_ = false; }
};

TEST_F(SnapshotVolumeVmTest, ReadOnlyVolumesAreSnapshotsAndWritableOnesAreRefused) {
  const std::string data = dir_.Join("snap");
  ASSERT_TRUE(fs::create_directories(data));
  WriteFile(data + "/f", "before\n");
  v1::ContainerConfig c = Config("snap", {"sleep", "1000"});
  AddMount(c, "/snap", data, true);
  const std::string id = Run(c);
  ASSERT_FALSE(id.empty());
  WriteFile(data + "/f", "after\n");
  EXPECT_EQ(Sh(id, "cat /snap/f"), "before\n");  // a snapshot taken at create

  v1::ContainerConfig w = Config("rw", {"sleep", "1000"});
  AddMount(w, "/data", data, false);
  grpc::Status s = TryCreate(w);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr(data));
}

}  // namespace
}  // namespace podvisor::testing
