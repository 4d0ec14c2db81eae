#include "pod-sandbox/container_log_writer.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/fs.h"
#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

const absl::Time kT = absl::FromUnixNanos(1795000000123456700);  // fraction ends in zeros
const std::string kTs = ContainerLogWriter::FormatTime(kT);

std::string Read(const std::string& path) { return ReadFile(path).value_or("<unreadable>"); }

TEST(ContainerLogWriterTest, TimeIsRfc3339NanoUtc) {
  EXPECT_EQ(ContainerLogWriter::FormatTime(absl::FromUnixNanos(1795000000123456700)),
            "2026-11-18T11:06:40.1234567Z");
  EXPECT_EQ(ContainerLogWriter::FormatTime(absl::FromUnixSeconds(1795000000)),
            "2026-11-18T11:06:40Z");
  EXPECT_EQ(ContainerLogWriter::FormatTime(absl::FromUnixNanos(1795000000000000001)),
            "2026-11-18T11:06:40.000000001Z");
}

TEST(ContainerLogWriterTest, WholeLinesPerStreamInOrder) {
  testing::TempDir dir;
  auto w = ContainerLogWriter::Open(dir.Join("c.log"));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "hello\nwor", kT).ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStderr, "oops\n", kT).ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "ld\n\n", kT).ok());
  EXPECT_EQ(Read(dir.Join("c.log")), kTs + " stdout F hello\n" + kTs + " stderr F oops\n" + kTs +
                                         " stdout F world\n" + kTs + " stdout F \n");
}

TEST(ContainerLogWriterTest, LongLinesSplitIntoPartialsEndingWithFull) {
  testing::TempDir dir;
  auto w = ContainerLogWriter::Open(dir.Join("c.log"), 4);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "abcdefghij\n", kT).ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "ab", kT).ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "cd", kT).ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "\n", kT).ok());
  EXPECT_EQ(Read(dir.Join("c.log")), kTs + " stdout P abcd\n" + kTs + " stdout P efgh\n" + kTs +
                                         " stdout F ij\n" + kTs + " stdout F abcd\n");
}

TEST(ContainerLogWriterTest, CloseStreamFlushesUnterminatedLine) {
  testing::TempDir dir;
  auto w = ContainerLogWriter::Open(dir.Join("c.log"));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStderr, "no newline", kT).ok());
  EXPECT_EQ(Read(dir.Join("c.log")), "");
  ASSERT_TRUE((*w)->CloseStream(LogStream::kStdout, kT).ok());  // nothing pending there
  ASSERT_TRUE((*w)->CloseStream(LogStream::kStderr, kT).ok());
  EXPECT_EQ(Read(dir.Join("c.log")), kTs + " stderr F no newline\n");
}

TEST(ContainerLogWriterTest, ReopenAfterRotation) {
  testing::TempDir dir;
  const std::string path = dir.Join("c.log");
  auto w = ContainerLogWriter::Open(path);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "before\n", kT).ok());
  std::filesystem::rename(path, path + ".1");  // what kubelet's rotation does
  ASSERT_TRUE((*w)->Reopen().ok());
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "after\n", kT).ok());
  EXPECT_EQ(Read(path + ".1"), kTs + " stdout F before\n");
  EXPECT_EQ(Read(path), kTs + " stdout F after\n");
}

TEST(ContainerLogWriterTest, BeforeWriteTellsTheFileSizeTheWriteLeadsTo) {
  testing::TempDir dir;
  const std::string path = dir.Join("c.log");
  std::ofstream(path) << "earlier\n";  // appended to, not replaced
  auto w = ContainerLogWriter::Open(path);
  ASSERT_TRUE(w.ok());
  int calls = 0;
  uint64_t size_after = 0, inode = 0;
  size_t pending = 0;
  auto before = [&](uint64_t ino, uint64_t size, size_t p) {
    ++calls;
    inode = ino;
    size_after = size;
    pending = p;
    EXPECT_LT(std::filesystem::file_size(path), size) << "called before the write";
  };
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "a\nb\npart", kT, before).ok());
  EXPECT_EQ(calls, 1);  // both lines in one write
  EXPECT_EQ(size_after, std::filesystem::file_size(path));
  EXPECT_EQ(pending, 4u);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(inode, static_cast<uint64_t>(st.st_ino));
  // Nothing to write: not called.
  ASSERT_TRUE((*w)->Write(LogStream::kStdout, "more", kT, before).ok());
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE((*w)->CloseStream(LogStream::kStdout, kT, before).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(pending, 0u);
  EXPECT_EQ(size_after, std::filesystem::file_size(path));
}

TEST(ContainerLogWriterTest, OpenFailsWithPath) {
  auto w = ContainerLogWriter::Open("/nonexistent/dir/c.log");
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("/nonexistent/dir/c.log"), absl::string_view::npos);
}

}  // namespace
}  // namespace podvisor
