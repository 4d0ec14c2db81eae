#pragma once

// A StreamingRuntime for unit tests and benchmarks: no containers, a small command vocabulary.
//
// Exec commands (argv):
//   echo ARGS...      writes ARGS joined by spaces and "\n" to stdout; exit 0
//   exit N            exit code N
//   stderr TEXT       writes TEXT to stderr; exit 0
//   cat               copies stdin to stdout until stdin ends; exit 0
//   tty               writes "tty\n" or "notty\n"
//   resize N          writes "<width>x<height>\n" for the first N resize events; exit 0
//   wait              blocks until the session's done signal (client gone); exit 0
//   bytes N           writes N bytes ('x') to stdout; exit 0
// A container id "missing" fails with NOT_FOUND.
//
// Attach: the container's main process is shared by all attachers. What any attacher writes to
// stdin goes to every attacher's stdout; Emit() writes to all of them; ExitContainer() ends all
// attach sessions.
//
// PortForward: port 1 fails (connection refused); any other port echoes the bytes it receives and
// closes its output at end of input.

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "streaming/streaming_server.h"

namespace podvisor::testing {

class FakeStreamingRuntime : public streaming::StreamingRuntime {
 public:
  absl::StatusOr<int> Exec(const streaming::ExecRequest& request,
                           const streaming::SessionStreams& streams) override {
    Enter();
    struct Leave {
      FakeStreamingRuntime* self;
      ~Leave() { self->Exit(); }
    } leave{this};
    if (request.container_id == "missing") {
      return absl::NotFoundError(absl::StrCat("container ", request.container_id, " not found"));
    }
    {
      absl::MutexLock lock(&mu_);
      last_exec_ = request;
    }
    const std::vector<std::string>& cmd = request.cmd;
    const std::string& name = cmd[0];
    auto out = [&](absl::string_view s) {
      if (streams.out != nullptr) streams.out->Write(s);
    };
    int64_t n = 0;
    if (name == "echo") {
      out(absl::StrCat(absl::StrJoin(cmd.begin() + 1, cmd.end(), " "), "\n"));
    } else if (name == "exit" && cmd.size() > 1 && absl::SimpleAtoi(cmd[1], &n)) {
      return static_cast<int>(n);
    } else if (name == "stderr" && cmd.size() > 1) {
      if (streams.err != nullptr) streams.err->Write(cmd[1]);
    } else if (name == "cat") {
      char buf[16384];
      size_t got;
      while (streams.in != nullptr && (got = streams.in->Read(buf, sizeof buf)) > 0) {
        if (streams.out == nullptr || !streams.out->Write(absl::string_view(buf, got))) break;
      }
    } else if (name == "tty") {
      out(request.tty ? "tty\n" : "notty\n");
    } else if (name == "resize" && cmd.size() > 1 && absl::SimpleAtoi(cmd[1], &n)) {
      for (int64_t i = 0; i < n && streams.resize != nullptr; ++i) {
        std::optional<streaming::TerminalSize> size = streams.resize->Next();
        if (!size) break;
        out(absl::StrCat(size->width, "x", size->height, "\n"));
      }
    } else if (name == "wait") {
      streams.done->WaitForNotification();
      saw_done_.fetch_add(1);
    } else if (name == "bytes" && cmd.size() > 1 && absl::SimpleAtoi(cmd[1], &n)) {
      std::string chunk(64 * 1024, 'x');
      while (n > 0) {
        size_t len = static_cast<size_t>(std::min<int64_t>(n, chunk.size()));
        if (!streams.out->Write(absl::string_view(chunk.data(), len))) break;
        n -= static_cast<int64_t>(len);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("fake runtime: unknown command ", name));
    }
    return 0;
  }

  absl::Status Attach(const streaming::AttachRequest& request,
                      const streaming::SessionStreams& streams) override {
    Enter();
    struct Leave {
      FakeStreamingRuntime* self;
      ~Leave() { self->Exit(); }
    } leave{this};
    if (request.container_id == "missing") return absl::NotFoundError("container missing");
    uint64_t generation;
    {
      absl::MutexLock lock(&mu_);
      if (streams.out != nullptr) attached_.push_back(streams.out);
      ++attachers_;
      generation = exits_;
    }
    std::thread reader;
    if (streams.in != nullptr) {
      reader = std::thread([this, in = streams.in] {
        char buf[4096];
        size_t got;
        while ((got = in->Read(buf, sizeof buf)) > 0) Emit(std::string(buf, got));
      });
    }
    {
      absl::MutexLock lock(&mu_);
      auto ended = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return exits_ != generation || streams.done->HasBeenNotified();
      };
      while (!ended()) mu_.AwaitWithTimeout(absl::Condition(&ended), absl::Milliseconds(50));
      attached_.erase(std::remove(attached_.begin(), attached_.end(), streams.out),
                      attached_.end());
      --attachers_;
    }
    if (streams.in != nullptr) streams.in->Cancel();
    if (reader.joinable()) reader.join();
    return absl::OkStatus();
  }

  absl::Status PortForward(const std::string& sandbox_id, int32_t port,
                           streaming::ByteSource& in, streaming::ByteSink& out,
                           const absl::Notification& done) override {
    Enter();
    struct Leave {
      FakeStreamingRuntime* self;
      ~Leave() { self->Exit(); }
    } leave{this};
    {
      absl::MutexLock lock(&mu_);
      ++forwards_;
      last_sandbox_ = sandbox_id;
    }
    if (port == 1) return absl::UnavailableError("connection refused");
    char buf[16384];
    size_t got;
    while ((got = in.Read(buf, sizeof buf)) > 0) {
      if (!out.Write(absl::string_view(buf, got))) break;
    }
    out.Close();
    return absl::OkStatus();
  }

  // Writes to every attached stdout.
  void Emit(const std::string& data) {
    std::vector<streaming::ByteSink*> sinks;
    absl::MutexLock lock(&mu_);
    for (streaming::ByteSink* sink : attached_) sink->Write(data);
  }
  void ExitContainer() {
    absl::MutexLock lock(&mu_);
    ++exits_;
  }
  int attachers() {
    absl::MutexLock lock(&mu_);
    return attachers_;
  }
  int forwards() {
    absl::MutexLock lock(&mu_);
    return forwards_;
  }
  std::string last_sandbox() {
    absl::MutexLock lock(&mu_);
    return last_sandbox_;
  }
  streaming::ExecRequest last_exec() {
    absl::MutexLock lock(&mu_);
    return last_exec_;
  }
  // Runtime calls in progress.
  int active() const { return active_.load(); }
  int saw_done() const { return saw_done_.load(); }
  // Waits until no runtime call is in progress; false on timeout.
  bool WaitIdle(absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (active_.load() != 0) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }
  // Waits until `n` attachers are connected.
  bool WaitAttachers(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return attachers_ == n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

 private:
  void Enter() { active_.fetch_add(1); }
  void Exit() { active_.fetch_sub(1); }

  absl::Mutex mu_;
  std::vector<streaming::ByteSink*> attached_ ABSL_GUARDED_BY(mu_);
  int attachers_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t exits_ ABSL_GUARDED_BY(mu_) = 0;
  int forwards_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_sandbox_ ABSL_GUARDED_BY(mu_);
  streaming::ExecRequest last_exec_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> active_{0};
  std::atomic<int> saw_done_{0};
};

}  // namespace podvisor::testing
