#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "agent/seccomp_bpf.h"
#include "common/fs.h"
#include "nlohmann/json.hpp"
#include "pod-sandbox/agent_client.h"
#include "test/support/agent_process.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using testing::AgentProcess;
using testing::TempDir;

constexpr char kBusybox[] = "/bin/busybox";
constexpr char kCrun[] = "/usr/bin/crun";

std::string ReadFileOrEmpty(const std::string& path) { return ReadFile(path).value_or(""); }

// Collects what the guest sends on one stream.
struct StreamSink {
  std::mutex mu;
  std::condition_variable cv;
  std::string data;
  bool eof = false;

  AgentClient::StreamCallback Callback() {
    return [this](absl::string_view d, bool e) {
      std::lock_guard<std::mutex> lock(mu);
      data.append(d.data(), d.size());
      eof |= e;
      cv.notify_all();
    };
  }
  std::string WaitEof() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(60), [&] { return eof; });
    return data;
  }
  bool WaitFor(const std::string& needle) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60),
                       [&] { return data.find(needle) != std::string::npos; });
  }
};

class AgentContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (mount namespaces, crun)";
    if (access(kCrun, X_OK) != 0) GTEST_SKIP() << "needs crun at " << kCrun;
    if (access(kBusybox, X_OK) != 0) GTEST_SKIP() << "needs busybox-static at " << kBusybox;
    rootfs_ = dir_.Join("rootfs");
    std::string cmd = "mkdir -p " + rootfs_ + "/bin " + rootfs_ + "/etc " + rootfs_ +
                      "/tmp && cp " + kBusybox + " " + rootfs_ + "/bin/busybox";
    for (const char* tool :
         {"sh", "echo", "cat", "sleep", "tty", "id", "grep", "readlink", "mkdir", "true"}) {
      cmd += std::string(" && ln -s busybox ") + rootfs_ + "/bin/" + tool;
    }
    cmd += " && echo 'app:x:1234:4321::/:/bin/sh' > " + rootfs_ + "/etc/passwd";
    ASSERT_EQ(system(cmd.c_str()), 0);
    // crun through a wrapper that notes each subcommand, so that a test can tell which steps
    // the agent left to crun.
    crun_calls_ = dir_.Join("crun-calls");
    std::ofstream(dir_.Join("crun"))
        << "#!/bin/sh\nfor a; do case \"$a\" in "
           "create|exec|start|kill|delete|update) echo \"$a\" >> "
        << crun_calls_ << "; break;; esac; done\nexec " << kCrun << " \"$@\"\n";
    ASSERT_EQ(chmod(dir_.Join("crun").c_str(), 0755), 0);
    socket_ = dir_.Join("agent.sock");
    // A private mount namespace with a cgroup2 hierarchy, as the guest has.
    agent_ = std::make_unique<AgentProcess>(
        std::vector<std::string>{"--channel", "listen:" + socket_, "--root", dir_.Join("root"),
                                 "--state-dir", dir_.Join("state"), "--crun", dir_.Join("crun")},
        std::vector<std::string>{"unshare", "-m", "--", "sh", "-c",
                                 "umount -l /sys/fs/cgroup 2>/dev/null; "
                                 "mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\""},
        dir_.Join("agent.log"));
    std::string error;
    ASSERT_TRUE(agent_->Start(&error)) << error;
    AgentClient::Options options;
    options.on_event = [this](const AgentEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
      cv_.notify_all();
    };
    auto client = AgentClient::Connect(socket_, options);
    ASSERT_TRUE(client.ok()) << client.status() << "\n" << agent_->ReadLog();
    client_ = std::move(*client);
    ASSERT_NE(
        std::find(client_->info().features.begin(), client_->info().features.end(), "containers"),
        client_->info().features.end());
  }

  ContainerSpec Spec(std::vector<std::string> args) {
    ContainerSpec spec;
    spec.process.args = std::move(args);
    spec.process.env = {"GREETING=hello"};
    spec.rootfs_path = rootfs_;
    return spec;
  }

  std::optional<AgentEvent> WaitEvent(const std::string& id, const std::string& exec_id) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<AgentEvent> found;
    cv_.wait_for(lock, std::chrono::seconds(60), [&] {
      for (const AgentEvent& e : events_) {
        if (e.container_id == id && e.exec_id == exec_id) found = e;
      }
      return found.has_value();
    });
    return found;
  }

  // How many times crun was run with `subcommand` so far.
  int CrunCalls(const std::string& subcommand) {
    std::ifstream in(crun_calls_);
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line == subcommand;
    return n;
  }

  TempDir dir_;
  std::string crun_calls_;
  std::string rootfs_;
  std::string socket_;
  std::unique_ptr<AgentProcess> agent_;
  // Sinks a test hands the client; declared before it so they outlive its reader thread.
  std::vector<std::unique_ptr<StreamSink>> sinks_;
  std::unique_ptr<AgentClient> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<AgentEvent> events_;
  const absl::Duration timeout_ = absl::Seconds(60);
};

TEST_F(AgentContainerTest, RunsAContainerWithItsOutputAndExitCode) {
  StreamSink out, err;
  ContainerSpec spec = Spec({"/bin/sh", "-c", "echo $GREETING; echo oops >&2; exit 3"});
  spec.process.stdout_stream = client_->AllocateStreamId();
  spec.process.stderr_stream = client_->AllocateStreamId();
  client_->SetStreamCallback(spec.process.stdout_stream, out.Callback());
  client_->SetStreamCallback(spec.process.stderr_stream, err.Callback());
  absl::Status s = client_->CreateContainer("c1", spec, timeout_).status();
  ASSERT_TRUE(s.ok()) << s << "\n" << agent_->ReadLog();
  auto pid = client_->StartContainer("c1", timeout_);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_GT(*pid, 0u);
  auto exit = client_->WaitProcess("c1", "", timeout_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_EQ(exit->signal, 0);
  EXPECT_GE(exit->finished_at_ns, exit->started_at_ns);
  EXPECT_EQ(out.WaitEof(), "hello\n");
  EXPECT_EQ(err.WaitEof(), "oops\n");
  auto event = WaitEvent("c1", "");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->kind, AgentEvent::Kind::kProcessExited);
  EXPECT_EQ(event->exit.exit_code, 3);
  EXPECT_TRUE(client_->RemoveContainer("c1", false, timeout_).ok());
  struct stat st;
  EXPECT_NE(stat(dir_.Join("state/containers/c1").c_str(), &st), 0) << "bundle left behind";
}

// The root filesystem the host builds from image layers: an overlay mount spec with only lower
// directories; the agent adds a writable upper of the container's own.
TEST_F(AgentContainerTest, OverlayRootfsMountGetsAWritableUpper) {
  const std::string extra = dir_.Join("extra-layer");
  ASSERT_EQ(::system(("mkdir -p " + extra + "/data && echo top > " + extra + "/data/msg").c_str()),
            0);
  StreamSink out;
  ContainerSpec spec =
      Spec({"/bin/sh", "-c", "cat /data/msg; echo new > /data/new; cat /data/new"});
  spec.rootfs_path.clear();
  spec.rootfs_mount = GuestMount{"/", "overlay", "overlay", {"lowerdir=" + extra + ":" + rootfs_}};
  spec.process.stdout_stream = client_->AllocateStreamId();
  client_->SetStreamCallback(spec.process.stdout_stream, out.Callback());
  absl::Status s = client_->CreateContainer("ov1", spec, timeout_).status();
  ASSERT_TRUE(s.ok()) << s << "\n" << agent_->ReadLog();
  ASSERT_TRUE(client_->StartContainer("ov1", timeout_).ok());
  auto exit = client_->WaitProcess("ov1", "", timeout_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0);
  EXPECT_EQ(out.WaitEof(), "top\nnew\n");
  struct stat st;
  EXPECT_NE(stat((extra + "/data/new").c_str(), &st), 0) << "the write reached a lower layer";
  EXPECT_TRUE(client_->RemoveContainer("ov1", false, timeout_).ok());
}

TEST_F(AgentContainerTest, StdinReachesTheProcessAndUserIsResolved) {
  StreamSink out;
  ContainerSpec spec = Spec({"/bin/sh", "-c", "id -u; id -g; cat"});
  spec.process.user.username = "app";
  spec.process.user.gid_from_passwd = true;  // no group asked for: app's own
  spec.process.stdin_stream = client_->AllocateStreamId();
  spec.process.stdout_stream = client_->AllocateStreamId();
  client_->SetStreamCallback(spec.process.stdout_stream, out.Callback());
  ASSERT_TRUE(client_->CreateContainer("c2", spec, timeout_).ok()) << agent_->ReadLog();
  ASSERT_TRUE(client_->StartContainer("c2", timeout_).ok());
  ASSERT_TRUE(client_->WriteStream(spec.process.stdin_stream, "from the host\n", true).ok());
  auto exit = client_->WaitProcess("c2", "", timeout_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0);
  EXPECT_EQ(out.WaitEof(), "1234\n4321\nfrom the host\n");
  EXPECT_TRUE(client_->RemoveContainer("c2", false, timeout_).ok());
}

// SupplementalGroupsPolicy in the agent: Merge adds the groups the image's /etc/group lists the
// user in, Strict does not, and CreateContainer's answer is what the process holds.
TEST_F(AgentContainerTest, StrictLeavesTheImageGroupsOutAndTheAnswerSaysWhatTheProcessHolds) {
  std::ofstream(rootfs_ + "/etc/group") << "app:x:4321:\nimagegroup:x:50000:app\n";
  for (bool strict : {false, true}) {
    SCOPED_TRACE(strict ? "Strict" : "Merge");
    const std::string id = strict ? "strict" : "merge";
    StreamSink out;
    ContainerSpec spec = Spec({"/bin/sh", "-c", "grep Groups: /proc/self/status"});
    spec.process.user.username = "app";
    spec.process.user.gid_from_passwd = true;
    spec.process.user.additional_gids = {777};
    spec.process.user.strict_groups = strict;
    spec.process.stdout_stream = client_->AllocateStreamId();
    client_->SetStreamCallback(spec.process.stdout_stream, out.Callback());
    absl::StatusOr<std::optional<ContainerUser>> user =
        client_->CreateContainer(id, spec, timeout_);
    ASSERT_TRUE(user.ok()) << user.status() << "\n" << agent_->ReadLog();
    ASSERT_TRUE(user->has_value());
    const std::vector<uint32_t> groups =
        strict ? std::vector<uint32_t>{777, 4321} : std::vector<uint32_t>{777, 4321, 50000};
    EXPECT_EQ(**user, (ContainerUser{1234, 4321, groups}));
    ASSERT_TRUE(client_->StartContainer(id, timeout_).ok());
    auto exit = client_->WaitProcess(id, "", timeout_);
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(out.WaitEof(), strict ? "Groups:\t777 4321 \n" : "Groups:\t777 4321 50000 \n");
    EXPECT_TRUE(client_->RemoveContainer(id, false, timeout_).ok());
  }
}

TEST_F(AgentContainerTest, ExecWithATerminalThenSignalAndRemove) {
  ASSERT_TRUE(client_->CreateContainer("c3", Spec({"/bin/sleep", "1000"}), timeout_).ok())
      << agent_->ReadLog();
  ASSERT_TRUE(client_->StartContainer("c3", timeout_).ok());

  StreamSink tty_out;
  ProcessSpec exec;
  // The pty is one of the container's own devpts (its path exists in the container), the
  // controlling terminal of the process, and carries stdin.
  exec.args = {"/bin/sh", "-c",
               "t=$(tty); echo tty=$t; [ -e \"$t\" ] && echo in-container; "
               "[ -t 0 ] && echo stdin-is-a-tty; read line; echo got-$line; echo exec-ran"};
  exec.terminal = true;
  exec.stdin_stream = client_->AllocateStreamId();
  exec.stdout_stream = client_->AllocateStreamId();
  client_->SetStreamCallback(exec.stdout_stream, tty_out.Callback());
  auto exec_pid = client_->ExecProcess("c3", "e1", exec, timeout_);
  ASSERT_TRUE(exec_pid.ok()) << exec_pid.status() << "\n" << agent_->ReadLog();
  EXPECT_EQ(CrunCalls("exec"), 0) << "the agent starts a terminal exec itself";
  ASSERT_TRUE(tty_out.WaitFor("stdin-is-a-tty")) << tty_out.data;
  ASSERT_TRUE(client_->WriteStream(exec.stdin_stream, "typed\n", false).ok());
  auto exec_exit = client_->WaitProcess("c3", "e1", timeout_);
  ASSERT_TRUE(exec_exit.ok()) << exec_exit.status();
  EXPECT_EQ(exec_exit->exit_code, 0);
  EXPECT_TRUE(tty_out.WaitFor("exec-ran")) << tty_out.data;
  EXPECT_NE(tty_out.data.find("tty=/dev/pts/"), std::string::npos) << tty_out.data;
  EXPECT_NE(tty_out.data.find("in-container"), std::string::npos) << tty_out.data;
  EXPECT_NE(tty_out.data.find("got-typed"), std::string::npos) << tty_out.data;
  EXPECT_TRUE(WaitEvent("c3", "e1").has_value());

  auto stats = client_->Stats({"c3"}, timeout_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ((*stats)[0].container_id, "c3");

  EXPECT_EQ(client_->RemoveContainer("c3", false, timeout_).code(),
            absl::StatusCode::kFailedPrecondition);
  // (SIGTERM would be ignored: sleep is PID 1 of its pid namespace and has no handler.)
  ASSERT_TRUE(client_->SignalProcess("c3", "", SIGKILL, false, timeout_).ok());
  auto exit = client_->WaitProcess("c3", "", timeout_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_EQ(exit->exit_code, 128 + SIGKILL);
  EXPECT_TRUE(client_->RemoveContainer("c3", false, timeout_).ok());
  EXPECT_TRUE(client_->RemoveContainer("c3", false, timeout_).ok());  // unknown: fine
}

TEST_F(AgentContainerTest, UnreadStdinDoesNotStallTheChannel) {
  ContainerSpec spec = Spec({"/bin/sleep", "1000"});
  spec.process.stdin_stream = client_->AllocateStreamId();
  ASSERT_TRUE(client_->CreateContainer("c9", spec, timeout_).ok()) << agent_->ReadLog();
  ASSERT_TRUE(client_->StartContainer("c9", timeout_).ok());
  // Far more than a pipe holds; sleep never reads it.
  ASSERT_TRUE(
      client_->WriteStream(spec.process.stdin_stream, std::string(4 << 20, 'x'), false).ok());
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(client_->Ping(absl::Seconds(30)).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_TRUE(client_->connected());
  EXPECT_TRUE(client_->RemoveContainer("c9", true, timeout_).ok());
}

TEST_F(AgentContainerTest, ForceRemoveKillsARunningContainer) {
  ASSERT_TRUE(client_->CreateContainer("c4", Spec({"/bin/sleep", "1000"}), timeout_).ok());
  ASSERT_TRUE(client_->StartContainer("c4", timeout_).ok());
  ASSERT_TRUE(client_->RemoveContainer("c4", true, timeout_).ok());
  auto event = WaitEvent("c4", "");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->exit.signal, SIGKILL);
}

TEST_F(AgentContainerTest, BadRequestsFailClearly) {
  absl::Status created =
      client_->CreateContainer("c5", Spec({"/bin/sleep", "1"}), timeout_).status();
  ASSERT_TRUE(created.ok()) << created;
  EXPECT_EQ(client_->CreateContainer("c5", Spec({"/bin/sleep", "1"}), timeout_).status().code(),
            absl::StatusCode::kAlreadyExists);
  ContainerSpec no_root = Spec({"/bin/true"});
  no_root.rootfs_path = dir_.Join("missing");
  EXPECT_EQ(client_->CreateContainer("c6", no_root, timeout_).status().code(),
            absl::StatusCode::kInvalidArgument);
  ContainerSpec bad_user = Spec({"/bin/true"});
  bad_user.process.user.username = "nobody-here";
  absl::Status s = client_->CreateContainer("c7", bad_user, timeout_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("nobody-here"), std::string::npos) << s;
  EXPECT_EQ(client_->StartContainer("nope", timeout_).status().code(), absl::StatusCode::kNotFound);
  // crun checks the executable at create and says which one is missing.
  absl::Status missing =
      client_->CreateContainer("c8", Spec({"/bin/not-there"}), timeout_).status();
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("not-there"), std::string::npos) << missing;
  EXPECT_TRUE(client_->RemoveContainer("c5", true, timeout_).ok());
  EXPECT_TRUE(client_->RemoveContainer("c8", true, timeout_).ok());  // never created: fine
}

// An exec the agent starts itself (no crun run) holds what the container's init holds: its
// namespaces and cgroup, the user and groups, capabilities, no_new_privs and seccomp filter.
TEST_F(AgentContainerTest, AnExecWithoutCrunHoldsWhatTheInitHolds) {
  std::ofstream(rootfs_ + "/etc/group") << "app:x:4321:\n";
  ASSERT_EQ(chmod((rootfs_ + "/tmp").c_str(), 01777), 0);
  const std::string report =
      "grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "
      "/proc/self/status; for n in mnt pid cgroup ipc uts net; do readlink /proc/self/ns/$n; "
      "done; cat /proc/self/cgroup; echo $GREETING; mkdir /tmp/blocked 2>&1; echo mkdir=$?";
  ContainerSpec spec = Spec({"/bin/sh", "-c", "(" + report + ") > /tmp/init.txt; exec sleep 1000"});
  spec.process.user.username = "app";
  spec.process.user.gid_from_passwd = true;
  spec.process.user.additional_gids = {777};
  spec.process.capabilities = {"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
  spec.process.no_new_privileges = true;
  // mkdir fails with ENOSYS, which no filesystem would say.
  spec.seccomp_oci_json =
      R"({"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],)"
      R"("syscalls":[{"names":["mkdir","mkdirat","no_such_syscall"],"action":"SCMP_ACT_ERRNO",)"
      R"("errnoRet":38}]})";
  ASSERT_TRUE(client_->CreateContainer("d1", spec, timeout_).ok()) << agent_->ReadLog();
  ASSERT_TRUE(client_->StartContainer("d1", timeout_).ok()) << agent_->ReadLog();
  const int crun_execs = CrunCalls("exec");

  auto run = [&](const std::string& exec_id, const std::vector<std::string>& args,
                 const std::string& cwd, StreamSink* out) -> absl::StatusOr<int> {
    ProcessSpec exec;
    exec.args = args;
    exec.env = {"GREETING=hello"};
    exec.cwd = cwd;
    exec.user.username = "app";
    exec.user.gid_from_passwd = true;
    exec.user.additional_gids = {777};
    exec.capabilities = spec.process.capabilities;
    exec.no_new_privileges = true;
    exec.stdout_stream = client_->AllocateStreamId();
    client_->SetStreamCallback(exec.stdout_stream, out->Callback());
    absl::StatusOr<uint32_t> pid = client_->ExecProcess("d1", exec_id, exec, timeout_);
    if (!pid.ok()) return pid.status();
    auto exit = client_->WaitProcess("d1", exec_id, timeout_);
    if (!exit.ok()) return exit.status();
    return exit->exit_code;
  };
  std::string init_report;  // once the init has written it
  for (int i = 0; i < 100 && init_report.find("mkdir=") == std::string::npos; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    StreamSink* init_out = sinks_.emplace_back(std::make_unique<StreamSink>()).get();
    absl::StatusOr<int> cat =
        run("e0-" + std::to_string(i), {"cat", "/tmp/init.txt"}, "/", init_out);
    ASSERT_TRUE(cat.ok()) << cat.status() << "\n" << agent_->ReadLog();
    init_report = init_out->WaitEof();
  }
  StreamSink& exec_out = *sinks_.emplace_back(std::make_unique<StreamSink>());
  absl::StatusOr<int> code = run("e1", {"/bin/sh", "-c", report + "; pwd"}, "/tmp", &exec_out);
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << agent_->ReadLog();
  EXPECT_EQ(*code, 0);
  const std::string exec_report = exec_out.WaitEof();
  EXPECT_EQ(exec_report, init_report + "/tmp\n");
  EXPECT_NE(exec_report.find("Uid:\t1234\t1234\t1234\t1234"), std::string::npos) << exec_report;
  EXPECT_NE(exec_report.find("Groups:\t777 4321 \n"), std::string::npos) << exec_report;
  EXPECT_NE(exec_report.find("NoNewPrivs:\t1"), std::string::npos) << exec_report;
  EXPECT_NE(exec_report.find("Seccomp:\t2"), std::string::npos) << exec_report;
  EXPECT_NE(exec_report.find("CapBnd:\t0000000000000421"), std::string::npos) << exec_report;
  EXPECT_NE(exec_report.find("Function not implemented"), std::string::npos) << exec_report;
  EXPECT_NE(exec_report.find("hello\n"), std::string::npos) << exec_report;
  EXPECT_EQ(CrunCalls("exec"), crun_execs) << "the execs went through crun";

  // Failures name what failed, and leave no exec behind.
  StreamSink& none = *sinks_.emplace_back(std::make_unique<StreamSink>());
  absl::StatusOr<int> missing = run("e2", {"no-such-command"}, "/", &none);
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("executable file not found"), std::string::npos)
      << missing.status();
  absl::StatusOr<int> bad_cwd = run("e3", {"/bin/true"}, "/no/such/dir", &none);
  EXPECT_FALSE(bad_cwd.ok());
  EXPECT_NE(bad_cwd.status().message().find("/no/such/dir"), std::string::npos) << bad_cwd.status();
  EXPECT_TRUE(client_->Ping(absl::Seconds(30)).ok());
  ASSERT_TRUE(client_->RemoveContainer("d1", true, timeout_).ok());
}

// Where the host sees the cgroup2 hierarchy the agent mounts in its own namespace ("" if none).
std::string HostCgroup2Root() {
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, point, type, rest;
  while (mounts >> dev >> point >> type && std::getline(mounts, rest)) {
    if (type == "cgroup2") return point;
  }
  return "";
}

// The agent starts a created container itself (crun start's exec.fifo step): an init that died
// before the start is a precondition failure, not a crun error.
TEST_F(AgentContainerTest, StartOfAContainerWhoseInitDiedFailsItsPrecondition) {
  ASSERT_TRUE(client_->CreateContainer("c10", Spec({"/bin/sleep", "1000"}), timeout_).ok())
      << agent_->ReadLog();
  std::ifstream pid_file(dir_.Join("state/containers/c10/init.pid"));
  pid_t init = 0;
  ASSERT_TRUE(pid_file >> init);
  ASSERT_EQ(kill(init, SIGKILL), 0);
  ASSERT_TRUE(WaitEvent("c10", "").has_value());
  auto pid = client_->StartContainer("c10", timeout_);
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kFailedPrecondition) << pid.status();
  EXPECT_TRUE(client_->RemoveContainer("c10", false, timeout_).ok());
  EXPECT_NE(access(dir_.Join("state/crun/c10").c_str(), F_OK), 0);
}

// SIGKILL to all of a container reaches a process outside its init's tree of the pid namespace
// (the pod's namespace is shared), and remove leaves neither crun state nor a cgroup behind.
TEST_F(AgentContainerTest, KillAllAndRemoveLeaveNoProcessCgroupOrCrunState) {
  const std::string cgroup_root = HostCgroup2Root();
  if (cgroup_root.empty()) GTEST_SKIP() << "the host shows no cgroup2 hierarchy";
  StreamSink out;
  ContainerSpec spec = Spec({"/bin/sh", "-c", "sleep 1000 & echo $!; exec sleep 1000"});
  spec.share_pid_namespace = true;
  spec.process.stdout_stream = client_->AllocateStreamId();
  client_->SetStreamCallback(spec.process.stdout_stream, out.Callback());
  ASSERT_TRUE(client_->CreateContainer("c11", spec, timeout_).ok()) << agent_->ReadLog();
  ASSERT_TRUE(client_->StartContainer("c11", timeout_).ok()) << agent_->ReadLog();
  ASSERT_TRUE(out.WaitFor("\n")) << out.data;
  const pid_t background = std::atoi(out.data.c_str());
  ASSERT_GT(background, 0) << out.data;
  ASSERT_EQ(kill(background, 0), 0);
  EXPECT_TRUE(std::filesystem::exists(cgroup_root + "/podvisor/c11"));
  ASSERT_TRUE(client_->SignalProcess("c11", "", SIGKILL, true, timeout_).ok()) << agent_->ReadLog();
  auto exit = client_->WaitProcess("c11", "", timeout_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL);
  bool gone = false;  // once the agent (its subreaper) has reaped it
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = kill(background, 0) != 0 && errno == ESRCH;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone) << "pid " << background << " outlived SIGKILL to all";
  ASSERT_TRUE(client_->RemoveContainer("c11", false, timeout_).ok()) << agent_->ReadLog();
  EXPECT_FALSE(std::filesystem::exists(cgroup_root + "/podvisor/c11"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("state/crun/c11")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("state/containers/c11")));
}

// The program the agent compiles from a profile is the one crun compiles from it, byte for byte:
// the agent gives crun its own (run.oci.seccomp_bpf_data) so that `crun create` need not
// compile it again, and loads it itself into execs. Each profile goes through crun create on a
// bundle of its own (crun leaves the program it loads in its state directory as seccomp.bpf).
TEST(SeccompProgramTest, TheAgentCompilesWhatCrunCompiles) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (crun create)";
  if (access(kCrun, X_OK) != 0) GTEST_SKIP() << "needs crun at " << kCrun;
  if (access(kBusybox, X_OK) != 0) GTEST_SKIP() << "needs busybox-static at " << kBusybox;
  TempDir dir;
  const std::string rootfs = dir.Join("bundle/rootfs");
  ASSERT_EQ(system(("mkdir -p " + rootfs + "/bin " + rootfs + "/proc " + rootfs + "/dev && cp " +
                    kBusybox + " " + rootfs + "/bin/true")
                       .c_str()),
            0);
  const std::string refused =
      R"("acct","add_key","bpf","keyctl","mount","umount2","pivot_root","setns","unshare",)"
      R"("ptrace","reboot","swapon","swapoff","userfaultfd","perf_event_open","no_such_call")";
  const std::vector<std::string> profiles = {
      // RuntimeDefault's shape: allow, a deny list with EPERM, three architectures.
      R"({"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86",)"
      R"("SCMP_ARCH_X32"],"syscalls":[{"names":[)" +
          refused + R"(],"action":"SCMP_ACT_ERRNO","errnoRet":1}]})",
      // An allow list with a default errno, argument conditions (one on a repeated index),
      // other actions.
      R"({"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":)"
      R"(["SCMP_ARCH_X86_64"],"syscalls":[{"names":["read","write","exit","exit_group","execve",)"
      R"("brk","mmap","mprotect","munmap","arch_prctl","set_tid_address","rt_sigaction",)"
      R"("rt_sigprocmask","rt_sigreturn","prctl","capget","capset","setgroups","setresuid",)"
      R"("setresgid","setuid","setgid","close","close_range","fstat","newfstatat","statx",)"
      R"("openat","fcntl","getdents64","dup2","dup3","chdir","umask","futex","getppid",)"
      R"("access","lseek","pread64","uname","readlink","set_robust_list","rseq","prlimit64",)"
      R"("getrandom","ioctl","poll","pselect6","select","sigaltstack","wait4","exit"],)"
      R"("action":"SCMP_ACT_ALLOW"},{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":)"
      R"([{"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},)"
      R"({"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,)"
      R"("valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},{"names":["kill"],"action":"SCMP_ACT_LOG"},)"
      R"({"names":["tkill"],"action":"SCMP_ACT_KILL_PROCESS"},{"names":["getpid"],)"
      R"("action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":1,"value":5,"op":"SCMP_CMP_GT"},)"
      R"({"index":2,"value":7,"op":"SCMP_CMP_NE"}]}]})",
  };
  int n = 0;
  for (const std::string& profile : profiles) {
    const std::string id = "seccomp-" + std::to_string(n++);
    SCOPED_TRACE(profile);
    agent::SeccompProgram program;
    agent::Error compiled = agent::CompileSeccompProfile(profile, &program);
    ASSERT_TRUE(compiled.ok()) << compiled.message();
    nlohmann::json config = {
        {"ociVersion", "1.0.2"},
        {"process", {{"args", {"/bin/true"}}, {"cwd", "/"}, {"user", {{"uid", 0}, {"gid", 0}}}}},
        {"root", {{"path", "rootfs"}}},
        {"mounts", {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}}}},
        {"linux",
         {{"namespaces", {{{"type", "mount"}}, {{"type", "pid"}}}},
          {"seccomp", nlohmann::json::parse(profile)}}}};
    std::ofstream(dir.Join("bundle/config.json")) << config.dump();
    // In a mount namespace of its own with a cgroup2 hierarchy, as the guest has.
    const std::string state = dir.Join("crun-state");
    const std::string script =
        "umount -l /sys/fs/cgroup 2>/dev/null; mount -t cgroup2 cgroup2 /sys/fs/cgroup && " +
        std::string(kCrun) + " --root " + state + " create --bundle " + dir.Join("bundle") + " " +
        id + " && cp " + state + "/" + id + "/seccomp.bpf " + dir.Join(id + ".bpf") + "; " + kCrun +
        " --root " + state + " delete --force " + id;
    ASSERT_EQ(
        system(
            ("unshare -m -- sh -c '" + script + "' > " + dir.Join("crun.out") + " 2>&1").c_str()),
        0)
        << ReadFileOrEmpty(dir.Join("crun.out"));
    const std::string crun_bpf = ReadFileOrEmpty(dir.Join(id + ".bpf"));
    ASSERT_FALSE(crun_bpf.empty()) << ReadFileOrEmpty(dir.Join("crun.out"));
    const std::string agent_bpf(reinterpret_cast<const char*>(program.filter.data()),
                                program.filter.size() * sizeof(sock_filter));
    EXPECT_EQ(agent_bpf.size(), crun_bpf.size());
    EXPECT_TRUE(agent_bpf == crun_bpf) << "the programs differ";
  }
}

}  // namespace
}  // namespace podvisor
