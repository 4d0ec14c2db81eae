#include "pod-sandbox/container_streaming.h"

#include <signal.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/random.h"
#include "common/status_util.h"
#include "pod-sandbox/container_streaming_pump.h"

namespace podvisor {
namespace {

using streaming::ByteSink;
using streaming::ByteSource;
using streaming::ResizeSource;
using streaming::SessionStreams;

constexpr absl::Duration kNoLimit = absl::Hours(24 * 365);
constexpr size_t kChunk = 32 * 1024;

// Copies a ByteSource into `write` until it ends (or is cancelled); then calls `end`.
std::thread PumpSource(ByteSource* in, std::function<bool(absl::string_view)> write,
                       std::function<void()> end) {
  return std::thread([in, write = std::move(write), end = std::move(end)] {
    std::string buf(kChunk, '\0');
    for (;;) {
      size_t n = in->Read(buf.data(), buf.size());
      if (n == 0) break;
      if (!write(absl::string_view(buf.data(), n))) return;
    }
    end();
  });
}

std::thread PumpResize(ResizeSource* resize,
                       std::function<void(const streaming::TerminalSize&)> apply) {
  return std::thread([resize, apply = std::move(apply)] {
    while (std::optional<streaming::TerminalSize> size = resize->Next()) apply(*size);
  });
}

bool Done(const SessionStreams& streams) {
  return streams.done != nullptr && streams.done->HasBeenNotified();
}

// A pump whose bytes the guest sends within `window`, acknowledged on `stream` as the client
// takes them.
std::shared_ptr<SinkPump> WindowedPump(ByteSink* sink, size_t window,
                                       const std::shared_ptr<AgentClient>& agent,
                                       uint32_t stream) {
  SinkPump::Options options;
  // The guest may have a window in flight plus, at most, the frame it was sending when the ack
  // left: twice the window is slack enough, beyond it the guest ignores its window.
  options.max_queued = 2 * window;
  options.ack_every = window / 4;
  return std::make_shared<SinkPump>(sink, options, [agent, stream](uint64_t consumed) {
    (void)agent->AckStream(stream, consumed);  // a failed channel ends the session anyway
  });
}

absl::Status OverrunError(absl::string_view context) {
  return absl::ResourceExhaustedError(
      absl::StrCat(context, ": the guest sent more output than its window allows"));
}

}  // namespace

ContainerStreamingOptions ContainerStreamingOptionsFromConfig(const StreamingConfig& config) {
  ContainerStreamingOptions options;
  options.output_window = static_cast<size_t>(config.output_window_kib) * 1024;
  options.attach_max_queued = 4 * options.output_window;
  return options;
}

absl::StatusOr<int> ContainerStreamingRuntime::Exec(const streaming::ExecRequest& request,
                                                    const SessionStreams& streams) {
  const metrics::StreamingSession session("exec");
  absl::StatusOr<ExecTarget> target = containers_->PrepareExec(request.container_id);
  if (!target.ok()) return target.status();
  const std::string& id = target->container_id;
  const std::string context = absl::StrCat("exec in container ", ShortId(id));
  std::shared_ptr<AgentClient> agent = target->agent;

  ProcessSpec p = target->process;
  p.args = request.cmd;
  p.terminal = request.tty;
  // Back-pressure end to end: the agent stops reading the process's pipes while this much of a
  // stream's output is not acknowledged, and the pumps acknowledge as the client takes it.
  p.output_window = static_cast<uint32_t>(options_.output_window);
  std::vector<uint32_t> ids;
  auto connect = [&](ByteSink* sink, bool wanted, uint32_t* spec_stream) {
    if (!wanted) {
      auto pump = std::make_shared<SinkPump>(nullptr, SinkPump::Options{});
      pump->Push("", true);
      return pump;
    }
    const uint32_t stream = agent->AllocateStreamId();
    std::shared_ptr<SinkPump> pump = WindowedPump(sink, options_.output_window, agent, stream);
    agent->SetStreamCallback(stream,
                             [pump](absl::string_view data, bool eof) { pump->Push(data, eof); });
    ids.push_back(stream);
    *spec_stream = stream;
    return pump;
  };
  // The terminal needs an output even when the client did not ask for it.
  std::shared_ptr<SinkPump> out =
      connect(streams.out, streams.out != nullptr || request.tty, &p.stdout_stream);
  std::shared_ptr<SinkPump> err =
      connect(streams.err, !request.tty && streams.err != nullptr, &p.stderr_stream);
  if (streams.in != nullptr) {
    p.stdin_stream = agent->AllocateStreamId();
    ids.push_back(p.stdin_stream);
  }
  auto close_streams = absl::MakeCleanup([&] {
    for (uint32_t s : ids) agent->CloseStream(s);
    out->Stop();
    err->Stop();
  });

  const std::string exec_id = absl::StrCat("exec-", RandomHex(8));
  struct ExitState {
    absl::Notification exited;
    absl::StatusOr<ExitInfo> exit;
  };
  absl::StatusOr<uint32_t> pid = agent->ExecProcess(id, exec_id, p, options_.agent_call_timeout);
  // The agent client's message already names the container and the call.
  if (!pid.ok()) return pid.status();
  auto state = std::make_shared<ExitState>();
  agent->WaitProcessAsync(id, exec_id, kNoLimit, [state](absl::StatusOr<ExitInfo> exit) {
    state->exit = std::move(exit);
    state->exited.Notify();
  });

  std::thread in_thread;
  if (streams.in != nullptr) {
    const uint32_t stdin_stream = p.stdin_stream;
    in_thread = PumpSource(
        streams.in,
        [agent, stdin_stream](absl::string_view data) {
          return agent->WriteStream(stdin_stream, data, false).ok();
        },
        [agent, stdin_stream] { (void)agent->WriteStream(stdin_stream, "", true); });
  }
  std::thread resize_thread;
  if (streams.resize != nullptr) {
    resize_thread = PumpResize(streams.resize, [&, agent](const streaming::TerminalSize& size) {
      absl::Status s =
          agent->ResizeTty(id, exec_id, size.height, size.width, options_.agent_call_timeout);
      if (!s.ok()) PV_LOG(kDebug) << context << ": resize: " << s;
    });
  }

  // Until the process exits; if the client leaves first (or the guest overruns), kill it.
  absl::Time killed_at = absl::InfiniteFuture();
  bool overrun = false;
  while (!state->exited.WaitForNotificationWithTimeout(options_.poll_interval)) {
    overrun = overrun || out->overrun() || err->overrun();
    if (killed_at == absl::InfiniteFuture() && (Done(streams) || overrun)) {
      absl::Status s =
          agent->SignalProcess(id, exec_id, SIGKILL, false, options_.agent_call_timeout);
      if (!s.ok()) PV_LOG(kDebug) << context << ": SIGKILL after the client left: " << s;
      killed_at = absl::Now();
    }
    if (absl::Now() - killed_at > options_.agent_call_timeout) break;
  }
  if (streams.in != nullptr) streams.in->Cancel();
  if (streams.resize != nullptr) streams.resize->Cancel();
  if (in_thread.joinable()) in_thread.join();
  if (resize_thread.joinable()) resize_thread.join();
  if (!state->exited.HasBeenNotified()) {
    return absl::DeadlineExceededError(
        absl::StrCat(context, ": the process did not exit after SIGKILL"));
  }
  if (!state->exit.ok()) return WithContext(state->exit.status(), absl::StrCat(context, ": wait"));
  if (overrun || out->overrun() || err->overrun()) return OverrunError(context);
  // Output may trail the exit a little.
  if (!Done(streams)) {
    const absl::Time deadline = absl::Now() + options_.output_drain_timeout;
    out->WaitFlushed(deadline - absl::Now());
    err->WaitFlushed(std::max(deadline - absl::Now(), absl::ZeroDuration()));
  }
  return ExitCodeOf(*state->exit);
}

absl::Status ContainerStreamingRuntime::Attach(const streaming::AttachRequest& request,
                                               const SessionStreams& streams) {
  const metrics::StreamingSession session("attach");
  absl::StatusOr<ExecTarget> target = containers_->PrepareExec(request.container_id);
  if (!target.ok()) return target.status();
  const std::string id = target->container_id;
  const std::string context = absl::StrCat("attach to container ", ShortId(id));
  if (streams.in != nullptr && !target->stdin) {
    return absl::FailedPreconditionError(
        absl::StrCat(context, ": it was not created with stdin (stdin: true)"));
  }

  // The container's output is not held back for an attacher (the log must go on): an attacher
  // that falls this far behind is detached instead.
  SinkPump::Options bounded;
  bounded.max_queued = options_.attach_max_queued;
  auto out = std::make_shared<SinkPump>(streams.out, bounded);
  auto err = std::make_shared<SinkPump>(streams.err, bounded);
  // With a TTY the container has no stderr stream: end ours at once.
  if (target->tty) err->Push("", true);
  absl::StatusOr<uint64_t> handle = containers_->AddOutputConsumer(
      id, [out, err](LogStream which, absl::string_view data, bool eof) {
        (which == LogStream::kStdout ? out : err)->Push(data, eof);
      });
  if (!handle.ok()) return WithContext(handle.status(), context);
  auto remove = absl::MakeCleanup([&] {
    containers_->RemoveOutputConsumer(id, *handle);
    out->Stop();
    err->Stop();
  });

  std::thread in_thread;
  if (streams.in != nullptr) {
    const bool stdin_once = target->stdin_once;
    in_thread = PumpSource(
        streams.in,
        [this, id](absl::string_view data) {
          return containers_->WriteStdin(id, data, false).ok();
        },
        [this, id, stdin_once] {
          if (stdin_once) (void)containers_->WriteStdin(id, "", true);
        });
  }
  std::thread resize_thread;
  std::shared_ptr<AgentClient> agent = target->agent;
  if (streams.resize != nullptr) {
    resize_thread = PumpResize(streams.resize, [&, agent](const streaming::TerminalSize& size) {
      absl::Status s =
          agent->ResizeTty(id, "", size.height, size.width, options_.agent_call_timeout);
      if (!s.ok()) PV_LOG(kDebug) << context << ": resize: " << s;
    });
  }

  // Until the main process's output has ended (it exited) or the client left.
  while (!Done(streams)) {
    if (out->WaitFlushed(options_.poll_interval) && err->WaitFlushed(absl::ZeroDuration())) break;
  }
  if (streams.in != nullptr) streams.in->Cancel();
  if (streams.resize != nullptr) streams.resize->Cancel();
  if (in_thread.joinable()) in_thread.join();
  if (resize_thread.joinable()) resize_thread.join();
  return absl::OkStatus();
}

absl::Status ContainerStreamingRuntime::PortForward(const std::string& sandbox_id, int32_t port,
                                                    ByteSource& in, ByteSink& out,
                                                    const absl::Notification& done) {
  const metrics::StreamingSession session("portforward");
  const std::string context =
      absl::StrCat("port-forward to port ", port, " in pod sandbox ", ShortId(sandbox_id));
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": not a TCP port"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandboxes_->Agent(sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  std::shared_ptr<AgentClient> a = *agent;

  const uint32_t stream = a->AllocateStreamId();
  std::shared_ptr<SinkPump> download = WindowedPump(&out, options_.output_window, a, stream);
  a->SetStreamCallback(stream,
                       [download](absl::string_view data, bool eof) { download->Push(data, eof); });
  auto close = absl::MakeCleanup([&] {
    a->CloseStream(stream);
    download->Stop();
  });
  if (absl::Status s = a->PortForward(static_cast<uint32_t>(port), stream,
                                      options_.agent_call_timeout,
                                      static_cast<uint32_t>(options_.output_window));
      !s.ok()) {
    return WithContext(s, absl::StrCat("pod sandbox ", ShortId(sandbox_id)));
  }

  // Upload: the client's end of input becomes a half-close towards the port.
  auto upload_done = std::make_shared<std::atomic<bool>>(false);
  std::thread upload = PumpSource(
      &in, [a, stream](absl::string_view data) { return a->WriteStream(stream, data, false).ok(); },
      [a, stream, upload_done] {
        (void)a->WriteStream(stream, "", true);
        upload_done->store(true);
      });
  // Ends when both directions ended, or when the client reset the connection (its writes fail:
  // nobody will read the download) or the guest overran its window.
  while (!done.HasBeenNotified()) {
    if (download->WaitFlushed(options_.poll_interval) && upload_done->load()) break;
    if (!a->connected() || download->broken() || download->overrun()) break;
  }
  in.Cancel();
  upload.join();
  if (download->overrun()) return OverrunError(context);
  return absl::OkStatus();
}

}  // namespace podvisor
