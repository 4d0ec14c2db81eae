// The ownership shift of a container's root filesystem into its pod's user namespace, on a real
// directory tree (root: the test chowns files and mounts a tmpfs).
#include "agent/user_namespace.h"

#include <endian.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "test/support/temp_dir.h"

namespace podvisor::agent {
namespace {

v1::UserNamespace Userns(uint32_t host, uint32_t length) {
  v1::UserNamespace u;
  for (v1::IdMapping* m : {u.mutable_uids(), u.mutable_gids()}) {
    m->set_container_id(0);
    m->set_host_id(host);
    m->set_length(length);
  }
  return u;
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

TEST(UserNamespaceTest, ValidatesTheRanges) {
  EXPECT_TRUE(ValidateUserNamespace(Userns(65536, 65536)).ok());
  v1::UserNamespace u = Userns(65536, 65536);
  u.mutable_uids()->set_container_id(1);
  EXPECT_EQ(ValidateUserNamespace(u).code(), Code::kInvalidArgument);
  u = Userns(65536, 0);
  EXPECT_EQ(ValidateUserNamespace(u).code(), Code::kInvalidArgument);
  u = Userns(0xffff0000u, 0x10000u);  // reaches 2^32-1, "no id"
  EXPECT_EQ(ValidateUserNamespace(u).code(), Code::kInvalidArgument);
  u = Userns(65536, 65536);
  u.clear_gids();
  EXPECT_EQ(ValidateUserNamespace(u).code(), Code::kInvalidArgument);
  EXPECT_EQ(MapId(Userns(1000, 10).uids(), 0), 1000u);
  EXPECT_EQ(MapId(Userns(1000, 10).uids(), 9), 1009u);
  EXPECT_EQ(MapId(Userns(1000, 10).uids(), 10), 10u);  // outside the range: unchanged
}

TEST(UserNamespaceTest, ShiftsEveryFileOnceKeepingSetIdBitsAndCapabilities) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (chown, mount)";
  testing::TempDir dir;
  const std::string root = dir.Join("rootfs");
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/etc").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/home").c_str(), 0700), 0);
  std::ofstream(root + "/etc/passwd") << "root:x:0:0::/:/bin/sh\n";
  std::ofstream(root + "/home/file") << "x";
  ASSERT_EQ(chown((root + "/home").c_str(), 1000, 1000), 0);
  ASSERT_EQ(chown((root + "/home/file").c_str(), 1000, 50), 0);
  // Set-user-ID root, which chown(2) would clear.
  std::ofstream(root + "/su") << "#!/bin/sh\n";
  ASSERT_EQ(chmod((root + "/su").c_str(), 04755), 0);
  // Two names of one file: shifted once, not twice.
  ASSERT_EQ(link((root + "/etc/passwd").c_str(), (root + "/passwd-link").c_str()), 0);
  // An id beyond the range stays as it is.
  std::ofstream(root + "/far") << "x";
  ASSERT_EQ(chown((root + "/far").c_str(), 70000, 70000), 0);
  // A symlink is changed itself; its target (outside the tree) is not.
  const std::string outside = dir.Join("outside");
  std::ofstream(outside) << "x";
  ASSERT_EQ(symlink(outside.c_str(), (root + "/escape").c_str()), 0);
  // A file capability (v2: cap_net_raw, effective).
  std::ofstream(root + "/ping") << "x";
  vfs_cap_data cap{};
  cap.magic_etc = htole32(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE);
  cap.data[0].permitted = htole32(1u << CAP_NET_RAW);
  ASSERT_EQ(setxattr((root + "/ping").c_str(), "security.capability", &cap, XATTR_CAPS_SZ_2, 0), 0)
      << std::strerror(errno);
  // Another filesystem mounted inside: not the image's, left alone.
  ASSERT_EQ(mkdir((root + "/mnt").c_str(), 0755), 0);
  ASSERT_EQ(mount("tmpfs", (root + "/mnt").c_str(), "tmpfs", 0, "mode=755"), 0);
  std::ofstream(root + "/mnt/inner") << "x";

  size_t shifted = 0;
  Error e = ShiftOwnership(root, Userns(65536, 65536), &shifted);
  EXPECT_TRUE(e.ok()) << e.message();
  const std::string mnt = root + "/mnt";

  EXPECT_EQ(Lstat(root).st_uid, 65536u);
  EXPECT_EQ(Lstat(root + "/etc").st_gid, 65536u);
  EXPECT_EQ(Lstat(root + "/etc/passwd").st_uid, 65536u);
  EXPECT_EQ(Lstat(root + "/passwd-link").st_uid, 65536u);
  EXPECT_EQ(Lstat(root + "/home").st_uid, 66536u);
  EXPECT_EQ(Lstat(root + "/home").st_mode & 07777, 0700u);
  EXPECT_EQ(Lstat(root + "/home/file").st_uid, 66536u);
  EXPECT_EQ(Lstat(root + "/home/file").st_gid, 65586u);
  EXPECT_EQ(Lstat(root + "/su").st_uid, 65536u);
  EXPECT_EQ(Lstat(root + "/su").st_mode & 07777, 04755u);
  EXPECT_EQ(Lstat(root + "/far").st_uid, 70000u);
  EXPECT_EQ(Lstat(root + "/escape").st_uid, 65536u);
  EXPECT_EQ(Lstat(outside).st_uid, 0u);
  EXPECT_EQ(Lstat(mnt + "/inner").st_uid, 0u);
  // The capability is now the namespace root's (v3, rootid 65536), still cap_net_raw.
  vfs_ns_cap_data got{};
  ssize_t n = getxattr((root + "/ping").c_str(), "security.capability", &got, sizeof(got));
  ASSERT_EQ(n, static_cast<ssize_t>(XATTR_CAPS_SZ_3)) << std::strerror(errno);
  EXPECT_EQ(le32toh(got.magic_etc) & VFS_CAP_REVISION_MASK, VFS_CAP_REVISION_3);
  EXPECT_EQ(le32toh(got.rootid), 65536u);
  EXPECT_EQ(le32toh(got.data[0].permitted), 1u << CAP_NET_RAW);
  // The root, etc, passwd (one file, two names), home, home/file, su, escape and ping: 8 (far
  // needed nothing, mnt is another filesystem's).
  EXPECT_EQ(shifted, 8u);

  EXPECT_EQ(umount(mnt.c_str()), 0);
}

TEST(UserNamespaceTest, AnImageNestedTooDeepIsRefusedNotRecursedWithoutEnd) {
  testing::TempDir dir;
  std::string path = dir.Join("deep");
  ASSERT_EQ(mkdir(path.c_str(), 0755), 0);
  for (int i = 0; i < 300; ++i) {
    path += "/d";
    ASSERT_EQ(mkdir(path.c_str(), 0755), 0);
  }
  Error e = ShiftOwnership(dir.Join("deep"), Userns(65536, 65536), nullptr);
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_NE(e.message().find("nested deeper than 256"), std::string::npos) << e.message();
}

TEST(UserNamespaceTest, AMissingRootIsAnError) {
  testing::TempDir dir;
  Error e = ShiftOwnership(dir.Join("none"), Userns(65536, 65536), nullptr);
  EXPECT_FALSE(e.ok());
  EXPECT_NE(e.message().find("none"), std::string::npos) << e.message();
}

}  // namespace
}  // namespace podvisor::agent
