#include "pod-sandbox/layer_disks.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/random.h"
#include "common/status_util.h"
#include "pod-sandbox/container_spec.h"
#include "pod-sandbox/sandbox.h"

namespace podvisor {

// A layer detached and attached again gets a new serial, so the guest cannot mistake the old
// device, still going away, for the new one.
std::string LayerSerial(const std::string& path) {
  std::string base = path.substr(path.find_last_of('/') + 1);
  std::string hex;
  for (char c : base) {
    if (absl::ascii_isxdigit(static_cast<unsigned char>(c))) hex.push_back(c);
  }
  if (hex.size() >= 64) hex = hex.substr(hex.size() - 64);  // the hash itself
  hex.resize(13, '0');
  return absl::StrCat("l", hex, RandomHex(3));
}

absl::StatusOr<std::vector<LayerDisk>> LayerDisks::Attach(
    const std::string& sandbox_id, AgentClient& agent, const std::vector<std::string>& paths,
    const std::map<std::string, LayerDisk>& already) {
  std::map<std::string, LayerDisk> attached = already;
  std::vector<LayerDisk> out;
  std::vector<LayerDisk> added;
  auto undo = absl::MakeCleanup([&] {
    for (const LayerDisk& d : added) {
      // The mount may never have happened: unplugged whatever the guest says.
      (void)agent.DiskDetach(d.serial, agent_call_timeout_);
      if (hypervisor_->DetachDisk(sandbox_id, d.serial).ok()) slots_->Release(sandbox_id, d.index);
    }
  });
  for (const std::string& path : paths) {
    if (auto it = attached.find(path); it != attached.end()) {
      out.push_back(it->second);
      continue;
    }
    absl::StatusOr<uint32_t> slot = slots_->Acquire(sandbox_id);
    if (!slot.ok()) return WithContext(slot.status(), absl::StrCat("layer ", path));
    LayerDisk disk;
    disk.serial = LayerSerial(path);
    disk.path = path;
    disk.index = *slot;
    VmDisk vm_disk;
    vm_disk.id = disk.serial;
    vm_disk.path = path;
    vm_disk.read_only = true;
    vm_disk.index = *slot;
    const absl::Time plug_start = absl::Now();
    if (absl::Status s = hypervisor_->AttachDisk(sandbox_id, vm_disk); !s.ok()) {
      slots_->Release(sandbox_id, *slot);
      return WithContext(s, absl::StrCat("attach layer ", path));
    }
    added.push_back(disk);
    attached[path] = disk;
    const absl::Time mount_start = absl::Now();
    absl::StatusOr<std::string> device = MountDisk(
        agent, disk.serial, absl::StrCat(kLayerMountDir, disk.serial), agent_call_timeout_);
    if (!device.ok()) return WithContext(device.status(), absl::StrCat("mount layer ", path));
    PV_LOG(kDebug) << "sandbox " << ShortId(sandbox_id) << ": layer disk " << disk.serial
                   << ": hot-plug " << absl::ToDoubleMilliseconds(mount_start - plug_start)
                   << " ms, guest mount " << absl::ToDoubleMilliseconds(absl::Now() - mount_start)
                   << " ms";
    out.push_back(disk);
  }
  std::move(undo).Cancel();
  return out;
}

absl::Status LayerDisks::DetachOne(const std::string& sandbox_id, AgentClient& agent,
                                   const LayerDisk& d) {
  if (absl::Status s = agent.DiskDetach(d.serial, agent_call_timeout_); !s.ok()) {
    return WithContext(s, absl::StrCat("unmount layer ", d.serial));
  }
  if (absl::Status s = hypervisor_->DetachDisk(sandbox_id, d.serial); !s.ok()) {
    return WithContext(s, absl::StrCat("detach layer ", d.serial));
  }
  slots_->Release(sandbox_id, d.index);
  return absl::OkStatus();
}

void LayerDisks::Detach(const std::string& sandbox_id, AgentClient* agent,
                        const std::vector<LayerDisk>& layers,
                        const std::set<std::string>& still_used) {
  if (agent == nullptr) return;  // the VM is gone or going: its disks go with it
  for (const LayerDisk& d : layers) {
    if (still_used.contains(d.serial)) continue;
    // Still mounted in the guest or still plugged: the disk stays where it is, with its slot.
    if (absl::Status s = DetachOne(sandbox_id, *agent, d); !s.ok()) {
      PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": " << s;
    }
  }
}

}  // namespace podvisor
