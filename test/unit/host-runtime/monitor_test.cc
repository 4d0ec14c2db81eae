// podvisor-monitor itself (the real binary), with a shell script standing in for `crun create`:
// the script starts the "container" in the background, writes its pid and exits, as crun create
// does, so the monitor must take the orphan as a subreaper, log its output and record its exit.

#include "host-runtime/monitor.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "host-runtime/monitor_client.h"
#include "test/support/temp_dir.h"

namespace podvisor::host {
namespace {

using ::podvisor::testing::TempDir;

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr char kTime[] = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z";

std::string Monitor() { return std::string(PODVISOR_BIN_DIR) + "/podvisor-monitor"; }

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class MonitorTest : public ::testing::Test {
 protected:
  // A "container" running `script` (started in the background by the create command).
  MonitorOptions Options(const std::string& script) {
    MonitorOptions o;
    o.id = "c1";
    o.dir = dir_.Join("mon");
    std::filesystem::create_directories(o.dir);
    o.pid_file = o.dir + "/container.pid";
    o.log_path = dir_.Join("c1.log");
    // Through fd 3: an asynchronous list gets /dev/null as its stdin before its redirections.
    o.create_argv = {"/bin/sh", "-c",
                     absl::StrCat("exec 3<&0; (", script, ") <&3 3<&- & echo $! > ", o.pid_file)};
    return o;
  }

  absl::StatusOr<MonitorExit> WaitExit(const std::string& dir, int seconds = 20) {
    for (int i = 0; i < seconds * 20; ++i) {
      absl::StatusOr<MonitorExit> e = ReadMonitorExit(dir);
      if (e.ok()) return e;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return absl::DeadlineExceededError("no exit");
  }

  TempDir dir_;
};

TEST_F(MonitorTest, LogsTheContainersOutputAndRecordsItsExit) {
  MonitorOptions o = Options("sleep 0.3; echo hello; echo oops >&2; exit 3");
  absl::StatusOr<StartedMonitor> m = StartMonitor(Monitor(), o, absl::Seconds(10));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->container_pid, 1);
  EXPECT_GT(m->monitor_pid, 1);
  // The monitor is nobody's child here: it was re-parented away from its starter.
  EXPECT_EQ(LiveMonitor(o.dir), m->monitor_pid);
  absl::StatusOr<MonitorExit> e = WaitExit(o.dir);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->exit_code, 3);
  EXPECT_EQ(e->signal, 0);
  EXPECT_GT(e->finished_at_ns, 0);
  std::string log = ReadAll(o.log_path);
  EXPECT_THAT(log, HasSubstr(" stdout F hello\n"));
  EXPECT_THAT(log, HasSubstr(" stderr F oops\n"));
  EXPECT_THAT(log.substr(0, log.find('\n') + 1),
              MatchesRegex(absl::StrCat(kTime, " std(out|err) F [a-z]+\n")));
  for (int i = 0; i < 100 && LiveMonitor(o.dir) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(LiveMonitor(o.dir), 0) << "the monitor exits after its container";
}

TEST_F(MonitorTest, AKilledContainerExitsWith128PlusTheSignal) {
  MonitorOptions o = Options("exec sleep 100");
  absl::StatusOr<StartedMonitor> m = StartMonitor(Monitor(), o, absl::Seconds(10));
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(::kill(m->container_pid, SIGKILL), 0);
  absl::StatusOr<MonitorExit> e = WaitExit(o.dir);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->exit_code, 137);
  EXPECT_EQ(e->signal, SIGKILL);
}

TEST_F(MonitorTest, ReopensItsLogWhenAsked) {
  MonitorOptions o = Options("echo one; sleep 1; echo two; sleep 30");
  absl::StatusOr<StartedMonitor> m = StartMonitor(Monitor(), o, absl::Seconds(10));
  ASSERT_TRUE(m.ok()) << m.status();
  for (int i = 0; i < 100 && ReadAll(o.log_path).find("one") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::filesystem::rename(o.log_path, o.log_path + ".1");  // kubelet's rotation
  ASSERT_TRUE(ReopenMonitorLog(o.dir, absl::Seconds(5)).ok());
  for (int i = 0; i < 200 && ReadAll(o.log_path).find("two") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(ReadAll(o.log_path + ".1"), HasSubstr("stdout F one\n"));
  EXPECT_THAT(ReadAll(o.log_path), HasSubstr("stdout F two\n"));
  EXPECT_EQ(ReadAll(o.log_path).find("one"), std::string::npos);
  ::kill(m->container_pid, SIGKILL);
  ASSERT_TRUE(WaitExit(o.dir).ok());
  EXPECT_EQ(ReopenMonitorLog(o.dir, absl::Seconds(2)).code(), absl::StatusCode::kUnavailable);
}

TEST_F(MonitorTest, AttachCarriesOutputAndStdin) {
  MonitorOptions o = Options("read line; echo \"got $line\"; exit 0");
  o.stdin = true;
  o.stdin_once = true;
  absl::StatusOr<StartedMonitor> m = StartMonitor(Monitor(), o, absl::Seconds(10));
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<int> fd = AttachMonitor(o.dir, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::string frame = std::string("\0\0\0\0\x06", 5) + "hello\n" + std::string("\0\0\0\0\0", 5);
  ASSERT_EQ(::send(*fd, frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
  std::string got;
  char buf[256];
  ssize_t n;
  while ((n = ::recv(*fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(*fd);
  EXPECT_THAT(got, HasSubstr(std::string("\x01\0\0\0\x0a", 5) + "got hello\n"));
  EXPECT_EQ(got.back(), '\0');  // ... and the exit frame last: type 3, length 0
  EXPECT_EQ(got.substr(got.size() - 5), std::string("\x03\0\0\0\0", 5));
  absl::StatusOr<MonitorExit> e = WaitExit(o.dir);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->exit_code, 0);
}

TEST_F(MonitorTest, ACreateThatFailsIsReportedWithItsMessage) {
  MonitorOptions o = Options("true");
  o.create_argv = {"/bin/sh", "-c", "echo 'no such image' >&2; exit 1"};
  absl::StatusOr<StartedMonitor> m = StartMonitor(Monitor(), o, absl::Seconds(10));
  ASSERT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(m.status().message(), HasSubstr("no such image"));
}

TEST(MonitorArgsTest, RoundTripAndRefusals) {
  MonitorOptions o;
  o.id = "x";
  o.dir = "/d";
  o.pid_file = "/d/p";
  o.log_path = "/l";
  o.stdin = true;
  o.create_argv = {"/usr/bin/crun", "create", "x"};
  absl::StatusOr<MonitorOptions> back = ParseMonitorArgs(MonitorArgs(o));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->log_path, "/l");
  EXPECT_TRUE(back->stdin);
  EXPECT_FALSE(back->tty);
  EXPECT_EQ(back->create_argv, o.create_argv);
  o.tty = true;
  back = ParseMonitorArgs(MonitorArgs(o));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->tty);
  o.create_argv = {"/usr/bin/crun"};
  EXPECT_FALSE(ParseMonitorArgs(MonitorArgs(o)).ok())
      << "a terminal needs the id to put the socket before";
  o.tty = false;
  EXPECT_FALSE(ParseMonitorArgs({"--id", "x"}).ok());
  EXPECT_FALSE(ParseMonitorArgs({"--bogus"}).ok());
  o.create_argv = {"crun"};
  EXPECT_FALSE(ParseMonitorArgs(MonitorArgs(o)).ok()) << "the command must be absolute";
}

}  // namespace
}  // namespace podvisor::host
