// Start, stop, exit and remove of containers, and their resource updates.
#include <signal.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_output.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {
namespace {

constexpr absl::Duration kKillWait = absl::Seconds(10);

}  // namespace

absl::Status ContainerController::Start(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  const std::string context = absl::StrCat("start container ", ShortId(*id));
  if (c->status.state != ContainerState::kCreated) {
    return absl::FailedPreconditionError(absl::StrCat(
        context, ": it is ", nlohmann::json(c->status.state).get<std::string>(), ", not created"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_view_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  const int64_t started = absl::ToUnixNanos(absl::Now());
  absl::StatusOr<uint32_t> pid = (*agent)->StartContainer(*id, options_.agent_call_timeout);
  if (!pid.ok()) {
    ExitInfo exit;
    exit.exit_code = 128;
    MarkExited(*id, exit, absl::StrCat("start failed: ", pid.status().message()));
    return WithContext(pid.status(), absl::StrCat(context, ": agent"));
  }
  auto updated = containers_->Update(*id, [&](ContainerStatus& st) {
    if (st.started_at_ns == 0) st.started_at_ns = started;
    st.pid = *pid;
    // A quick process may have exited (and been reported) already.
    if (st.state == ContainerState::kCreated) st.state = ContainerState::kRunning;
    return absl::OkStatus();
  });
  if (!updated.ok()) return WithContext(updated.status(), context);
  PV_LOG(kInfo) << "container " << ShortId(*id) << " started (guest pid " << *pid << ")";
  return absl::OkStatus();
}

void ContainerController::MarkExited(const std::string& id, const ExitInfo& exit,
                                     const std::string& message) {
  const int64_t now = absl::ToUnixNanos(absl::Now());
  auto updated = containers_->Update(id, [&](ContainerStatus& st) {
    if (st.state == ContainerState::kExited) return absl::CancelledError("already exited");
    st.state = ContainerState::kExited;
    if (st.started_at_ns == 0 && st.pid != 0) st.started_at_ns = now;
    st.finished_at_ns = now;
    st.exit_code = ExitCodeOf(exit);
    st.reason = exit.oom_killed ? "OOMKilled" : st.exit_code == 0 ? "Completed" : "Error";
    st.message = message;
    return absl::OkStatus();
  });
  if (updated.ok()) {
    PV_LOG(kInfo) << "container " << ShortId(id) << " exited with " << updated->status.exit_code
                  << (exit.oom_killed ? " (OOM killed)" : "");
  }
}

void ContainerController::OnAgentEvent(const std::string& sandbox_id, const AgentEvent& event) {
  if (event.kind != AgentEvent::Kind::kProcessExited || !event.exec_id.empty()) return;
  absl::StatusOr<Container> c = containers_->Get(event.container_id);
  // The guest only speaks for its own containers.
  if (!c.ok() || c->metadata.sandbox_id != sandbox_id) return;
  MarkExited(event.container_id, event.exit, "");
}

absl::Status ContainerController::Stop(const std::string& id_or_prefix, absl::Duration timeout) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (absl::IsNotFound(c.status())) return absl::OkStatus();
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kRunning) return absl::OkStatus();
  const std::string context = absl::StrCat("stop container ", ShortId(*id));
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_view_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) {
    ExitInfo exit;
    exit.exit_code = 137;
    MarkExited(*id, exit, "the pod sandbox is not running");
    return absl::OkStatus();
  }
  absl::StatusOr<ExitInfo> exit = absl::DeadlineExceededError("not waited");
  if (timeout > absl::ZeroDuration()) {
    absl::Status s = (*agent)->SignalProcess(*id, "", c->metadata.stop_signal, false,
                                             options_.agent_call_timeout);
    if (s.ok()) exit = (*agent)->WaitProcess(*id, "", timeout);
  }
  if (!exit.ok()) {
    absl::Status s = (*agent)->SignalProcess(*id, "", SIGKILL, true, options_.agent_call_timeout);
    if (!s.ok()) PV_LOG(kDebug) << context << ": SIGKILL: " << s;
    exit = (*agent)->WaitProcess(*id, "", kKillWait);
    if (!exit.ok())
      return WithContext(exit.status(), absl::StrCat(context, ": wait after SIGKILL"));
  }
  MarkExited(*id, *exit, "");
  return absl::OkStatus();
}

absl::Status ContainerController::RemoveLocked(const Container& c) {
  const std::string& id = c.metadata.id;
  const std::string context = absl::StrCat("remove container ", ShortId(id));
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_view_->Agent(c.metadata.sandbox_id);
  if (agent.ok()) {
    if (absl::Status s = (*agent)->RemoveContainer(id, true, options_.agent_call_timeout);
        !s.ok()) {
      return WithContext(s, absl::StrCat(context, ": agent"));
    }
  }
  DropOutput(id);
  if (absl::StatusOr<Sandbox> sb = sandboxes_->Get(c.metadata.sandbox_id); sb.ok()) {
    ::unlink(OutputPositionPath(sb->metadata.state_dir, id).c_str());
  }
  auto sandbox_lock = SandboxLockFor(c.metadata.sandbox_id);
  std::lock_guard<std::mutex> guard(*sandbox_lock);
  if (absl::Status s = containers_->Remove(id); !s.ok()) return WithContext(s, context);
  DetachVolumes(c.metadata.sandbox_id, id,
                ContainerVolumes{c.metadata.volumes, c.metadata.shared_volumes});
  DetachUnusedLayers(c.metadata.sandbox_id, HeldLayers(c.metadata), id);
  return absl::OkStatus();
}

absl::Status ContainerController::Remove(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  if (absl::Status s = Stop(*id, absl::ZeroDuration()); !s.ok()) return s;
  {
    auto lock = LockFor(*id);
    std::lock_guard<std::mutex> guard(*lock);
    absl::StatusOr<Container> c = containers_->Get(*id);
    if (absl::IsNotFound(c.status())) return absl::OkStatus();
    if (!c.ok()) return c.status();
    if (absl::Status s = RemoveLocked(*c); !s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  locks_.erase(*id);
  PV_LOG(kInfo) << "container " << ShortId(*id) << " removed";
  return absl::OkStatus();
}

absl::Status ContainerController::UpdateResources(const std::string& id_or_prefix,
                                                  const ContainerLimits& update) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  const std::string context = absl::StrCat("update resources of container ", ShortId(*id));
  if (absl::Status s = ValidateLimits(update); !s.ok()) return WithContext(s, context);
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kCreated && c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat(context, ": it is ", nlohmann::json(c->status.state).get<std::string>(),
                     "; only a created or running container can be updated"));
  }
  const ContainerLimits merged = MergeLimits(c->status.resources, update);
  if (absl::Status s = ValidateLimits(merged); !s.ok()) {
    return WithContext(s, absl::StrCat(context, ": with the current limits"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_view_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  // The guest cgroup of a created container exists already (crun create): it starts with these.
  if (absl::Status s = (*agent)->UpdateContainerResources(*id, ToGuestResources(update),
                                                          options_.agent_call_timeout);
      !s.ok()) {
    return WithContext(s, absl::StrCat(context, ": agent"));
  }
  auto updated = containers_->Update(*id, [&](ContainerStatus& st) {
    st.resources = merged;
    return absl::OkStatus();
  });
  if (!updated.ok()) return WithContext(updated.status(), context);
  PV_LOG(kInfo) << "container " << ShortId(*id) << ": resources updated";
  return absl::OkStatus();
}

}  // namespace podvisor
