#include "pod-sandbox/vm_cgroup.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

namespace fs = std::filesystem;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(VmCgroupTest, CgroupParentMustBeACleanAbsolutePath) {
  EXPECT_TRUE(ValidateCgroupParent("").ok());
  EXPECT_TRUE(ValidateCgroupParent("/").ok());
  EXPECT_TRUE(ValidateCgroupParent("/kubepods/burstable/pod1234-ab_c.d").ok());
  for (const char* bad : {"kubepods", "/kubepods/../../etc", "/a//b", "/a/./b", "/a/b/",
                          "/a b", "/a\nb", "/kubepods.slice:cri:x"}) {
    absl::Status s = ValidateCgroupParent(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(ValidateCgroupParent("/" + std::string(600, 'a')).code(),
            absl::StatusCode::kInvalidArgument);
}

// A directory shaped like a v1 /sys/fs/cgroup: the controllers as directories.
class VmCgroupV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* c : {"memory", "cpu", "cpuacct", "pids", "blkio"}) {
      fs::create_directories(dir_.Join(c));
    }
  }
  testing::TempDir dir_;
};

TEST_F(VmCgroupV1Test, CreatesTheCgroupUnderEachControllerWithThePodsLimits) {
  VmCgroup cgroup(dir_.path(), "/kubepods/burstable/pod-a", "abc");
  ASSERT_TRUE(cgroup.Create({(512ull + kVmmOverheadMib) << 20, 50000, 100000}).ok());
  const std::string rel = "/kubepods/burstable/pod-a/podvisor-abc";
  std::vector<std::string> dirs = cgroup.Dirs();
  EXPECT_EQ(dirs, (std::vector<std::string>{dir_.Join("memory") + rel, dir_.Join("cpu") + rel,
                                            dir_.Join("cpuacct") + rel, dir_.Join("pids") + rel}));
  for (const std::string& d : dirs) EXPECT_TRUE(fs::is_directory(d)) << d;
  EXPECT_FALSE(fs::exists(dir_.Join("blkio") + rel)) << "only the controllers kubelet reads";
  EXPECT_EQ(Read(dir_.Join("memory") + rel + "/memory.limit_in_bytes"),
            std::to_string((512ull + 256) << 20));
  EXPECT_EQ(Read(dir_.Join("cpu") + rel + "/cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(Read(dir_.Join("cpu") + rel + "/cpu.cfs_period_us"), "100000");
  EXPECT_FALSE(fs::exists(dir_.Join("cpuacct") + rel + "/cpu.cfs_quota_us"));
  EXPECT_FALSE(fs::exists(dir_.Join("pids") + rel + "/memory.limit_in_bytes"));
}

TEST_F(VmCgroupV1Test, NoQuotaWithoutAPeriodAndRemoveOfAnAbsentCgroupSucceeds) {
  VmCgroup cgroup(dir_.path(), "/p", "x");
  ASSERT_TRUE(cgroup.Create({1 << 30, 50000, 0}).ok());
  EXPECT_FALSE(fs::exists(dir_.Join("cpu/p/podvisor-x/cpu.cfs_quota_us")));
  // cgroupfs removes a directory with its control files; a plain directory needs them gone.
  for (const std::string& d : cgroup.Dirs()) {
    for (const auto& f : fs::directory_iterator(d)) fs::remove(f.path());
  }
  EXPECT_TRUE(cgroup.Remove().ok());
  for (const std::string& d : cgroup.Dirs()) EXPECT_FALSE(fs::exists(d));
  EXPECT_TRUE(cgroup.Remove().ok()) << "idempotent";
}

TEST_F(VmCgroupV1Test, AFailedStepUndoesWhatItMade) {
  // Under the last controller the parent is a file: the cgroup cannot be made there.
  std::ofstream(dir_.Join("pids/p")) << "";
  VmCgroup cgroup(dir_.path(), "/p", "x");
  absl::Status s = cgroup.Create({1 << 30, 0, 0});
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(fs::exists(dir_.Join("memory/p"))) << "the memory cgroup made first is undone";
  EXPECT_FALSE(fs::exists(dir_.Join("cpu/p")));
}

TEST(VmCgroupV2Test, UnifiedHierarchyGetsMemoryMaxAndCpuMax) {
  testing::TempDir dir;
  std::ofstream(dir.Join("cgroup.controllers")) << "cpu memory pids\n";
  VmCgroup cgroup(dir.path(), "/kubepods/pod-b", "id");
  ASSERT_TRUE(cgroup.Create({768ull << 20, 200000, 100000}).ok());
  ASSERT_EQ(cgroup.Dirs(), std::vector<std::string>{dir.Join("kubepods/pod-b/podvisor-id")});
  EXPECT_EQ(Read(dir.Join("kubepods/pod-b/podvisor-id/memory.max")), std::to_string(768ull << 20));
  EXPECT_EQ(Read(dir.Join("kubepods/pod-b/podvisor-id/cpu.max")), "200000 100000");
}

TEST_F(VmCgroupV1Test, UpdateChangesTheQuotaOfTheExistingCgroupOnly) {
  VmCgroup cgroup(dir_.path(), "/kubepods/pod-b", "def");
  EXPECT_EQ(cgroup.Update({0, 30000, 100000}).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(cgroup.Create({768ull << 20, 0, 0}).ok());
  const std::string rel = "/kubepods/pod-b/podvisor-def";
  ASSERT_TRUE(cgroup.Update({0, 30000, 100000}).ok());
  EXPECT_EQ(Read(dir_.Join("cpu") + rel + "/cpu.cfs_quota_us"), "30000");
  EXPECT_EQ(Read(dir_.Join("memory") + rel + "/memory.limit_in_bytes"),
            std::to_string(768ull << 20))
      << "memory left as it was";
  ASSERT_TRUE(cgroup.Update({0, -1, 100000}).ok());
  EXPECT_EQ(Read(dir_.Join("cpu") + rel + "/cpu.cfs_quota_us"), "-1") << "no quota";
}

}  // namespace
}  // namespace podvisor
