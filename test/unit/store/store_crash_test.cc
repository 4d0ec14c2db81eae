// kill -9 of a process in the middle of writing must leave the store readable, with every
// transaction either wholly applied or not at all, and with everything that was acknowledged.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/store.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

// Child: writes transactions forever. Transaction n puts ("pair", "a<n>") and ("pair", "b<n>")
// with the same value, deletes the pair n-4, and after the commit reports n through `ack_fd`.
[[noreturn]] void WriteForever(const std::string& path, int ack_fd, int start) {
  auto store = RecordStore::Open(path);
  if (!store.ok()) _exit(3);
  std::string payload(2000, 'x');
  for (int n = start;; ++n) {
    std::string value = absl::StrCat(n, ":", payload);
    std::vector<RecordWrite> tx = {{"pair", absl::StrCat("a", n), value},
                                   {"pair", absl::StrCat("b", n), value}};
    if (n - 4 >= 0) {
      tx.push_back({"pair", absl::StrCat("a", n - 4), std::nullopt});
      tx.push_back({"pair", absl::StrCat("b", n - 4), std::nullopt});
    }
    if (!(*store)->Apply(tx).ok()) _exit(4);
    if (::write(ack_fd, &n, sizeof n) != sizeof n) _exit(5);
  }
}

TEST(StoreCrashTest, KillDuringWritesLosesNothingAcknowledged) {
  testing::TempDir dir;
  const std::string path = dir.Join("crash.db");
  std::mt19937 rng(12345);
  int next = 0;
  for (int round = 0; round < 12; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      WriteForever(path, fds[1], next);
    }
    ::close(fds[1]);
    // Let it commit a random number of transactions, then kill it mid-stream.
    int want = 5 + static_cast<int>(rng() % 40);
    int last_acked = -1;
    for (int i = 0; i < want; ++i) {
      int n;
      ASSERT_EQ(::read(fds[0], &n, sizeof n), static_cast<ssize_t>(sizeof n));
      last_acked = n;
    }
    ::usleep(rng() % 3000);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer failed with exit " << WEXITSTATUS(status);
    int n;
    while (::read(fds[0], &n, sizeof n) == static_cast<ssize_t>(sizeof n)) last_acked = n;
    ::close(fds[0]);

    auto store = RecordStore::Open(path);
    ASSERT_TRUE(store.ok()) << "round " << round << ": " << store.status();
    auto rows = (*store)->List("pair");
    ASSERT_TRUE(rows.ok()) << rows.status();
    std::map<std::string, std::string> by_id(rows->begin(), rows->end());
    int highest = -1;
    for (const auto& [id, value] : by_id) {
      int k = 0;
      ASSERT_TRUE(absl::SimpleAtoi(id.substr(1), &k)) << id;
      highest = std::max(highest, k);
      // Each half of a pair exists only with its twin, with the same complete value.
      std::string twin = absl::StrCat(id[0] == 'a' ? "b" : "a", k);
      ASSERT_TRUE(by_id.contains(twin)) << "round " << round << ": torn transaction at " << id;
      EXPECT_EQ(by_id[twin], value);
      EXPECT_EQ(value.size(), absl::StrCat(k, ":").size() + 2000);
    }
    // Everything acknowledged is there (the last acked transaction, at least).
    ASSERT_GE(highest, last_acked) << "round " << round << ": acknowledged write lost";
    next = highest + 1;
  }
}

}  // namespace
}  // namespace podvisor
