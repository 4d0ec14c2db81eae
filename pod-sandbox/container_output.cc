#include "pod-sandbox/container_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/container_controller.h"

namespace podvisor {

// Where a container's output position file lives: with the sandbox's host-side files.
std::string OutputPositionPath(const std::string& sandbox_state_dir, const std::string& id) {
  return absl::StrCat(sandbox_state_dir, "/output-", id, ".pos");
}

namespace {

// Acknowledge output to the guest once this much more of a stream is in the log file: well under
// the 1 MiB the guest holds per stream, so it never waits for an acknowledgement, and rare enough
// to cost nothing. (A restart resumes from the position file, not from the acknowledgements.)
constexpr uint64_t kAckEvery = 256 * 1024;

}  // namespace

ContainerOutput::~ContainerOutput() {
  if (position_fd >= 0) ::close(position_fd);
}

void ContainerOutput::WriteRecord(const uint64_t before[2], const uint64_t after[2], uint64_t inode,
                                  uint64_t size_after) {
  if (position_fd < 0) return;
  const uint64_t v[6] = {before[0], before[1], after[0], after[1], inode, size_after};
  unsigned char buf[kRecordBytes];
  for (size_t k = 0; k < kRecordBytes; ++k) {
    buf[k] = static_cast<unsigned char>(v[k / 8] >> (8 * (k % 8)));
  }
  (void)!::pwrite(position_fd, buf, sizeof buf, 0);
}

void ContainerOutput::OnOutput(LogStream which, absl::string_view data, bool end) {
  const int i = which == LogStream::kStdout ? 0 : 1;
  std::unique_lock<std::mutex> lock(positions_mu);
  received[i] += data.size();
  const uint64_t old = committed[i];
  if (log) {
    auto before = [&](uint64_t inode, uint64_t size_after, size_t pending) {
      uint64_t after[2] = {committed[0], committed[1]};
      after[i] = received[i] - pending;
      WriteRecord(committed, after, inode, size_after);
    };
    const absl::Time now = absl::Now();
    if (!data.empty()) (void)log->Write(which, data, now, before);
    if (end) (void)log->CloseStream(which, now, before);
  }
  committed[i] = received[i] - (log ? log->Pending(which) : 0);
  if (committed[i] != old) WriteRecord(committed, committed, 0, 0);
  if (agent && output_stream[i] != 0 && !end && committed[i] - acked[i] >= kAckEvery) {
    if (agent->AckStream(output_stream[i], committed[i]).ok()) acked[i] = committed[i];
  }
  lock.unlock();
  Deliver(which, data, end);
}

void ContainerOutput::ReadPositions(int fd, const std::string& log_path, uint64_t out[2]) {
  unsigned char buf[kRecordBytes] = {};
  out[0] = out[1] = 0;
  if (::pread(fd, buf, sizeof buf, 0) != static_cast<ssize_t>(sizeof buf)) return;
  uint64_t v[6] = {};
  for (size_t k = 0; k < kRecordBytes; ++k) v[k / 8] |= uint64_t{buf[k]} << (8 * (k % 8));
  out[0] = v[0];
  out[1] = v[1];
  struct stat st;
  if (v[4] != 0 && !log_path.empty() && ::stat(log_path.c_str(), &st) == 0 &&
      static_cast<uint64_t>(st.st_ino) == v[4] && static_cast<uint64_t>(st.st_size) >= v[5]) {
    out[0] = v[2];
    out[1] = v[3];
  }
}

void ContainerOutput::ShiftReceived(int i, uint64_t by) {
  std::lock_guard<std::mutex> lock(positions_mu);
  received[i] += by;
}

void ContainerOutput::Deliver(LogStream which, absl::string_view data, bool end) {
  std::vector<OutputConsumer> targets;
  {
    std::lock_guard<std::mutex> lock(consumers_mu);
    if (end) eof[which == LogStream::kStdout ? 0 : 1] = true;
    for (auto& [handle, consumer] : consumers) targets.push_back(consumer);
  }
  for (OutputConsumer& c : targets) c(which, data, end);
}

absl::StatusOr<std::shared_ptr<ContainerOutput>> ContainerController::NewOutput(
    const ContainerMetadata& meta, const std::string& sandbox_state_dir,
    const std::shared_ptr<AgentClient>& agent, bool fresh) {
  auto output = std::make_shared<ContainerOutput>();
  output->agent = agent;
  if (!meta.log_path.empty()) {
    std::string dir = meta.log_path.substr(0, meta.log_path.find_last_of('/'));
    if (!dir.empty()) {
      if (absl::Status s = EnsureDirs(dir); !s.ok()) return s;  // never chmods an existing one
    }
    absl::StatusOr<std::unique_ptr<ContainerLogWriter>> log =
        ContainerLogWriter::Open(meta.log_path);
    if (!log.ok()) return log.status();
    output->log = std::move(*log);
  }
  if (!sandbox_state_dir.empty()) {
    const std::string path = OutputPositionPath(sandbox_state_dir, meta.id);
    output->position_fd =
        ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0600);
    if (output->position_fd < 0) {
      // Output is logged all the same; only a daemon restart would log some of it twice.
      PV_LOG(kWarning) << ErrnoStatus(absl::StrCat("open ", path), errno);
    }
  }
  auto connect = [&](LogStream which) {
    uint32_t stream = agent->AllocateStreamId();
    std::weak_ptr<ContainerOutput> weak = output;
    agent->SetStreamCallback(stream, [weak, which](absl::string_view data, bool eof) {
      if (std::shared_ptr<ContainerOutput> rt = weak.lock()) rt->OnOutput(which, data, eof);
    });
    output->streams.push_back(stream);
    output->output_stream[which == LogStream::kStdout ? 0 : 1] = stream;
  };
  connect(LogStream::kStdout);
  if (!meta.config.tty) connect(LogStream::kStderr);
  if (meta.config.stdin) {
    output->stdin_stream = agent->AllocateStreamId();
    output->streams.push_back(output->stdin_stream);
  }
  return output;
}

absl::Status ContainerController::ReattachOutput(const Container& c, const Sandbox& sandbox) {
  const std::string& id = c.metadata.id;
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_view_->Agent(sandbox.metadata.id);
  if (!agent.ok()) return agent.status();
  absl::StatusOr<std::shared_ptr<ContainerOutput>> made =
      NewOutput(c.metadata, sandbox.metadata.state_dir, *agent, false);
  if (!made.ok()) return made.status();
  std::shared_ptr<ContainerOutput> output = *made;
  uint64_t positions[2] = {0, 0};
  if (output->position_fd >= 0) {
    ContainerOutput::ReadPositions(output->position_fd, c.metadata.log_path, positions);
  }
  for (int i = 0; i < 2; ++i) {
    output->received[i] = output->committed[i] = output->acked[i] = positions[i];
  }
  OutputAttach attach;
  attach.stdout_stream = output->output_stream[0];
  attach.stderr_stream = output->output_stream[1];
  attach.stdin_stream = output->stdin_stream;
  attach.stdout_offset = positions[0];
  attach.stderr_offset = positions[1];
  {
    // Registered first: the replay may come before the answer.
    absl::MutexLock lock(&mu_);
    outputs_[id] = output;
  }
  absl::StatusOr<OutputAttached> attached =
      (*agent)->AttachOutput(id, attach, options_.agent_call_timeout);
  if (!attached.ok()) {
    DropOutput(id);
    return attached.status();
  }
  const uint64_t starts[2] = {attached->stdout_offset, attached->stderr_offset};
  for (int i = 0; i < 2; ++i) {
    if (output->output_stream[i] == 0 || starts[i] <= positions[i]) continue;
    PV_LOG(kWarning) << "container " << ShortId(id) << ": " << (starts[i] - positions[i])
                     << " bytes of " << (i == 0 ? "stdout" : "stderr")
                     << " were released by the guest before this daemon logged them";
    output->ShiftReceived(i, starts[i] - positions[i]);
  }
  if (c.status.state == ContainerState::kRunning) {
    // The exit event of a process that ended while no daemon listened may be gone: ask.
    const std::string sandbox_id = sandbox.metadata.id;
    (*agent)->WaitProcessAsync(id, "", kNoExecLimit,
                               [this, id, sandbox_id](absl::StatusOr<ExitInfo> exit) {
                                 if (!exit.ok()) return;
                                 AgentEvent e;
                                 e.container_id = id;
                                 e.exit = *exit;
                                 OnAgentEvent(sandbox_id, e);
                               });
  }
  PV_LOG(kInfo) << "container " << ShortId(id) << ": output re-attached at stdout " << starts[0]
                << ", stderr " << starts[1] << (attached->exited ? " (exited)" : "");
  return absl::OkStatus();
}

void ContainerController::DropOutput(const std::string& id) {
  std::shared_ptr<ContainerOutput> output;
  {
    absl::MutexLock lock(&mu_);
    auto it = outputs_.find(id);
    if (it == outputs_.end()) return;
    output = std::move(it->second);
    outputs_.erase(it);
  }
  if (output->agent) {
    for (uint32_t s : output->streams) output->agent->CloseStream(s);
  }
  // Attachers still connected see the end of the output.
  output->Deliver(LogStream::kStdout, "", true);
  output->Deliver(LogStream::kStderr, "", true);
}

absl::Status ContainerController::ReopenLog(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("reopen log of container ", ShortId(*id), ": it is not running"));
  }
  std::shared_ptr<ContainerOutput> output;
  {
    absl::MutexLock lock(&mu_);
    auto it = outputs_.find(*id);
    if (it != outputs_.end()) output = it->second;
  }
  if (!output || !output->log) {
    return absl::FailedPreconditionError(absl::StrCat("reopen log of container ", ShortId(*id),
                                                      ": its output is not logged by this daemon"));
  }
  return output->log->Reopen();
}

}  // namespace podvisor
