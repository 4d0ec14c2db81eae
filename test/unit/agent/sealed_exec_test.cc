// The agent's sealed copies of the executables it runs (crun): what the copy is, that spawns run
// it, and that crun, run from it, no longer copies and executes itself again.
#include "agent/sealed_exec.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "agent/reaper.h"

namespace podvisor::agent {
namespace {

// Runs argv with `env`, returning what it wrote to stdout and stderr.
std::string Output(const std::vector<std::string>& argv, std::vector<std::string> env = {}) {
  int pipefd[2];
  EXPECT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  SpawnOptions opts;
  opts.stdout_fd = pipefd[1];
  opts.stderr_fd = pipefd[1];
  opts.env = std::move(env);
  pid_t pid = 0;
  Error err = Spawn(argv, opts, &pid);
  close(pipefd[1]);
  EXPECT_TRUE(err.ok()) << err.message();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  if (err.ok()) {
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
  }
  return out;
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(SealedExecTest, TheCopyIsSealedAgainstEveryChange) {
  ASSERT_TRUE(SealExecutable("/bin/sh").ok());
  const int fd = SealedExecutableFd("/bin/sh");
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fcntl(fd, F_GET_SEALS), static_cast<int>(SealedCopySeals()));
  EXPECT_NE(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  struct stat copy {
  }, file{};
  ASSERT_EQ(fstat(fd, &copy), 0);
  ASSERT_EQ(stat("/bin/sh", &file), 0);
  EXPECT_EQ(copy.st_size, file.st_size);
  // Not through its descriptor, nor reopened writable through /proc.
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  int w = open(proc.c_str(), O_WRONLY);
  if (w >= 0) {
    EXPECT_EQ(write(w, "x", 1), -1);
    EXPECT_EQ(errno, EPERM);
    EXPECT_NE(ftruncate(w, 0), 0);
    close(w);
  }
  // A second call keeps the first copy.
  ASSERT_TRUE(SealExecutable("/bin/sh").ok());
  EXPECT_EQ(SealedExecutableFd("/bin/sh"), fd);
}

TEST(SealedExecTest, SpawnsOfThePathRunTheCopy) {
  ASSERT_TRUE(SealExecutable("/bin/sh").ok());
  EXPECT_NE(Output({"/bin/sh", "-c", "readlink /proc/$$/exe"}).find("memfd:sh"), std::string::npos);
  // Another path to the same file is not the sealed one.
  EXPECT_EQ(SealedExecutableFd("/usr/bin/../bin/sh"), -1);
}

TEST(SealedExecTest, WhatCannotBeCopiedIsAnError) {
  EXPECT_FALSE(SealExecutable("/nonexistent/crun").ok());
  EXPECT_EQ(SealedExecutableFd("/nonexistent/crun"), -1);
  const std::string script = "/tmp/podvisor-sealed-exec-test.sh";
  { std::ofstream(script) << "#!/bin/sh\necho from-the-file\n"; }
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  Error not_elf = SealExecutable(script);
  EXPECT_EQ(not_elf.code(), Code::kFailedPrecondition) << not_elf.message();
  EXPECT_EQ(SealedExecutableFd(script), -1);
  EXPECT_EQ(Output({script}), "from-the-file\n");
  unlink(script.c_str());
  Error dir = SealExecutable("/usr/bin");
  EXPECT_EQ(dir.code(), Code::kFailedPrecondition) << dir.message();
  EXPECT_EQ(SealedExecutableFd("/usr/bin"), -1);
}

// The point of the copy: crun run from its file copies itself into a sealed memfd and executes
// that (the dynamic loader runs again each time); run from the agent's copy, it loads once.
TEST(SealedExecTest, CrunRunFromTheCopyLoadsOnce) {
  const std::string crun = "/usr/bin/crun";
  if (access(crun.c_str(), X_OK) != 0) GTEST_SKIP() << "no " << crun;
  const std::vector<std::string> env = {"LD_DEBUG=files", "PATH=/usr/sbin:/usr/bin:/bin"};
  const std::string marker = "initialize program:";  // once per image the loader loads
  const int from_file = Count(Output({"/usr/bin/../bin/crun", "--version"}, env), marker);
  EXPECT_GE(from_file, 2) << "crun no longer copies itself: this test shows nothing";
  ASSERT_TRUE(SealExecutable(crun).ok());
  const std::string out = Output({crun, "--version"}, env);
  EXPECT_EQ(Count(out, marker), 1) << out;
  EXPECT_NE(out.find("crun version"), std::string::npos) << out;
}

}  // namespace
}  // namespace podvisor::agent
