#include "common/fs.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

TEST(FsTest, WriteFileAtomicReplacesWholeFile) {
  testing::TempDir dir;
  const std::string path = dir.Join("f");
  ASSERT_TRUE(WriteFileAtomic(path, "first version, longer").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second", 0600).ok());
  absl::StatusOr<std::string> read = ReadFile(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, "second");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temp file is left beside it.
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(FsTest, ErrorsCarryCodeAndPath) {
  absl::StatusOr<std::string> read = ReadFile("/nonexistent/podvisor/file");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(read.status().message().find("/nonexistent/podvisor/file"), absl::string_view::npos);
  absl::Status w = WriteFileAtomic("/nonexistent/podvisor/file", "x");
  EXPECT_EQ(w.code(), absl::StatusCode::kNotFound);
}

TEST(FsTest, MakeDirsAndRemoveAll) {
  testing::TempDir dir;
  const std::string deep = dir.Join("a/b/c");
  ASSERT_TRUE(MakeDirs(deep, 0700).ok());
  struct stat st {};
  ASSERT_EQ(::stat(deep.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_TRUE(RemoveAll(dir.Join("a")).ok());
  EXPECT_FALSE(std::filesystem::exists(dir.Join("a")));
  EXPECT_TRUE(RemoveAll(dir.Join("a")).ok());  // missing is fine
}

// A bind mount of someone's directory under a tree being removed: the mount goes, the data stays.
TEST(FsTest, RemoveAllNeverDeletesThroughAMount) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to bind-mount";
  podvisor::testing::TempDir dir;
  const std::string victim = dir.Join("victim");
  const std::string tree = dir.Join("tree with space");
  ASSERT_TRUE(MakeDirs(victim + "/sub").ok());
  std::ofstream(victim + "/sub/data") << "keep me";
  ASSERT_TRUE(MakeDirs(tree + "/a/mnt").ok());
  std::ofstream(tree + "/file");
  std::ofstream(tree + "/a/file-mnt");
  ASSERT_EQ(::mount(victim.c_str(), (tree + "/a/mnt").c_str(), nullptr, MS_BIND | MS_REC, nullptr),
            0);
  ASSERT_EQ(::mount((victim + "/sub/data").c_str(), (tree + "/a/file-mnt").c_str(), nullptr,
                    MS_BIND, nullptr),
            0);
  absl::StatusOr<std::vector<std::string>> mounts = MountPointsUnder(tree);
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_EQ(mounts->size(), 2u);

  ASSERT_TRUE(RemoveAll(tree).ok());
  EXPECT_FALSE(std::filesystem::exists(tree));
  std::ifstream in(victim + "/sub/data");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "keep me");
  mounts = MountPointsUnder(dir.Join(""));
  ASSERT_TRUE(mounts.ok());
  EXPECT_TRUE(mounts->empty());
}

}  // namespace
}  // namespace podvisor
