// Containers in a user namespace: the OCI config (namespaces, maps, the guest's namespaces
// joined by path, /sys bound) and the rootfs ownership shift.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>

#include "agent/oci_spec.h"
#include "agent/userns_rootfs.h"
#include "nlohmann/json.hpp"
#include "test/support/temp_dir.h"

namespace podvisor::agent {
namespace {

v1::ContainerSpec UsernsSpec(bool share_pid) {
  v1::ContainerSpec spec;
  spec.mutable_process()->add_args("/bin/sh");
  spec.set_share_pid_namespace(share_pid);
  v1::IdMap* u = spec.add_uid_mappings();
  u->set_container_id(0);
  u->set_host_id(65536);
  u->set_size(65536);
  v1::IdMap* g = spec.add_gid_mappings();
  g->set_container_id(0);
  g->set_host_id(131072);
  g->set_size(65536);
  return spec;
}

OciOptions Options() {
  OciOptions o;
  o.container_id = "c1";
  o.rootfs_path = "/r";
  o.cgroups_path = "/podvisor/c1";
  o.pod_shm = "/dev/shm";
  return o;
}

nlohmann::json Config(const v1::ContainerSpec& spec) {
  std::string json;
  Error e = BuildConfigJson(spec, Options(), &json);
  EXPECT_TRUE(e.ok()) << e.message();
  return nlohmann::json::parse(json);
}

nlohmann::json MountAt(const nlohmann::json& c, const std::string& destination) {
  for (const auto& m : c["mounts"]) {
    if (m["destination"] == destination) return m;
  }
  return nullptr;
}

TEST(UsernsOciTest, ANewUserNamespaceWithThePodsMaps) {
  nlohmann::json c = Config(UsernsSpec(true));
  const nlohmann::json& ns = c["linux"]["namespaces"];
  ASSERT_EQ(ns.size(), 5u);
  EXPECT_EQ(ns[0], (nlohmann::json{{"type", "user"}}));
  EXPECT_EQ(ns[1], (nlohmann::json{{"type", "mount"}}));
  EXPECT_EQ(ns[2], (nlohmann::json{{"type", "cgroup"}}));
  // The guest's PID and IPC namespaces, joined by path so that crun mounts proc and mqueue for
  // them before it enters the user namespace.
  EXPECT_EQ(ns[3], (nlohmann::json{{"type", "pid"}, {"path", "/proc/self/ns/pid"}}));
  EXPECT_EQ(ns[4], (nlohmann::json{{"type", "ipc"}, {"path", "/proc/self/ns/ipc"}}));
  EXPECT_EQ(c["linux"]["uidMappings"],
            (nlohmann::json::array({{{"containerID", 0}, {"hostID", 65536}, {"size", 65536}}})));
  EXPECT_EQ(c["linux"]["gidMappings"],
            (nlohmann::json::array({{{"containerID", 0}, {"hostID", 131072}, {"size", 65536}}})));
  // No sysfs can be mounted for the guest's network namespace from inside: the guest's, bound.
  EXPECT_EQ(MountAt(c, "/sys")["type"], "bind");
  EXPECT_EQ(MountAt(c, "/sys")["source"], "/sys");
  EXPECT_EQ(MountAt(c, "/sys")["options"].back(), "ro");
  EXPECT_EQ(MountAt(c, "/proc")["type"], "proc");
}

TEST(UsernsOciTest, AContainersOwnPidNamespaceIsNew) {
  nlohmann::json c = Config(UsernsSpec(false));
  const nlohmann::json& ns = c["linux"]["namespaces"];
  ASSERT_EQ(ns.size(), 5u);
  EXPECT_EQ(ns[3], (nlohmann::json{{"type", "pid"}}));
}

TEST(UsernsOciTest, WithoutMapsTheLayoutIsUnchanged) {
  v1::ContainerSpec spec = UsernsSpec(true);
  spec.clear_uid_mappings();
  spec.clear_gid_mappings();
  nlohmann::json c = Config(spec);
  for (const auto& n : c["linux"]["namespaces"]) EXPECT_NE(n["type"], "user");
  EXPECT_FALSE(c["linux"].contains("uidMappings"));
  EXPECT_EQ(MountAt(c, "/sys")["type"], "sysfs");
}

TEST(UsernsOciTest, RefusesIncompleteOrPrivilegedUserNamespaces) {
  std::string json;
  v1::ContainerSpec spec = UsernsSpec(true);
  spec.clear_gid_mappings();
  EXPECT_EQ(BuildConfigJson(spec, Options(), &json).code(), Code::kInvalidArgument);
  spec = UsernsSpec(true);
  spec.set_privileged(true);
  EXPECT_EQ(BuildConfigJson(spec, Options(), &json).code(), Code::kInvalidArgument);
  spec = UsernsSpec(true);
  spec.mutable_uid_mappings(0)->set_host_id(4294967295u - 5);
  EXPECT_EQ(BuildConfigJson(spec, Options(), &json).code(), Code::kInvalidArgument);
  spec = UsernsSpec(true);
  *spec.add_uid_mappings() = spec.uid_mappings(0);
  *spec.add_gid_mappings() = spec.gid_mappings(0);
  EXPECT_EQ(BuildConfigJson(spec, Options(), &json).code(), Code::kInvalidArgument);
}

TEST(UsernsRootfsTest, MapIdShiftsOnlyTheMappedRange) {
  const IdRange r{0, 100000, 65536};
  EXPECT_EQ(MapId(r, 0), 100000u);
  EXPECT_EQ(MapId(r, 65535), 165535u);
  EXPECT_EQ(MapId(r, 65536), 65536u);  // outside: left as it is (nobody inside)
}

struct stat Lstat(const std::string& path) {
  struct stat st{};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st;
}

TEST(UsernsRootfsTest, ShiftsEveryEntryOnceAndKeepsSetuidAndCapabilities) {
  if (geteuid() != 0) GTEST_SKIP() << "chown needs root";
  testing::TempDir dir;
  const std::string root = dir.Join("rootfs");
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/etc").c_str(), 0755), 0);
  std::ofstream(root + "/etc/passwd") << "root:x:0:0::/root:/bin/sh\n";
  std::ofstream(root + "/su") << "#!/bin/sh\n";
  ASSERT_EQ(chmod((root + "/su").c_str(), 04755), 0);
  std::ofstream(root + "/ping") << "x";
  // A v2 file capability (cap_net_raw+ep).
  const unsigned char cap[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  const bool caps = setxattr((root + "/ping").c_str(), "security.capability", cap, sizeof(cap),
                             0) == 0;
  std::ofstream(root + "/user-file") << "x";
  ASSERT_EQ(chown((root + "/user-file").c_str(), 1000, 50), 0);
  ASSERT_EQ(link((root + "/user-file").c_str(), (root + "/hard-link").c_str()), 0);
  ASSERT_EQ(symlink("/etc/passwd", (root + "/link").c_str()), 0);
  ASSERT_EQ(lchown((root + "/link").c_str(), 0, 0), 0);

  uint64_t changed = 0;
  Error e = ShiftOwnership(root, {0, 100000, 65536}, {0, 200000, 65536}, &changed);
  ASSERT_TRUE(e.ok()) << e.message();
  // rootfs, etc, passwd, su, ping, user-file (once, with its hard link), link.
  EXPECT_EQ(changed, 7u);
  for (const char* p : {"", "/etc", "/etc/passwd", "/su", "/ping", "/link"}) {
    struct stat st = Lstat(root + p);
    EXPECT_EQ(st.st_uid, 100000u) << p;
    EXPECT_EQ(st.st_gid, 200000u) << p;
  }
  // Shifted once, not twice through its second name.
  EXPECT_EQ(Lstat(root + "/hard-link").st_uid, 101000u);
  EXPECT_EQ(Lstat(root + "/user-file").st_gid, 200050u);
  EXPECT_EQ(Lstat(root + "/su").st_mode & 07777, 04755u);
  if (caps) {
    unsigned char got[32];
    ASSERT_EQ(getxattr((root + "/ping").c_str(), "security.capability", got, sizeof(got)),
              static_cast<ssize_t>(sizeof(cap)));
  }
  // Run again: nothing is mapped twice into range (ids past the range stay).
  ASSERT_TRUE(ShiftOwnership(root, {0, 100000, 65536}, {0, 200000, 65536}, &changed).ok());
  EXPECT_EQ(changed, 0u);
  EXPECT_EQ(Lstat(root + "/etc").st_uid, 100000u);
}

}  // namespace
}  // namespace podvisor::agent
