#include "pod-sandbox/snapshot_volumes.h"

#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/random.h"
#include "common/status_util.h"
#include "image/layer_unpacker.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {

absl::StatusOr<ContainerVolumes> SnapshotVolumes::Attach(const Sandbox& sandbox, AgentClient& agent,
                                                         const std::string& container_id,
                                                         const ContainerConfig& config) {
  ContainerVolumes volumes;
  std::vector<VolumeDisk>& out = volumes.disks;
  auto undo = absl::MakeCleanup([&] { Detach(sandbox, &agent, container_id, volumes); });
  const std::string dir = absl::StrCat(sandbox.metadata.state_dir, "/volumes");
  for (const ContainerMount& m : config.mounts) {
    if (!m.readonly || m.host_path.empty()) continue;
    if (IsGuestPodFile(m.container_path)) continue;
    std::error_code ec;
    const std::filesystem::file_status st = std::filesystem::status(m.host_path, ec);
    if (ec || (!std::filesystem::is_directory(st) && !std::filesystem::is_regular_file(st))) {
      return absl::InvalidArgumentError(
          absl::StrCat("mount of ", m.host_path, " at ", m.container_path,
                       ": not a directory or regular file on the host"));
    }
    if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
    VolumeDisk v;
    v.container_path = m.container_path;
    v.disk.serial = absl::StrCat("v", RandomHex(9));
    v.disk.path = absl::StrCat(dir, "/", ShortId(container_id), "-", v.disk.serial, ".erofs");
    std::string source = m.host_path;
    std::string staging;
    if (std::filesystem::is_regular_file(st)) {
      // One file: an image holding just that file.
      staging = absl::StrCat(v.disk.path, ".d");
      v.file = std::filesystem::path(m.host_path).filename().string();
      std::filesystem::create_directories(staging, ec);
      std::filesystem::copy_file(m.host_path, absl::StrCat(staging, "/", v.file),
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (ec) {
        return absl::InternalError(absl::StrCat("copy ", m.host_path, ": ", ec.message()));
      }
      source = staging;
    }
    absl::Status built = BuildErofsImage(source, v.disk.path);
    if (!staging.empty()) std::filesystem::remove_all(staging, ec);
    if (!built.ok()) return WithContext(built, absl::StrCat("snapshot of ", m.host_path));
    absl::StatusOr<uint32_t> slot = slots_->Acquire(sandbox.metadata.id);
    if (!slot.ok()) {
      (void)RemoveAll(v.disk.path);
      return WithContext(slot.status(), absl::StrCat("volume ", m.host_path));
    }
    const uint32_t index = *slot;
    v.disk.index = index;
    VmDisk vm_disk;
    vm_disk.id = v.disk.serial;
    vm_disk.path = v.disk.path;
    vm_disk.read_only = true;
    vm_disk.index = index;
    if (absl::Status s = hypervisor_->AttachDisk(sandbox.metadata.id, vm_disk); !s.ok()) {
      slots_->Release(sandbox.metadata.id, index);
      (void)RemoveAll(v.disk.path);
      return WithContext(s, absl::StrCat("attach volume ", m.host_path));
    }
    out.push_back(v);
    absl::StatusOr<std::string> device = MountDisk(
        agent, v.disk.serial, absl::StrCat(kVolumeMountDir, v.disk.serial), agent_call_timeout_);
    if (!device.ok())
      return WithContext(device.status(), absl::StrCat("mount volume ", m.host_path));
  }
  std::move(undo).Cancel();
  return volumes;
}

void SnapshotVolumes::Detach(const Sandbox& sandbox, AgentClient* agent,
                             const std::string& container_id, const ContainerVolumes& volumes) {
  const std::string& sandbox_id = sandbox.metadata.id;
  for (const VolumeDisk& v : volumes.disks) {
    if (agent != nullptr) {
      absl::Status s = agent->DiskDetach(v.disk.serial, agent_call_timeout_);
      if (!s.ok()) {
        PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": unmount volume "
                         << v.disk.serial << ": " << s;
        continue;
      }
      if (hypervisor_->DetachDisk(sandbox_id, v.disk.serial).ok()) {
        slots_->Release(sandbox_id, v.disk.index);
      }
    }
    (void)RemoveAll(v.disk.path);  // the VM keeps an open file; the disk space goes with it
  }
}

}  // namespace podvisor
