// After a daemon restart: what a pod's guest, its VM and its shared directory hold that no
// container record owns. A crash inside CreateContainer (between the first disk attached and the
// record written) or inside RemoveContainer (between the record removed and the guest's last
// piece) leaves exactly such pieces; they are released here so nothing leaks until the pod goes.
#include <filesystem>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/container_controller.h"

namespace podvisor {
namespace {

// Object ids are 64 lowercase hex digits (NewObjectId).
bool IsObjectId(const std::string& name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
  }
  return true;
}

// What the records of one sandbox's containers own.
struct Owned {
  std::set<std::string> containers;    // ids
  std::set<std::string> disk_serials;  // layer and volume disks
  std::set<std::string> disk_files;    // volume snapshot images on the host
};

}  // namespace

absl::StatusOr<ReconcileResult> ContainerController::Reconcile(const Sandbox& sandbox) {
  const std::string& id = sandbox.metadata.id;
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_view_->Agent(id);
  if (!agent.ok()) return WithContext(agent.status(), "reconcile sandbox " + ShortId(id));
  Owned owned;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != id) continue;
    owned.containers.insert(c.metadata.id);
    for (const LayerDisk& d : HeldLayers(c.metadata)) owned.disk_serials.insert(d.serial);
    for (const VolumeDisk& v : c.metadata.volumes) {
      owned.disk_serials.insert(v.disk.serial);
      owned.disk_files.insert(v.disk.path);
    }
  }
  ReconcileResult result;
  // 1. Guest containers first: they hold the disks' mounts and the shared directory's binds.
  absl::StatusOr<std::vector<GuestContainer>> guest =
      (*agent)->ListContainers(options_.agent_call_timeout);
  if (!guest.ok()) return WithContext(guest.status(), "reconcile sandbox " + ShortId(id));
  for (const GuestContainer& g : *guest) {
    if (owned.containers.contains(g.id)) continue;
    PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": removing guest container " << ShortId(g.id)
                     << ": no record owns it (a crash interrupted its create or remove)";
    if (absl::Status s = (*agent)->RemoveContainer(g.id, true, options_.agent_call_timeout);
        !s.ok()) {
      PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": " << s;
      continue;
    }
    result.guest_containers.push_back(g.id);
  }
  // 2. Hot-plugged disks (SCSI targets DiskSlots hands out) that no record names.
  absl::StatusOr<std::vector<VmDisk>> disks = hypervisor_->ListDisks(id);
  if (!disks.ok()) return WithContext(disks.status(), "reconcile sandbox " + ShortId(id));
  for (const VmDisk& d : *disks) {
    if (d.index < DiskSlots::kFirst || d.index > DiskSlots::kLast) continue;
    if (owned.disk_serials.contains(d.id)) continue;
    PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": releasing disk " << d.id << " (" << d.path
                     << "): no container record owns it";
    absl::Status s = (*agent)->DiskDetach(d.id, options_.agent_call_timeout);
    if (s.ok()) s = hypervisor_->DetachDisk(id, d.id);
    if (!s.ok()) {
      // Still plugged: its slot stays taken so that no new disk is given the same target.
      disk_slots_.Reserve(id, d.index);
      PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": disk " << d.id << ": " << s;
      continue;
    }
    result.disks.push_back(d.id);
  }
  // 3. Host files: bind mounts under the shared directory (<shared_dir>/<container id>/<n>) and
  //    volume snapshot images (<state_dir>/volumes/*.erofs) and log positions that no record
  //    owns.
  std::error_code ec;
  if (!sandbox.metadata.shared_dir.empty()) {
    for (const auto& entry : std::filesystem::directory_iterator(sandbox.metadata.shared_dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (!IsObjectId(name) || owned.containers.contains(name)) continue;
      PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": removing the shared volumes of "
                       << ShortId(name) << ": no container record owns them";
      // RemoveAll unmounts first and never deletes through a mount: the host data stays.
      if (absl::Status s = RemoveAll(entry.path().string()); !s.ok()) {
        PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": " << s;
        continue;
      }
      result.shared_dirs.push_back(name);
    }
  }
  // The log position files of containers (<state_dir>/output-<id>.pos).
  for (const auto& entry : std::filesystem::directory_iterator(sandbox.metadata.state_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, "output-") || !absl::EndsWith(name, ".pos")) continue;
    const std::string owner = name.substr(7, name.size() - 7 - 4);
    if (!IsObjectId(owner) || owned.containers.contains(owner)) continue;
    if (absl::Status s = RemoveAll(entry.path().string()); s.ok()) {
      result.files.push_back(entry.path().string());
    }
  }
  const std::string volumes_dir = absl::StrCat(sandbox.metadata.state_dir, "/volumes");
  for (const auto& entry : std::filesystem::directory_iterator(volumes_dir, ec)) {
    const std::string path = entry.path().string();
    if (!absl::EndsWith(path, ".erofs") || owned.disk_files.contains(path)) continue;
    if (absl::Status s = RemoveAll(path); s.ok()) result.files.push_back(path);
  }
  return result;
}

}  // namespace podvisor
