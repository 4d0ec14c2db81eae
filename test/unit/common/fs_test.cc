#include "common/fs.h"

#include <sys/stat.h>

#include <filesystem>

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

}  // namespace
}  // namespace podvisor
