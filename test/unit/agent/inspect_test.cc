#include "agent/inspect.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor::agent {
namespace {

TEST(InspectTest, ContainerIdComesFromTheCgroupPath) {
  EXPECT_EQ(ContainerOfCgroup("0::/podvisor/c1\n"), "c1");
  EXPECT_EQ(ContainerOfCgroup("0::/podvisor/abc-1.2/sub\n"), "abc-1.2");
  EXPECT_EQ(ContainerOfCgroup("12:memory:/podvisor/x\n11:cpu:/\n"), "x");
  EXPECT_EQ(ContainerOfCgroup("0::/\n"), "");
  EXPECT_EQ(ContainerOfCgroup("0::/podvisor/\n"), "");
  EXPECT_EQ(ContainerOfCgroup("0::/podvisor/bad id\n"), "") << "not an id the agent makes";
}

TEST(InspectTest, ThisProcessItsMountsAndItsParentAreSeen) {
  v1::InspectResponse r = InspectGuest("/proc", "/sys");
  bool self = false;
  for (const v1::GuestProcess& p : r.processes()) {
    if (p.pid() != getpid()) continue;
    self = true;
    EXPECT_EQ(p.ppid(), getppid());
    EXPECT_EQ(p.uid(), getuid());
    EXPECT_NE(p.command().find("inspect_test"), std::string::npos) << p.command();
    EXPECT_GT(p.rss_bytes(), 0u);
    EXPECT_EQ(p.state(), "R");
  }
  EXPECT_TRUE(self);
  bool root = false;
  for (const v1::GuestMount& m : r.mounts()) root = root || m.target() == "/";
  EXPECT_TRUE(root);
  EXPECT_FALSE(r.truncated());
}

// A fake /proc and /sys: a process whose command holds spaces and parentheses, a kernel thread,
// a process that vanished between readdir and read, a mounted disk and an unmounted one.
TEST(InspectTest, FieldsAreParsedFromProcAndSys) {
  podvisor::testing::TempDir dir;
  auto write = [&](const std::string& rel, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(dir.Join(rel)).parent_path());
    std::ofstream(dir.Join(rel)) << text;
  };
  const std::string stat_tail =
      " S 1 7 7 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 50 1000000 300 18446744073709551615";
  write("proc/7/stat", "7 (my (odd) cmd)" + stat_tail);
  write("proc/7/cmdline", std::string("/bin/sh\0-c\0sleep 1\0", 19));
  write("proc/7/status", "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n");
  write("proc/7/cgroup", "0::/podvisor/ctr1\n");
  write("proc/2/stat", "2 (kthreadd)" + stat_tail);
  write("proc/2/cmdline", "");
  write("proc/2/comm", "kthreadd\n");
  write("proc/2/status", "Uid:\t0\t0\t0\t0\n");
  write("proc/2/cgroup", "0::/\n");
  std::filesystem::create_directories(dir.Join("proc/9"));  // gone: no stat
  write("proc/self/mountinfo",
        "1 0 0:1 / / rw - rootfs rootfs rw\n"
        "20 1 254:16 / /run/layers/l1 ro,relatime shared:3 - erofs /dev/vdb ro\n");
  write("sys/block/vdb/serial", "layer-l1\n");
  write("sys/block/vdb/size", "2048\n");
  write("sys/block/vdb/ro", "1\n");
  write("sys/block/vdc/serial", "");
  write("sys/block/vdc/size", "8\n");
  write("sys/block/vdc/ro", "0\n");

  v1::InspectResponse r = InspectGuest(dir.Join("proc"), dir.Join("sys"));
  ASSERT_EQ(r.processes_size(), 2);
  for (const v1::GuestProcess& p : r.processes()) {
    if (p.pid() == 7) {
      EXPECT_EQ(p.command(), "/bin/sh -c sleep 1");
      EXPECT_EQ(p.container_id(), "ctr1");
      EXPECT_EQ(p.uid(), 1000u);
      EXPECT_EQ(p.ppid(), 1);
      EXPECT_EQ(p.state(), "S");
      EXPECT_EQ(p.rss_bytes(), 300u * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
    } else {
      EXPECT_EQ(p.pid(), 2);
      EXPECT_EQ(p.command(), "[kthreadd]");
      EXPECT_EQ(p.container_id(), "");
    }
  }
  ASSERT_EQ(r.mounts_size(), 2);
  EXPECT_EQ(r.mounts(1).target(), "/run/layers/l1");
  EXPECT_EQ(r.mounts(1).fs_type(), "erofs");
  EXPECT_EQ(r.mounts(1).source(), "/dev/vdb");
  EXPECT_EQ(r.mounts(1).options(), "ro,relatime");
  ASSERT_EQ(r.disks_size(), 2);
  for (const v1::GuestDisk& d : r.disks()) {
    if (d.name() == "vdb") {
      EXPECT_EQ(d.serial(), "layer-l1");
      EXPECT_EQ(d.size_bytes(), 2048u * 512);
      EXPECT_TRUE(d.read_only());
      EXPECT_EQ(d.mount_point(), "/run/layers/l1");
    } else {
      EXPECT_EQ(d.name(), "vdc");
      EXPECT_FALSE(d.read_only());
      EXPECT_EQ(d.mount_point(), "");
    }
  }
}

TEST(InspectTest, ListsAreBoundedAndSayTheyWereCut) {
  podvisor::testing::TempDir dir;
  std::string mountinfo;
  for (int i = 0; i < kInspectMaxMounts + 10; ++i) {
    mountinfo += "1 0 0:1 / /m" + std::to_string(i) + " rw - tmpfs tmpfs rw\n";
  }
  std::filesystem::create_directories(dir.Join("proc/self"));
  std::ofstream(dir.Join("proc/self/mountinfo")) << mountinfo;
  v1::InspectResponse r = InspectGuest(dir.Join("proc"), dir.Join("sys"));
  EXPECT_EQ(r.mounts_size(), kInspectMaxMounts);
  EXPECT_TRUE(r.truncated());
}

}  // namespace
}  // namespace podvisor::agent
