#include "hypervisor/process_reaper.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "gtest/gtest.h"

namespace podvisor {
namespace {

// The state letter of /proc/<pid>/stat ('Z' for a zombie), or '-' when the pid is gone.
char StateOf(pid_t pid) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return '-';
  size_t close = text->rfind(')');
  return close == std::string::npos || close + 2 >= text->size() ? '?' : (*text)[close + 2];
}

// Starts a grandchild the way libvirt starts QEMU (the intermediate child exits at once), which
// sleeps `sleep_ms` and exits. Returns the grandchild's pid.
pid_t StartOrphan(int sleep_ms) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  pid_t child = fork();
  if (child == 0) {
    pid_t grandchild = fork();
    if (grandchild == 0) {
      usleep(sleep_ms * 1000);
      _exit(0);
    }
    (void)!write(pipefd[1], &grandchild, sizeof(grandchild));
    _exit(0);
  }
  close(pipefd[1]);
  pid_t grandchild = -1;
  (void)!read(pipefd[0], &grandchild, sizeof(grandchild));
  close(pipefd[0]);
  int status;
  waitpid(child, &status, 0);
  return grandchild;
}

class ProcessReaperTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(BecomeChildSubreaper().ok()); }
};

TEST_F(ProcessReaperTest, DaemonisedGrandchildBecomesOursAndIsReapedThroughItsPidfd) {
  int subreaper = 0;
  ASSERT_EQ(prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0), 0);
  EXPECT_NE(subreaper, 0);
  pid_t pid = StartOrphan(100);
  ASSERT_GT(pid, 0);
  int fd = OpenPidfd(pid);
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(ReapPidfd(fd)) << "still running: nothing to reap";
  ASSERT_TRUE(WaitPidfdExit(fd, absl::Seconds(30)));
  EXPECT_EQ(StateOf(pid), 'Z') << "an exited orphan waits for us, not for PID 1";
  EXPECT_TRUE(ReapPidfd(fd));
  EXPECT_EQ(StateOf(pid), '-');
  close(fd);
}

TEST_F(ProcessReaperTest, TerminateAndReapKillsWhatIgnoresSigterm) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGTERM, SIG_IGN);
    (void)!write(ready[1], "r", 1);
    for (;;) pause();
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1) << "the child ignores SIGTERM from now on";
  close(ready[0]);
  close(ready[1]);
  int fd = OpenPidfd(pid);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(TerminateAndReap(fd, absl::Milliseconds(200)).ok());
  EXPECT_EQ(StateOf(pid), '-') << "gone, not even a zombie";
  int status;
  EXPECT_EQ(waitpid(pid, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  close(fd);
}

TEST_F(ProcessReaperTest, SweepReapsOnlyZombiesThatOutlivedASweep) {
  pid_t orphan = StartOrphan(0);
  ASSERT_GT(orphan, 0);
  // A direct child whose exit status its owner collects after the first sweep: a sweep that
  // reaped at first sight would steal it.
  pid_t own = fork();
  if (own == 0) _exit(7);
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((StateOf(orphan) != 'Z' || StateOf(own) != 'Z') && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(StateOf(orphan), 'Z');
  OrphanSweeper sweeper;
  EXPECT_EQ(sweeper.Sweep(), 0) << "first sight: nobody is reaped";
  int status = 0;
  ASSERT_EQ(waitpid(own, &status, 0), own) << "the owner still gets its child's status";
  EXPECT_EQ(WEXITSTATUS(status), 7);
  EXPECT_EQ(sweeper.Sweep(), 1) << "the orphan nobody waits for is reaped at the second sweep";
  EXPECT_EQ(StateOf(orphan), '-');
}

}  // namespace
}  // namespace podvisor
