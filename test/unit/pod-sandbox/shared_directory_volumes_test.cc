// The host side of a VM pod's shared directory with real mounts (root): what guest root can and
// cannot do through the binds, written the way virtiofsd or QEMU's 9p server writes for it.
#include "pod-sandbox/shared_directory_volumes.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/fs.h"
#include "gtest/gtest.h"
#include "test/fakes/fake_agent_client.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

namespace fs = std::filesystem;

// errno of creating `path` (0: created).
int CreateError(const std::string& path) {
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

class SharedDirectoryVolumesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
    sandbox_.metadata.id = "pod";
    sandbox_.metadata.shared_dir = dir_.Join("shared");
    fs::create_directories(sandbox_.metadata.shared_dir);
    host_ = dir_.Join("host");
    fs::create_directories(host_ + "/sub");
    std::ofstream(host_ + "/data") << "host data";
    // A submount of the volume, as critest mounts a tmpfs below a read-only volume.
    ASSERT_EQ(::mount("tmpfs", (host_ + "/sub").c_str(), "tmpfs", 0, "size=1m"), 0);
  }

  void TearDown() override {
    if (::geteuid() != 0) return;
    if (attached_) volumes_.Detach(sandbox_, nullptr, "c1", *attached_);
    ::umount2((host_ + "/sub").c_str(), MNT_DETACH);
  }

  // Attaches one mount of `host_` and returns the path of its bind in the shared directory.
  std::string Attach(ContainerMount m) {
    m.container_path = "/vol";
    m.host_path = host_;
    ContainerConfig config;
    config.mounts = {m};
    absl::StatusOr<ContainerVolumes> v = volumes_.Attach(sandbox_, agent_, "c1", config);
    EXPECT_TRUE(v.ok()) << v.status();
    if (!v.ok()) return "";
    attached_ = *v;
    return sandbox_.metadata.shared_dir + "/" + v->shared.at(0).name;
  }

  testing::TempDir dir_;
  std::string host_;
  Sandbox sandbox_;
  testing::FakeAgentClient agent_{AgentClient::Options{}};
  SharedDirectoryVolumes volumes_;
  std::optional<ContainerVolumes> attached_;
};

TEST_F(SharedDirectoryVolumesTest, ReadOnlyIsTheTopMountOnly) {
  ContainerMount m;
  m.readonly = true;
  const std::string bind = Attach(m);
  ASSERT_FALSE(bind.empty());
  EXPECT_EQ(CreateError(bind + "/new"), EROFS);
  EXPECT_EQ(CreateError(bind + "/data"), EROFS);
  // The tmpfs below it keeps its own flags: writable, as on the host.
  EXPECT_EQ(CreateError(bind + "/sub/new"), 0);
  EXPECT_TRUE(fs::exists(host_ + "/sub/new"));
}

TEST_F(SharedDirectoryVolumesTest, RecursiveReadOnlyHoldsAtEveryDepth) {
  ContainerMount m;
  m.readonly = true;
  m.recursive_read_only = true;
  const std::string bind = Attach(m);
  ASSERT_FALSE(bind.empty());
  EXPECT_EQ(CreateError(bind + "/new"), EROFS);
  EXPECT_EQ(CreateError(bind + "/sub/new"), EROFS);
  EXPECT_FALSE(fs::exists(host_ + "/sub/new"));
  // Guest root cannot undo it from the guest; on the host, a remount without the flag is the
  // host's decision alone. Here it stays as it was made.
  struct statvfs sv {};
  ASSERT_EQ(::statvfs((bind + "/sub").c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_RDONLY);
}

TEST_F(SharedDirectoryVolumesTest, EveryDepthIsNosuidAndNodev) {
  const std::string bind = Attach(ContainerMount{});
  ASSERT_FALSE(bind.empty());
  for (const std::string& p : {bind, bind + "/sub"}) {
    struct statvfs sv {};
    ASSERT_EQ(::statvfs(p.c_str(), &sv), 0) << p;
    EXPECT_TRUE(sv.f_flag & ST_NOSUID) << p;
    EXPECT_TRUE(sv.f_flag & ST_NODEV) << p;
    EXPECT_FALSE(sv.f_flag & ST_RDONLY) << p;
    // A device node planted through the share is never honoured on the host side.
    const std::string node = p + "/null";
    ASSERT_EQ(::mknod(node.c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << p;
    const int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    EXPECT_LT(fd, 0) << p;
    EXPECT_EQ(errno, EACCES) << p;
    if (fd >= 0) ::close(fd);
  }
  // The host's own mounts are untouched: its tmpfs keeps suid and dev.
  struct statvfs sv {};
  ASSERT_EQ(::statvfs((host_ + "/sub").c_str(), &sv), 0);
  EXPECT_FALSE(sv.f_flag & ST_NOSUID);
  EXPECT_FALSE(sv.f_flag & ST_NODEV);
}

TEST_F(SharedDirectoryVolumesTest, HostToContainerSeesLaterHostMountsAndPrivateDoesNot) {
  // The host path as a shared mount of its own (a bind onto itself, made shared).
  ASSERT_EQ(::mount(host_.c_str(), host_.c_str(), nullptr, MS_BIND | MS_REC, nullptr), 0);
  ASSERT_EQ(::mount(nullptr, host_.c_str(), nullptr, MS_SHARED, nullptr), 0);
  fs::create_directories(host_ + "/later");
  ContainerMount slave{"/slave", host_, false, MountPropagation::kHostToContainer};
  ContainerMount priv{"/private", host_, false, MountPropagation::kPrivate};
  ContainerConfig config;
  config.mounts = {slave, priv};
  absl::StatusOr<ContainerVolumes> v = volumes_.Attach(sandbox_, agent_, "c1", config);
  ASSERT_TRUE(v.ok()) << v.status();
  attached_ = *v;
  ASSERT_EQ(::mount("tmpfs", (host_ + "/later").c_str(), "tmpfs", 0, "size=1m"), 0);
  std::ofstream(host_ + "/later/flag") << "mounted later";
  const std::string shared = sandbox_.metadata.shared_dir + "/";
  EXPECT_TRUE(fs::exists(shared + v->shared[0].name + "/later/flag"));
  EXPECT_FALSE(fs::exists(shared + v->shared[1].name + "/later/flag"));
  volumes_.Detach(sandbox_, nullptr, "c1", *attached_);
  attached_.reset();
  ::umount2((host_ + "/later").c_str(), MNT_DETACH);
  ::umount2(host_.c_str(), MNT_DETACH);
}

// Guest root planted a symlink to host data where the container's directory goes: the host
// neither creates its bind targets through it nor mounts anything there.
TEST_F(SharedDirectoryVolumesTest, APlantedSymlinkIsNeverFollowed) {
  const std::string outside = dir_.Join("outside");
  fs::create_directories(outside);
  fs::create_symlink(outside, sandbox_.metadata.shared_dir + "/c1");
  ContainerConfig config;
  config.mounts = {ContainerMount{"/vol", host_, false}};
  absl::StatusOr<ContainerVolumes> v = volumes_.Attach(sandbox_, agent_, "c1", config);
  ASSERT_FALSE(v.ok());
  EXPECT_TRUE(fs::is_empty(outside));
  absl::StatusOr<std::vector<std::string>> mounts = MountPointsUnder(outside);
  ASSERT_TRUE(mounts.ok());
  EXPECT_TRUE(mounts->empty());
  // The failed attach took the planted link away with it; the host data is all there.
  EXPECT_FALSE(fs::exists(fs::symlink_status(sandbox_.metadata.shared_dir + "/c1")));
  EXPECT_TRUE(fs::exists(outside));
}

TEST_F(SharedDirectoryVolumesTest, DetachUnmountsAndKeepsTheHostData) {
  const std::string bind = Attach(ContainerMount{});
  ASSERT_FALSE(bind.empty());
  std::ofstream(bind + "/written") << "by the guest";
  volumes_.Detach(sandbox_, nullptr, "c1", *attached_);
  attached_.reset();
  EXPECT_FALSE(fs::exists(sandbox_.metadata.shared_dir + "/c1"));
  EXPECT_TRUE(fs::exists(host_ + "/data"));
  EXPECT_TRUE(fs::exists(host_ + "/written"));
  absl::StatusOr<std::vector<std::string>> mounts = MountPointsUnder(sandbox_.metadata.shared_dir);
  ASSERT_TRUE(mounts.ok());
  EXPECT_TRUE(mounts->empty());
}

// errno of writing `bytes` into a new file at `path` (0: all written).
int FillError(const std::string& path, size_t bytes) {
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  const std::string chunk(64 << 10, 'x');
  int err = 0;
  for (size_t done = 0; done < bytes;) {
    const ssize_t n = ::write(fd, chunk.data(), std::min(chunk.size(), bytes - done));
    if (n < 0) {
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return err;
}

int MountCountAt(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point == path) ++n;
  }
  return n;
}

TEST(SharedDirectoryBoundTest, TheSharedDirectoryIsASmallTmpfs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  testing::TempDir dir;
  const std::string shared = dir.Join("shared");
  fs::create_directories(shared);
  ASSERT_TRUE(MountSharedDirectory(shared, 1 << 20).ok());
  // A guest writing without end into the directory itself: ENOSPC, not the host's disk.
  EXPECT_EQ(FillError(shared + "/junk", 4 << 20), ENOSPC);
  struct statfs sf {};
  ASSERT_EQ(::statfs(shared.c_str(), &sf), 0);
  EXPECT_EQ(sf.f_type, static_cast<decltype(sf.f_type)>(TMPFS_MAGIC));
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(shared.c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_NOSUID);
  EXPECT_TRUE(sv.f_flag & ST_NODEV);
  EXPECT_TRUE(sv.f_flag & ST_NOEXEC);
  // Removal of the pod's directory takes the tmpfs with it.
  ASSERT_TRUE(RemoveAll(shared).ok());
  EXPECT_FALSE(fs::exists(shared));
  EXPECT_EQ(MountCountAt(shared), 0);
}

TEST(SharedDirectoryBoundTest, AKubeletEmptyDirGetsATmpfsOfTheConfiguredSize) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  testing::TempDir dir;
  Sandbox sandbox;
  sandbox.metadata.id = "pod";
  sandbox.metadata.shared_dir = dir.Join("shared");
  fs::create_directories(sandbox.metadata.shared_dir);
  const std::string empty_dir = dir.Join("pods/uid/volumes/kubernetes.io~empty-dir/cache");
  fs::create_directories(empty_dir);
  ::chmod(empty_dir.c_str(), 0777);
  const std::string other = dir.Join("hostpath");
  SharedDirectoryVolumes volumes(1 << 20);
  testing::FakeAgentClient agent{AgentClient::Options{}};
  ContainerConfig config;
  config.mounts = {ContainerMount{"/cache", empty_dir, false},
                   ContainerMount{"/data", other, false}};
  absl::StatusOr<ContainerVolumes> v = volumes.Attach(sandbox, agent, "c1", config);
  ASSERT_TRUE(v.ok()) << v.status();
  auto unmount = [&] { ::umount2(empty_dir.c_str(), MNT_DETACH); };
  const std::string bind = sandbox.metadata.shared_dir + "/" + v->shared[0].name;
  EXPECT_EQ(FillError(bind + "/big", 4 << 20), ENOSPC);
  struct stat st {};
  ASSERT_EQ(::stat(empty_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u);  // kubelet's mode kept
  EXPECT_EQ(MountCountAt(empty_dir), 1);
  // Only kubelet's emptyDirs: a hostPath is the host's own directory.
  EXPECT_EQ(MountCountAt(other), 0);
  // Another container of the pod shares the same bounded directory; no second tmpfs.
  absl::StatusOr<ContainerVolumes> v2 = volumes.Attach(sandbox, agent, "c2", config);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(MountCountAt(empty_dir), 1);
  EXPECT_TRUE(fs::exists(sandbox.metadata.shared_dir + "/" + v2->shared[0].name + "/big"));
  volumes.Detach(sandbox, nullptr, "c1", *v);
  volumes.Detach(sandbox, nullptr, "c2", *v2);
  unmount();
}

}  // namespace
}  // namespace podvisor
