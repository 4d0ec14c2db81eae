// ContainerController streaming: exec and attach sessions pumped to a client
// (container_streaming.cc).

#include "test/unit/pod-sandbox/container_controller_fixture.h"

namespace podvisor {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using testing::FakeAgentClient;
using testing::FakeHypervisor;
using testing::FakeImageController;
using testing::FakePodNetworkManager;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

class StringSink : public streaming::ByteSink {
 public:
  bool Write(absl::string_view data) override {
    absl::MutexLock lock(&mu_);
    data_.append(data.data(), data.size());
    return true;
  }
  void Close() override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  std::string data() {
    absl::MutexLock lock(&mu_);
    return data_;
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::string data_;
  bool closed_ = false;
};

class StringSource : public streaming::ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  size_t Read(char* buf, size_t len) override {
    size_t n = std::min(len, data_.size());
    data_.copy(buf, n);
    data_.erase(0, n);
    return n;
  }
  void Cancel() override {}

 private:
  std::string data_;
};

TEST_F(ContainerControllerTest, StreamingExecPumpsOutputAndReturnsTheExitCode) {
  std::string id = CreateAndStart(Config());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  agent_->exec_stdout = "hi\n";
  agent_->exec_stderr = "oops";
  agent_->exec_exit_code = 3;
  StringSink out, err;
  StringSource in("input");
  absl::Notification done;
  streaming::SessionStreams streams{&in, &out, &err, nullptr, &done};
  streaming::ExecRequest request{id.substr(0, 8), {"sh", "-c", "x"}, false, true, true, true};
  absl::StatusOr<int> code = runtime.Exec(request, streams);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 3);
  EXPECT_EQ(out.data(), "hi\n");
  EXPECT_EQ(err.data(), "oops");
  EXPECT_TRUE(out.closed());
  EXPECT_TRUE(err.closed());
  const ProcessSpec& p = log_->execs.back().second;
  EXPECT_EQ(log_->execs.back().first, id);
  EXPECT_THAT(p.args, ElementsAre("sh", "-c", "x"));
  EXPECT_EQ(p.cwd, "/srv");
  EXPECT_NE(p.stdin_stream, 0u);
  EXPECT_FALSE(p.terminal);
}

TEST_F(ContainerControllerTest, StreamingExecKillsTheProcessWhenTheClientLeaves) {
  std::string id = CreateAndStart(Config());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  agent_->exec_hangs = true;
  StringSink out;
  absl::Notification done;
  done.Notify();
  streaming::SessionStreams streams{nullptr, &out, nullptr, nullptr, &done};
  streaming::ExecRequest request{id, {"sleep", "100"}, false, false, true, false};
  absl::StatusOr<int> code = runtime.Exec(request, streams);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGKILL);
  EXPECT_THAT(log_->signals, Contains(std::make_pair(id, SIGKILL)));
  EXPECT_TRUE(out.closed());
}

TEST_F(ContainerControllerTest, StreamingExecNeedsARunningContainer) {
  absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, Config());
  ASSERT_TRUE(id.ok());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  StringSink out;
  streaming::SessionStreams streams{nullptr, &out, nullptr, nullptr, nullptr};
  streaming::ExecRequest request{*id, {"true"}, false, false, true, false};
  EXPECT_EQ(runtime.Exec(request, streams).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ContainerControllerTest, AttachersSeeTheMainProcessOutputUntilItEnds) {
  ContainerConfig c = Config();
  c.stdin = true;
  std::string id = CreateAndStart(c);
  const ProcessSpec& spec = log_->created.back().second.process;
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  StringSink out[2], err[2];
  absl::Notification done;
  std::vector<std::thread> attachers;
  for (int i = 0; i < 2; ++i) {
    attachers.emplace_back([&, i] {
      streaming::SessionStreams streams{nullptr, &out[i], &err[i], nullptr, &done};
      streaming::AttachRequest request{id, false, false, true, true};
      EXPECT_TRUE(runtime.Attach(request, streams).ok());
    });
  }
  // Output until both attachers have seen some (they register on their own threads).
  while (out[0].data().empty() || out[1].data().empty()) {
    agent_->EmitStream(spec.stdout_stream, "x", false);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  agent_->EmitStream(spec.stderr_stream, "bye", true);
  agent_->EmitStream(spec.stdout_stream, "end", true);
  for (std::thread& t : attachers) t.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(out[i].data(), ::testing::EndsWith("xend"));
    EXPECT_EQ(err[i].data(), "bye");
    EXPECT_TRUE(out[i].closed());
    EXPECT_TRUE(err[i].closed());
  }
  // The log writer still got everything.
  EXPECT_THAT(ReadAll(dir_.Join("logs/app/0.log")), HasSubstr("stderr F bye"));

  // Output that already ended: a late attacher returns at once.
  StringSink late;
  streaming::SessionStreams streams{nullptr, &late, nullptr, nullptr, &done};
  EXPECT_TRUE(runtime.Attach({id, false, false, true, false}, streams).ok());
  EXPECT_TRUE(late.closed());
}

TEST_F(ContainerControllerTest, AttachWithStdinNeedsAContainerCreatedWithStdin) {
  std::string id = CreateAndStart(Config());
  ContainerStreamingRuntime runtime({}, containers_.get(), sandboxes_.get());
  StringSource in("x");
  StringSink out;
  streaming::SessionStreams streams{&in, &out, nullptr, nullptr, nullptr};
  EXPECT_EQ(runtime.Attach({id, false, true, true, false}, streams).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(containers_->WriteStdin(id, "x", false).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace podvisor
