// Container logs and attach across podvisord restarts, against a real pod VM: the guest holds
// the output while no daemon takes it, and the restarted daemon logs it, every byte once and in
// order; log rotation (ReopenContainerLog) keeps working, before and after a restart.

// clang-format off
#include "test/integration/pod-sandbox/container_vm_fixture.h"  // first: the CRI Signal enum
// clang-format on

#include <regex>

#include "test/unit/streaming/streaming_test_client.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;

// Prints "<tag> <n>" on stdout and "err <n>" on stderr every ~50 ms, n = 1.., until killed. Each
// stdout line is written in two pieces so that some lines are cut when the daemon dies.
const char kCounter[] =
    "i=1; while true; do printf 'out %d' $i; printf ' tail\\n'; echo \"err $i\" >&2; "
    "i=$((i+1)); sleep 0.05; done";

struct ParsedLog {
  std::vector<long> out, err;    // the numbers, in file order
  std::vector<std::string> bad;  // lines not in the CRI format or not of the counter
  std::vector<size_t> cut;       // indexes in `out` of lines without their tail
};

// Parses a CRI log file of the counter. P parts are joined with their F part, per stream.
ParsedLog ParseCounterLog(const std::string& text) {
  ParsedLog parsed;
  static const std::regex line_re(std::string("^") + kTime + " (stdout|stderr) ([PF]) (.*)$");
  std::string partial[2];
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, line_re)) {
      parsed.bad.push_back(line);
      continue;
    }
    const int s = m[2] == "stdout" ? 0 : 1;
    partial[s] += m[4].str();
    if (m[3] == "P") continue;
    const std::string content = partial[s];
    partial[s].clear();
    static const std::regex out_re("^out ([0-9]+)( tail)?$"), err_re("^err ([0-9]+)$");
    std::smatch n;
    if (s == 0 && std::regex_match(content, n, out_re)) {
      if (!n[2].matched) parsed.cut.push_back(parsed.out.size());
      parsed.out.push_back(std::stol(n[1]));
    } else if (s == 1 && std::regex_match(content, n, err_re)) {
      parsed.err.push_back(std::stol(n[1]));
    } else {
      parsed.bad.push_back(line);
    }
  }
  return parsed;
}

// 1, 2, ..., n: every number once, in order. Returns "" or what is wrong.
std::string CheckSequence(const std::vector<long>& got, long first = 1) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != first + static_cast<long>(i)) {
      return absl::StrCat("at line ", i, ": expected ", first + static_cast<long>(i), ", got ",
                          got[i], " (previous ", i ? got[i - 1] : -1, ")");
    }
  }
  return "";
}

class ContainerLogsVmTest : public ContainerVmTest {
 protected:
  grpc::Status ReopenLog(const std::string& id) {
    v1::ReopenContainerLogRequest req;
    req.set_container_id(id);
    v1::ReopenContainerLogResponse resp;
    return cri_->runtime().ReopenContainerLog(CriClient::Context(60).get(), req, &resp);
  }

  // Stops podvisord (kill -9, or SIGTERM), leaves the pod without a daemon for `away`, starts it
  // again on the same root and state, and waits until it took container `id`'s output over.
  void RestartDaemon(bool graceful, const std::string& id, std::chrono::seconds away) {
    if (graceful) {
      ASSERT_NE(daemon_->Stop(60000), -1) << "podvisord did not stop on SIGTERM";
    } else {
      daemon_->Kill();
    }
    cri_.reset();
    // The container goes on writing meanwhile: the guest holds its output.
    std::this_thread::sleep_for(away);
    std::string error;
    ASSERT_TRUE(daemon_->Start(&error, 60000)) << error;
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
    // Re-attaching happens in the background after the socket is up; ReopenContainerLog answers
    // once this daemon handles the container's output.
    grpc::Status s;
    for (int i = 0; i < 1200; ++i) {
      s = ReopenLog(id);
      if (s.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(s.ok()) << "output not taken over after the restart: " << s.error_message() << "\n"
                        << daemon_->ReadLog();
  }

  // Waits until the log file at `path` holds at least `n` stdout numbers.
  bool WaitForLines(const std::string& path, size_t n, int seconds = 120) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (ParseCounterLog(ReadAll(path)).out.size() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  static size_t CountOf(const std::string& path) {
    return ParseCounterLog(ReadAll(path)).out.size();
  }
};

TEST_F(ContainerLogsVmTest, LogsAcrossADaemonRestart) {
  std::string id = Run(Config("counter", {"sh", "-c", kCounter}));
  ASSERT_FALSE(id.empty());
  const std::string log = dir_.Join("logs/counter.log");
  ASSERT_TRUE(WaitForLines(log, 10)) << ReadAll(log);

  // kill -9: whatever the daemon had not logged yet is replayed by the guest.
  const size_t before_kill = CountOf(log);
  RestartDaemon(/*graceful=*/false, id, std::chrono::seconds(5));
  // The guest went on while no daemon listened: those lines arrive too (at ~50-100 ms each under
  // TCG, well over 10 in 5 s).
  ASSERT_TRUE(WaitForLines(log, before_kill + 20)) << daemon_->ReadLog();

  // A graceful restart (SIGTERM), the same way.
  const size_t before_stop = CountOf(log);
  RestartDaemon(/*graceful=*/true, id, std::chrono::seconds(3));
  ASSERT_TRUE(WaitForLines(log, before_stop + 20)) << daemon_->ReadLog();

  ASSERT_TRUE(Stop(id, 0).ok());
  EXPECT_EQ(Status(id).state(), v1::CONTAINER_EXITED);
  ParsedLog parsed = ParseCounterLog(ReadAll(log));
  EXPECT_TRUE(parsed.bad.empty()) << "malformed lines, first: " << parsed.bad.front();
  // Only the very last line may lack its tail (SIGKILL between the two writes); any other was
  // split by the restarts.
  EXPECT_TRUE(parsed.cut.empty() ||
              (parsed.cut.size() == 1 && parsed.cut[0] + 1 == parsed.out.size()))
      << "a line was split, at stdout line " << parsed.cut.front();
  EXPECT_GT(parsed.out.size(), before_stop + 20);
  EXPECT_EQ(CheckSequence(parsed.out), "") << "stdout";
  EXPECT_EQ(CheckSequence(parsed.err), "") << "stderr";
  // The container was killed between the two lines of an iteration at most.
  EXPECT_LE(parsed.err.size(), parsed.out.size() + 1);
  EXPECT_LE(parsed.out.size(), parsed.err.size() + 1);
}

TEST_F(ContainerLogsVmTest, MoreOutputThanTheGuestHoldsWaitsForTheDaemon) {
  // ~2.3 MB on stdout, more than the guest holds for a stream (1 MiB). The daemon is killed in
  // the middle of the flood (frames under way, log writes under way); while no daemon takes the
  // output the container must block, not lose lines.
  constexpr int kLines = 350000;
  std::string id = Run(
      Config("flood",
             {"sh", "-c", absl::StrCat("sleep 2; seq 1 ", kLines, "; echo done >&2; sleep 3600")}));
  ASSERT_FALSE(id.empty());
  const std::string log = dir_.Join("logs/flood.log");
  for (int i = 0; i < 1200; ++i) {
    std::error_code ec;
    if (fs::file_size(log, ec) > 200000 && !ec) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  daemon_->Kill();
  cri_.reset();
  std::this_thread::sleep_for(std::chrono::seconds(8));
  std::string error;
  ASSERT_TRUE(daemon_->Start(&error, 60000)) << error;
  cri_ = std::make_unique<CriClient>(daemon_->endpoint());
  std::string text;
  for (int i = 0; i < 600; ++i) {
    text = ReadAll(log);
    if (text.find(" stderr F done\n") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_THAT(text, HasSubstr(" stderr F done\n")) << daemon_->ReadLog();
  // Every number once, in order, each line well formed.
  std::istringstream in(text);
  std::string line;
  long expected = 1;
  size_t bad = 0;
  while (std::getline(in, line)) {
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || line.compare(sp, 10, " stderr F ") == 0) continue;
    const std::string prefix = " stdout F ";
    if (line.compare(sp, prefix.size(), prefix) != 0 ||
        line.substr(sp + prefix.size()) != std::to_string(expected)) {
      if (bad++ == 0) ADD_FAILURE() << "expected " << expected << ", got: " << line;
      continue;
    }
    ++expected;
  }
  EXPECT_EQ(expected, kLines + 1);
  EXPECT_EQ(bad, 0u);
}

TEST_F(ContainerLogsVmTest, LogRotationAndReopen) {
  std::string id = Run(Config("rotated", {"sh", "-c", kCounter}));
  ASSERT_FALSE(id.empty());
  const std::string log = dir_.Join("logs/rotated.log");
  ASSERT_TRUE(WaitForLines(log, 5)) << ReadAll(log);

  // As kubelet rotates: rename, then ReopenContainerLog.
  ASSERT_EQ(::rename(log.c_str(), (log + ".1").c_str()), 0);
  ASSERT_TRUE(ReopenLog(id).ok());
  ASSERT_TRUE(WaitForLines(log, 5)) << "nothing in the new file";
  // And once more after a restart, which reopens the (new) file in append mode.
  RestartDaemon(/*graceful=*/false, id, std::chrono::seconds(2));
  ASSERT_EQ(::rename(log.c_str(), (log + ".2").c_str()), 0);
  ASSERT_TRUE(ReopenLog(id).ok());
  ASSERT_TRUE(WaitForLines(log, 5)) << "nothing in the new file after the restart";
  ASSERT_TRUE(Stop(id, 0).ok());

  // Every file well formed; together they hold every number once, in order.
  ParsedLog all;
  for (const std::string& path : {log + ".1", log + ".2", log}) {
    ParsedLog p = ParseCounterLog(ReadAll(path));
    EXPECT_TRUE(p.bad.empty()) << path << ": " << p.bad.front();
    EXPECT_FALSE(p.out.empty()) << path;
    EXPECT_TRUE(p.cut.empty() || (path == log && p.cut.back() + 1 == p.out.size()))
        << path << ": a line was split";
    all.out.insert(all.out.end(), p.out.begin(), p.out.end());
    all.err.insert(all.err.end(), p.err.begin(), p.err.end());
  }
  EXPECT_EQ(CheckSequence(all.out), "") << "stdout";
  EXPECT_EQ(CheckSequence(all.err), "") << "stderr";
}

TEST_F(ContainerLogsVmTest, AttachAfterARestart) {
  // Answers each line of its stdin; stdin_once: the attacher's end of input ends it.
  v1::ContainerConfig c = Config("echoer", {"sh", "-c",
                                            "echo ready; while read l; do echo \"got $l\"; done; "
                                            "echo bye >&2"});
  c.set_stdin(true);
  c.set_stdin_once(true);
  std::string id = Run(c);
  ASSERT_FALSE(id.empty());
  const std::string log = dir_.Join("logs/echoer.log");
  for (int i = 0; i < 600 && ReadAll(log).find("ready") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  RestartDaemon(/*graceful=*/false, id, std::chrono::seconds(1));

  v1::AttachRequest req;
  req.set_container_id(id);
  req.set_stdin(true);
  req.set_stdout(true);
  req.set_stderr(true);
  v1::AttachResponse resp;
  grpc::Status s = cri_->runtime().Attach(CriClient::Context().get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ExecOptions options;
  options.in = true;
  options.stdin_data = "one\ntwo\n";
  ExecResult r = SpdyExec(resp.url(), options);
  EXPECT_EQ(r.http_status, 101);
  EXPECT_EQ(r.out, "got one\ngot two\n");
  EXPECT_EQ(r.err, "bye\n");
  v1::ContainerStatus st = WaitExited(id);
  EXPECT_EQ(st.exit_code(), 0);
  std::string text = ReadAll(log);
  EXPECT_THAT(text, HasSubstr("stdout F ready\n"));
  EXPECT_THAT(text, HasSubstr("stdout F got two\n"));
  EXPECT_THAT(text, HasSubstr("stderr F bye\n"));
}

}  // namespace
}  // namespace podvisor::testing
