// Host-side pieces of the host handler against the real kernel: erofs layer images stacked by an
// overlay (whiteouts honoured, writes in the upper), and the namespace holder of a pod.

#include "host-runtime/host_rootfs.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "host-runtime/pod_namespaces.h"
#include "test/support/temp_dir.h"

namespace podvisor::host {
namespace {

using ::podvisor::testing::TempDir;

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// An erofs image of `dir`, as the image store builds them.
std::string Erofs(const std::string& dir, const std::string& image) {
  std::string cmd = absl::StrCat("mkfs.erofs --quiet ", image, " ", dir, " >/dev/null 2>&1");
  EXPECT_EQ(::system(cmd.c_str()), 0) << cmd;
  return image;
}

std::string Link(const std::string& path) {
  char buf[PATH_MAX] = {};
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

TEST(HostRootfsTest, StacksLayersWithWhiteoutsAndAWritableUpper) {
  TempDir dir;
  fs::create_directories(dir.Join("l0/etc"));
  std::ofstream(dir.Join("l0/etc/a")) << "lower a\n";
  std::ofstream(dir.Join("l0/etc/b")) << "lower b\n";
  fs::create_directories(dir.Join("l1/etc"));
  std::ofstream(dir.Join("l1/etc/a")) << "upper a\n";
  ASSERT_EQ(::mknod(dir.Join("l1/etc/b").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0);  // whiteout
  std::vector<std::string> layers = {Erofs(dir.Join("l0"), dir.Join("l0.erofs")),
                                     Erofs(dir.Join("l1"), dir.Join("l1.erofs"))};
  const std::string c = dir.Join("c");
  absl::StatusOr<std::string> rootfs = MountRootfs(c, layers);
  ASSERT_TRUE(rootfs.ok()) << rootfs.status();
  EXPECT_EQ(ReadAll(*rootfs + "/etc/a"), "upper a\n");
  EXPECT_FALSE(fs::exists(*rootfs + "/etc/b"));
  std::ofstream(*rootfs + "/etc/new") << "written\n";
  EXPECT_EQ(ReadAll(c + "/upper/etc/new"), "written\n");
  std::ofstream(c + "/layers/0/x") << "y";  // the layers themselves are read-only
  EXPECT_FALSE(fs::exists(c + "/layers/0/x"));
  ASSERT_TRUE(UnmountRootfs(c).ok());
  EXPECT_EQ(ReadAll("/proc/self/mountinfo").find(c), std::string::npos);
  EXPECT_TRUE(UnmountRootfs(c).ok()) << "idempotent";
  EXPECT_FALSE(MountRootfs(dir.Join("d"), {dir.Join("missing.erofs")}).ok());
  EXPECT_EQ(ReadAll("/proc/self/mountinfo").find(dir.Join("d")), std::string::npos)
      << "a failed mount undoes itself";
}

TEST(PodNamespacesTest, AHolderKeepsThePodsNamespacesUntilReleased) {
  TempDir dir;
  PodNamespaceRequest r{dir.path(), true, true, true, "pod-x"};
  absl::StatusOr<PodNamespaces> ns = CreatePodNamespaces(r);
  ASSERT_TRUE(ns.ok()) << ns.status();
  ASSERT_GT(ns->holder, 1);
  EXPECT_EQ(LiveHolder(dir.path()), ns->holder);
  for (const char* type : {"ipc", "uts", "pid"}) {
    const std::string theirs = Link(absl::StrCat("/proc/", ns->holder, "/ns/", type));
    EXPECT_NE(theirs, Link(absl::StrCat("/proc/self/ns/", type))) << type;
    struct stat a {
    }, b{};
    ASSERT_EQ(::stat(absl::StrCat("/proc/", ns->holder, "/ns/", type).c_str(), &a), 0);
    ASSERT_EQ(::stat(ns->paths.at(type).c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino) << type << " is bind-mounted from the holder";
  }
  // The holder is PID 1 of the pod's PID namespace.
  std::string status = ReadAll(absl::StrCat("/proc/", ns->holder, "/status"));
  EXPECT_NE(status.find("NSpid:\t" + std::to_string(ns->holder) + "\t1\n"), std::string::npos)
      << status;
  ASSERT_TRUE(ReleasePodNamespaces(dir.path()).ok());
  for (int i = 0; i < 100 && ::kill(ns->holder, 0) == 0; ++i) ::usleep(20000);
  EXPECT_EQ(LiveHolder(dir.path()), 0);
  EXPECT_FALSE(fs::exists(dir.Join("ipc")));
  EXPECT_TRUE(ReleasePodNamespaces(dir.path()).ok()) << "idempotent";
}

}  // namespace
}  // namespace podvisor::host
