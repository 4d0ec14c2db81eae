#include "pod-sandbox/container_controller.h"

// The controller's wiring: construction, the sandbox hooks, recovery after a restart, the
// per-container locks and the read side (inspect, list). The operations live beside it, one file
// per concern: container_create.cc, container_lifecycle.cc, container_exec.cc,
// container_output.cc, container_stats.cc, container_disks.cc, sandbox_stats.cc; the spec they
// build is container_spec.cc's.

#include <filesystem>

#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/container_output.h"

namespace podvisor {

ContainerController::ContainerController(ContainerControllerOptions options,
                                         ContainerStore* containers, SandboxStore* sandboxes,
                                         SandboxView* sandbox_view, Hypervisor* hypervisor,
                                         ImageController* images)
    : options_(std::move(options)),
      containers_(containers),
      sandboxes_(sandboxes),
      sandbox_view_(sandbox_view),
      hypervisor_(hypervisor),
      images_(images),
      layer_disks_(hypervisor, &disk_slots_, options_.agent_call_timeout),
      shared_directory_volumes_(options_.empty_dir_max_bytes),
      snapshot_volumes_(hypervisor, &disk_slots_, options_.agent_call_timeout) {}

ContainerController::~ContainerController() = default;

void ContainerController::Install() {
  SandboxHooks hooks;
  hooks.on_agent_event = [this](const std::string& sandbox_id, const AgentEvent& event) {
    OnAgentEvent(sandbox_id, event);
  };
  hooks.on_stopped = [this](const std::string& sandbox_id) { OnSandboxStopped(sandbox_id); };
  hooks.before_remove = [this](const std::string& sandbox_id) {
    return OnSandboxRemoving(sandbox_id);
  };
  sandbox_view_->SetHooks(std::move(hooks));
  if (images_) {
    images_->SetInUseCheck([this](const std::string& image_id) { return ImageInUse(image_id); });
  }
}

absl::Status ContainerController::Recover() {
  for (const Container& c : containers_->List()) {
    // The disks of every container still recorded are in its VM (a VM that is gone takes its
    // slots with it when its sandbox is removed).
    for (const LayerDisk& d : HeldLayers(c.metadata)) {
      disk_slots_.Reserve(c.metadata.sandbox_id, d.index);
    }
    for (const VolumeDisk& v : c.metadata.volumes) {
      disk_slots_.Reserve(c.metadata.sandbox_id, v.disk.index);
    }
    absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(c.metadata.sandbox_id);
    if (c.status.state == ContainerState::kExited) {
      // It may have ended while no daemon listened (its exit event can even arrive before this
      // runs): the guest still holds the output this daemon did not log. Nothing is replayed
      // for containers whose output is all in the log.
      if (sandbox.ok() && sandbox->status.state == SandboxState::kReady &&
          std::filesystem::exists(OutputPositionPath(sandbox->metadata.state_dir, c.metadata.id))) {
        if (absl::Status s = ReattachOutput(c, *sandbox); !s.ok()) {
          PV_LOG(kDebug) << "container " << ShortId(c.metadata.id) << ": " << s;
        }
      }
      continue;
    }
    if (!sandbox.ok() || sandbox->status.state != SandboxState::kReady) {
      ExitInfo exit;
      exit.exit_code = c.status.state == ContainerState::kRunning ? 137 : 0;
      MarkExited(c.metadata.id, exit, "the pod sandbox is not running");
      continue;
    }
    // The container lives on in its pod VM; its output streams belonged to the previous daemon.
    if (absl::Status s = ReattachOutput(c, *sandbox); !s.ok()) {
      PV_LOG(kWarning) << "container " << ShortId(c.metadata.id)
                       << ": running from before the restart; its further output is not logged: "
                       << s;
    }
  }
  for (const Sandbox& sandbox : sandboxes_->List()) {
    if (sandbox.status.state != SandboxState::kReady) continue;
    absl::StatusOr<ReconcileResult> r = Reconcile(sandbox);
    if (!r.ok()) PV_LOG(kWarning) << r.status();
  }
  return absl::OkStatus();
}

std::shared_ptr<std::mutex> ContainerController::LockFor(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto& l = locks_[id];
  if (!l) l = std::make_shared<std::mutex>();
  return l;
}

std::shared_ptr<std::mutex> ContainerController::SandboxLockFor(const std::string& sandbox_id) {
  absl::MutexLock lock(&mu_);
  auto& l = sandbox_locks_[sandbox_id];
  if (!l) l = std::make_shared<std::mutex>();
  return l;
}

absl::StatusOr<std::string> ContainerController::ResolveId(const std::string& id_or_prefix) const {
  return containers_->Resolve(id_or_prefix);
}

void ContainerController::OnSandboxStopped(const std::string& sandbox_id) {
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id || c.status.state == ContainerState::kExited) continue;
    ExitInfo exit;
    exit.exit_code = 137;
    MarkExited(c.metadata.id, exit, "the pod sandbox stopped");
    DropOutput(c.metadata.id);
  }
}

absl::Status ContainerController::OnSandboxRemoving(const std::string& sandbox_id) {
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id) continue;
    DropOutput(c.metadata.id);
    if (absl::Status s = containers_->Remove(c.metadata.id); !s.ok()) return s;
    absl::MutexLock l(&mu_);
    locks_.erase(c.metadata.id);
  }
  absl::MutexLock l(&mu_);
  sandbox_locks_.erase(sandbox_id);
  disk_slots_.Forget(sandbox_id);
  last_vm_cpu_.erase(sandbox_id);
  return absl::OkStatus();
}

absl::StatusOr<Container> ContainerController::Inspect(const std::string& id_or_prefix) const {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  return containers_->Get(*id);
}

std::vector<Container> ContainerController::List(const ContainerFilter& filter) const {
  std::vector<Container> out;
  for (Container& c : containers_->List()) {
    if (ContainerMatches(c, filter)) out.push_back(std::move(c));
  }
  return out;
}

bool ContainerController::ImageInUse(const std::string& image_id) const {
  for (const Container& c : containers_->List()) {
    if (UsesImage(c.metadata, image_id)) return true;
  }
  return false;
}

}  // namespace podvisor
