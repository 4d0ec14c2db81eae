// Capability probe QEMUs a daemon left in libvirt's embedded root: killed when the pid file names
// a process that is that probe, never when the pid is anything else's.
#include "hypervisor/capability_probes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

// A child whose command line names `socket` (as a probe QEMU's -qmp argument does); it sleeps.
pid_t StartLookalike(const std::string& socket) {
  pid_t pid = fork();
  if (pid == 0) {
    // A group of its own, which the test ends (bash's sleep outlives bash), and no descriptor of
    // the test's: an orphaned sleep would hold ctest's output pipe open until it ends.
    setpgid(0, 0);
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd <= 2; ++fd) dup2(null, fd);
    execl("/bin/bash", "bash", "-c", "sleep 100; true", socket.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

std::string MakeProbeDir(const std::string& lib, const std::string& name, pid_t pid) {
  const std::string dir = lib + "/" + name;
  EXPECT_EQ(mkdir(dir.c_str(), 0700), 0);
  std::ofstream(dir + "/qmp.pid") << pid << "\n";
  return dir;
}

TEST(CapabilityProbesTest, KillsTheProbeOfEachDirectoryAndNothingElse) {
  testing::TempDir root;
  const std::string lib = root.Join("lib/qemu");
  ASSERT_EQ(system(("mkdir -p " + lib).c_str()), 0);
  EXPECT_EQ(KillCapabilityProbes(root.Join("none"), true), 0);  // no libvirt root yet

  const std::string probe_dir = lib + "/qmp-AAAAAA";
  pid_t probe = StartLookalike(probe_dir + "/qmp.monitor");
  ASSERT_GT(probe, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // exec'd: the cmdline is bash's
  MakeProbeDir(lib, "qmp-AAAAAA", probe);
  // A pid file naming a process that is not a probe (another directory's socket; this test).
  pid_t other = StartLookalike(lib + "/qmp-ZZZZZZ/qmp.monitor");
  ASSERT_GT(other, 0);
  const std::string other_dir = MakeProbeDir(lib, "qmp-BBBBBB", other);
  MakeProbeDir(lib, "qmp-CCCCCC", getpid());
  std::ofstream(MakeProbeDir(lib, "qmp-DDDDDD", 0) + "/qmp.pid") << "not a pid";

  EXPECT_EQ(KillCapabilityProbes(root.path(), false), 1);
  int status = 0;
  ASSERT_EQ(waitpid(probe, &status, 0), probe);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_EQ(waitpid(other, &status, WNOHANG), 0) << "another process was killed";
  struct stat st;
  EXPECT_EQ(stat(other_dir.c_str(), &st), 0) << "removed without remove_dirs";

  EXPECT_EQ(KillCapabilityProbes(root.path(), true), 0);
  EXPECT_NE(stat(other_dir.c_str(), &st), 0) << "left with remove_dirs";
  EXPECT_NE(stat(probe_dir.c_str(), &st), 0);
  EXPECT_EQ(waitpid(other, &status, WNOHANG), 0);
  kill(other, SIGKILL);
  waitpid(other, &status, 0);
  kill(-probe, SIGKILL);
  kill(-other, SIGKILL);
}

}  // namespace
}  // namespace podvisor
