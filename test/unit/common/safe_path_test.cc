#include "common/safe_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/fs.h"
#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

namespace fs = std::filesystem;

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int OpenFdCount() {
  int n = 0;
  for (auto& e : fs::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// A tree standing for the guest-writable shared directory, and a directory outside it with the
// host data that must never be touched.
class SafePathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_ = dir_.Join("tree");
    outside_ = dir_.Join("outside");
    fs::create_directories(tree_);
    fs::create_directories(outside_ + "/sub");
    WriteText(outside_ + "/precious", "host data");
    WriteText(outside_ + "/sub/deep", "more host data");
    absl::StatusOr<UniqueFd> fd = OpenTrustedDir(tree_);
    ASSERT_TRUE(fd.ok()) << fd.status();
    tree_fd_ = *std::move(fd);
  }

  void ExpectOutsideIntact() {
    EXPECT_EQ(ReadText(outside_ + "/precious"), "host data");
    EXPECT_EQ(ReadText(outside_ + "/sub/deep"), "more host data");
  }

  testing::TempDir dir_;
  std::string tree_;
  std::string outside_;
  UniqueFd tree_fd_;
};

TEST_F(SafePathTest, OpenBeneathRefusesSymlinksAndEscapes) {
  fs::create_symlink(outside_, tree_ + "/link");
  absl::StatusOr<UniqueFd> through = OpenBeneath(tree_fd_.get(), "link/precious", O_RDONLY);
  ASSERT_FALSE(through.ok());
  EXPECT_EQ(through.status().code(), absl::StatusCode::kFailedPrecondition) << through.status();
  absl::StatusOr<UniqueFd> up = OpenBeneath(tree_fd_.get(), "../outside/precious", O_RDONLY);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.status().code(), absl::StatusCode::kPermissionDenied) << up.status();
  absl::StatusOr<UniqueFd> absolute = OpenBeneath(tree_fd_.get(), outside_ + "/precious", O_RDONLY);
  EXPECT_FALSE(absolute.ok());
  // The same path without the symlink opens.
  fs::create_directories(tree_ + "/real");
  WriteText(tree_ + "/real/f", "x");
  EXPECT_TRUE(OpenBeneath(tree_fd_.get(), "real/f", O_RDONLY).ok());
}

TEST_F(SafePathTest, MakeDirAndFileAtNeverFollowASymlink) {
  // A guest plants symlinks where the host is about to create its bind targets.
  fs::create_symlink(outside_ + "/sub", tree_ + "/d");
  fs::create_symlink(outside_ + "/created-by-host", tree_ + "/f");
  absl::StatusOr<UniqueFd> d = MakeDirAt(tree_fd_.get(), "d", 0755);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<UniqueFd> f = MakeFileAt(tree_fd_.get(), "f", 0644);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(fs::exists(outside_ + "/created-by-host"));
  EXPECT_FALSE(MakeDirAt(tree_fd_.get(), "a/b", 0755).ok());
  EXPECT_FALSE(MakeDirAt(tree_fd_.get(), "..", 0755).ok());

  ::umask(022);
  absl::StatusOr<UniqueFd> made = MakeDirAt(tree_fd_.get(), "new", 0711);
  ASSERT_TRUE(made.ok()) << made.status();
  struct stat st {};
  ASSERT_EQ(::stat((tree_ + "/new").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  ASSERT_TRUE(MakeFileAt(tree_fd_.get(), "file", 0640).ok());
  ASSERT_EQ(::stat((tree_ + "/file").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  ExpectOutsideIntact();
}

TEST_F(SafePathTest, RemoveTreeAtRemovesSymlinksWithoutFollowingThem) {
  fs::create_directories(tree_ + "/c/a/b");
  WriteText(tree_ + "/c/a/b/file", "guest");
  fs::create_symlink(outside_, tree_ + "/c/a/to-dir");
  fs::create_symlink(outside_ + "/precious", tree_ + "/c/a/b/to-file");
  fs::create_symlink("../../../outside", tree_ + "/c/a/b/relative");
  ASSERT_TRUE(RemoveTreeAt(tree_fd_.get(), "c").ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree_ + "/c")));
  ExpectOutsideIntact();
}

// The top of the removal itself swapped for a symlink (the guest replaced the container's
// directory): only the symlink goes.
TEST_F(SafePathTest, RemoveTreeAtOfASymlinkRemovesOnlyTheLink) {
  fs::create_symlink(outside_, tree_ + "/c");
  ASSERT_TRUE(RemoveTreeAt(tree_fd_.get(), "c").ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree_ + "/c")));
  ExpectOutsideIntact();
  // RemoveAll does the same for the last component of a path.
  fs::create_symlink(outside_, tree_ + "/c2");
  ASSERT_TRUE(RemoveAll(tree_ + "/c2").ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree_ + "/c2")));
  ExpectOutsideIntact();
}

// A guest swapping a directory of the tree for a symlink to the host data again and again while
// the host removes the tree: whatever the interleaving, nothing outside is touched.
TEST_F(SafePathTest, RemoveTreeAtRacingASymlinkSwapTouchesNothingOutside) {
  for (int round = 0; round < 20; ++round) {
    fs::create_directories(tree_ + "/c/d/e");
    for (int i = 0; i < 50; ++i) WriteText(tree_ + "/c/d/e/f" + std::to_string(i), "guest");
    fs::create_symlink(outside_, tree_ + "/c/swap");
    std::atomic<bool> stop{false};
    std::thread guest([&] {
      const std::string c = tree_ + "/c";
      while (!stop.load()) {
        // Atomically exchange the directory "d" and the symlink "swap".
        ::renameat2(AT_FDCWD, (c + "/d").c_str(), AT_FDCWD, (c + "/swap").c_str(), RENAME_EXCHANGE);
      }
    });
    absl::Status racing = RemoveTreeAt(tree_fd_.get(), "c");
    stop = true;
    guest.join();
    (void)racing;  // may lose to the guest (UNAVAILABLE); never may it reach outside
    ExpectOutsideIntact();
    ASSERT_TRUE(RemoveTreeAt(tree_fd_.get(), "c").ok());
    EXPECT_FALSE(fs::exists(fs::symlink_status(tree_ + "/c")));
  }
  ExpectOutsideIntact();
}

TEST_F(SafePathTest, RemoveTreeAtDetachesMountsAndKeepsTheirData) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  fs::create_directories(tree_ + "/c/vol/deeper");
  WriteText(tree_ + "/c/file-target", "");
  WriteText(outside_ + "/single", "one file");
  ASSERT_EQ(::mount(outside_.c_str(), (tree_ + "/c/vol/deeper").c_str(), nullptr, MS_BIND, nullptr),
            0);
  ASSERT_EQ(::mount((outside_ + "/single").c_str(), (tree_ + "/c/file-target").c_str(), nullptr,
                    MS_BIND, nullptr),
            0);
  // A mount stacked on a mount.
  ASSERT_EQ(::mount("tmpfs", (tree_ + "/c/vol").c_str(), "tmpfs", 0, "size=1m"), 0);
  ASSERT_EQ(::mount("tmpfs", (tree_ + "/c/vol").c_str(), "tmpfs", 0, "size=1m"), 0);
  ASSERT_TRUE(RemoveTreeAt(tree_fd_.get(), "c").ok());
  EXPECT_FALSE(fs::exists(tree_ + "/c"));
  ExpectOutsideIntact();
  EXPECT_EQ(ReadText(outside_ + "/single"), "one file");
  absl::StatusOr<std::vector<std::string>> left = MountPointsUnder(tree_);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty()) << (*left)[0];
}

// A tree far deeper than the descriptors the removal may hold: removed, no descriptor leaked.
TEST_F(SafePathTest, RemoveTreeAtOfADeepTreeHoldsFewDescriptors) {
  std::string rel = "c";
  ASSERT_EQ(::mkdirat(tree_fd_.get(), "c", 0755), 0);
  UniqueFd cur(::openat(tree_fd_.get(), "c", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i < 400; ++i) {
    ASSERT_EQ(::mkdirat(cur.get(), "d", 0755), 0);
    UniqueFd file(::openat(cur.get(), "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    cur = UniqueFd(::openat(cur.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(cur.valid());
  }
  cur = UniqueFd();
  const int before = OpenFdCount();
  // Fewer descriptors than the depth would need one per level.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit low = old;
  low.rlim_cur = before + 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  absl::Status s = RemoveTreeAt(tree_fd_.get(), "c");
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(fs::exists(tree_ + "/c"));
  EXPECT_EQ(OpenFdCount(), before);
  EXPECT_TRUE(fs::is_empty(tree_));
}

TEST_F(SafePathTest, MissingEntryIsNotAnError) {
  EXPECT_TRUE(RemoveTreeAt(tree_fd_.get(), "nothing").ok());
  EXPECT_TRUE(RemoveAll(tree_ + "/nothing/below").ok());
  EXPECT_FALSE(RemoveTreeAt(tree_fd_.get(), "../outside").ok());
  ExpectOutsideIntact();
}

TEST_F(SafePathTest, ClonedTreeAttachesOnADescriptor) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  absl::StatusOr<UniqueFd> tree = CloneMountTree(outside_, true);
  ASSERT_TRUE(tree.ok()) << tree.status();
  absl::StatusOr<UniqueFd> target = MakeDirAt(tree_fd_.get(), "vol", 0755);
  ASSERT_TRUE(target.ok());
  ASSERT_TRUE(MoveMountTo(tree->get(), target->get()).ok());
  EXPECT_EQ(ReadText(tree_ + "/vol/precious"), "host data");
  ASSERT_TRUE(RemoveTreeAt(tree_fd_.get(), "vol").ok());
  EXPECT_FALSE(fs::exists(tree_ + "/vol"));
  ExpectOutsideIntact();
}

}  // namespace
}  // namespace podvisor
