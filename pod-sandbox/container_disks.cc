// The disks and volumes of containers: which layers a sandbox's VM has, which volume mode a
// sandbox uses, and their release when a container goes.
#include <set>

#include "common/log.h"
#include "pod-sandbox/container_controller.h"

namespace podvisor {

VolumeShare& ContainerController::VolumesFor(const Sandbox& sandbox) {
  if (sandbox.metadata.shared_dir.empty()) return snapshot_volumes_;
  return shared_directory_volumes_;
}

std::map<std::string, LayerDisk> ContainerController::AttachedLayers(
    const std::string& sandbox_id) const {
  std::map<std::string, LayerDisk> attached;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id) continue;
    for (const LayerDisk& d : HeldLayers(c.metadata)) attached[d.path] = d;
  }
  return attached;
}

void ContainerController::DetachUnusedLayers(const std::string& sandbox_id,
                                             const std::vector<LayerDisk>& layers,
                                             const std::string& removed_id) {
  if (layers.empty()) return;
  std::set<std::string> still_used;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id || c.metadata.id == removed_id) continue;
    for (const LayerDisk& d : HeldLayers(c.metadata)) still_used.insert(d.serial);
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_view_->Agent(sandbox_id);
  layer_disks_.Detach(sandbox_id, agent.ok() ? agent->get() : nullptr, layers, still_used);
}

void ContainerController::DetachVolumes(const std::string& sandbox_id,
                                        const std::string& container_id,
                                        const ContainerVolumes& volumes) {
  if (volumes.disks.empty() && volumes.shared.empty()) return;
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(sandbox_id);
  if (!sandbox.ok()) return;
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_view_->Agent(sandbox_id);
  VolumesFor(*sandbox).Detach(*sandbox, agent.ok() ? agent->get() : nullptr, container_id, volumes);
}

}  // namespace podvisor
