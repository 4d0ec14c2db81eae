// Exec (ExecSync and the settings of streamed execs) and attach (output consumers, stdin).
#include <signal.h>

#include <algorithm>
#include <condition_variable>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/status_util.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_output.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {

absl::StatusOr<ExecSyncResult> ContainerController::ExecSync(const std::string& id_or_prefix,
                                                             const std::vector<std::string>& cmd,
                                                             absl::Duration timeout) {
  if (cmd.empty()) return absl::InvalidArgumentError("exec: cmd is required");
  // The same checks and process settings as a streamed exec.
  absl::StatusOr<ExecTarget> target = PrepareExec(id_or_prefix);
  if (!target.ok()) return target.status();
  const std::string& id = target->container_id;
  AgentClient* agent = target->agent.get();
  const std::string context = absl::StrCat("exec in container ", ShortId(id));

  struct Output {
    std::mutex mu;
    std::condition_variable cv;
    std::string data[2];
    bool eof[2] = {false, false};
  };
  auto output = std::make_shared<Output>();
  const size_t limit = options_.exec_output_limit;
  uint32_t streams[2];
  for (int i = 0; i < 2; ++i) {
    streams[i] = agent->AllocateStreamId();
    agent->SetStreamCallback(streams[i], [output, i, limit](absl::string_view data, bool eof) {
      std::lock_guard<std::mutex> lock(output->mu);
      std::string& buf = output->data[i];
      if (buf.size() < limit) buf.append(data.data(), std::min(data.size(), limit - buf.size()));
      if (eof) {
        output->eof[i] = true;
        output->cv.notify_all();
      }
    });
  }
  auto close = absl::MakeCleanup([&] {
    for (uint32_t s : streams) agent->CloseStream(s);
  });
  ProcessSpec& p = target->process;
  p.args = cmd;
  p.stdout_stream = streams[0];
  p.stderr_stream = streams[1];
  const std::string exec_id = absl::StrCat("exec-", RandomHex(8));
  absl::StatusOr<uint32_t> pid = agent->ExecProcess(id, exec_id, p, options_.agent_call_timeout);
  if (!pid.ok()) return WithContext(pid.status(), absl::StrCat(context, ": agent"));
  const absl::Duration limit_time = timeout > absl::ZeroDuration() ? timeout : kNoExecLimit;
  absl::StatusOr<ExitInfo> exit = agent->WaitProcess(id, exec_id, limit_time);
  if (!exit.ok()) {
    (void)agent->SignalProcess(id, exec_id, SIGKILL, false, options_.agent_call_timeout);
    if (absl::IsDeadlineExceeded(exit.status())) {
      return absl::DeadlineExceededError(
          absl::StrCat(context, ": command timed out after ", absl::FormatDuration(timeout)));
    }
    return WithContext(exit.status(), absl::StrCat(context, ": wait"));
  }
  ExecSyncResult result;
  {
    std::unique_lock<std::mutex> lock(output->mu);
    output->cv.wait_for(lock, absl::ToChronoMilliseconds(options_.output_drain_timeout),
                        [&] { return output->eof[0] && output->eof[1]; });
    result.stdout_data = output->data[0];
    result.stderr_data = output->data[1];
  }
  result.exit_code = ExitCodeOf(*exit);
  return result;
}

absl::StatusOr<ExecTarget> ContainerController::PrepareExec(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  const std::string context = absl::StrCat("exec in container ", ShortId(*id));
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat(context, ": it is not running"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_view_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  ExecTarget t;
  t.container_id = *id;
  t.agent = *agent;
  t.process = ExecProcess(c->metadata);
  t.tty = c->metadata.config.tty;
  t.stdin = c->metadata.config.stdin;
  t.stdin_once = c->metadata.config.stdin_once;
  return t;
}

absl::StatusOr<uint64_t> ContainerController::AddOutputConsumer(const std::string& id,
                                                                OutputConsumer consumer) {
  std::shared_ptr<ContainerOutput> output;
  {
    absl::MutexLock lock(&mu_);
    auto it = outputs_.find(id);
    if (it != outputs_.end()) output = it->second;
  }
  if (!output) {
    return absl::FailedPreconditionError(absl::StrCat(
        "attach to container ", ShortId(id), ": its output is not handled by this daemon"));
  }
  uint64_t handle;
  bool eof[2];
  {
    std::lock_guard<std::mutex> lock(output->consumers_mu);
    handle = output->next_consumer++;
    output->consumers[handle] = consumer;
    eof[0] = output->eof[0];
    eof[1] = output->eof[1];
  }
  if (eof[0]) consumer(LogStream::kStdout, "", true);
  if (eof[1]) consumer(LogStream::kStderr, "", true);
  return handle;
}

void ContainerController::RemoveOutputConsumer(const std::string& id, uint64_t handle) {
  std::shared_ptr<ContainerOutput> output;
  {
    absl::MutexLock lock(&mu_);
    auto it = outputs_.find(id);
    if (it != outputs_.end()) output = it->second;
  }
  if (!output) return;
  std::lock_guard<std::mutex> lock(output->consumers_mu);
  output->consumers.erase(handle);
}

absl::Status ContainerController::WriteStdin(const std::string& id, absl::string_view data,
                                             bool eof) {
  std::shared_ptr<ContainerOutput> output;
  {
    absl::MutexLock lock(&mu_);
    auto it = outputs_.find(id);
    if (it != outputs_.end()) output = it->second;
  }
  if (!output || !output->agent || output->stdin_stream == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", ShortId(id), " was not created with stdin"));
  }
  return output->agent->WriteStream(output->stdin_stream, data, eof);
}

}  // namespace podvisor
