// The disks and shared directories a container's root filesystem and volumes come through.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/random.h"
#include "common/status_util.h"
#include "image/layer_unpacker.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {
namespace {

constexpr uint32_t kFirstLayerIndex = 1;
constexpr uint32_t kMaxDiskIndex = 254;

// The serial of a new layer disk: 13 hex digits of the layer image's name (its diff id) and 6
// random ones, [a-z0-9], 20 characters. A layer detached and attached again gets a new serial, so
// the guest cannot mistake the old device, still going away, for the new one.
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

// Asks the agent to mount a disk just hot-plugged. The guest may list the disk (its serial in
// sysfs) a moment before the block device can be opened (mount: ENXIO), so a failure is retried
// for a few seconds; a mount that failed left nothing behind.
absl::StatusOr<std::string> MountDisk(AgentClient& agent, const std::string& serial,
                                      const std::string& mount_point, absl::Duration timeout) {
  absl::StatusOr<std::string> device;
  absl::Duration backoff = absl::Milliseconds(100);
  for (int attempt = 0; attempt < 6; ++attempt) {
    device = agent.DiskAttached(serial, mount_point, "erofs", true, timeout);
    // Not found: the agent already waited for the disk (10 s); unavailable: the channel is gone.
    if (device.ok() || absl::IsInvalidArgument(device.status()) ||
        absl::IsUnavailable(device.status()) || absl::IsNotFound(device.status()) ||
        absl::IsDeadlineExceeded(device.status())) {
      return device;
    }
    PV_LOG(kDebug) << "disk " << serial << " not mountable yet: " << device.status();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
  return device;
}

}  // namespace

absl::StatusOr<std::vector<LayerDisk>> ContainerController::AttachLayers(
    const std::string& sandbox_id, AgentClient& agent, const std::vector<std::string>& paths) {
  // What the sandbox's other containers already attached (the caller holds the sandbox lock).
  std::map<std::string, LayerDisk> attached;  // by layer image path
  std::set<uint32_t> used;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id) continue;
    for (const LayerDisk& d : c.metadata.layers) {
      attached[d.path] = d;
      used.insert(d.index);
    }
    for (const VolumeDisk& v : c.metadata.volumes) used.insert(v.disk.index);
  }
  // SCSI targets rotate through the free ones, so that a target just unplugged (which the guest
  // may still be tearing down) is not the next one used.
  uint32_t cursor;
  {
    absl::MutexLock lock(&mu_);
    cursor = next_disk_index_[sandbox_id];
  }
  std::vector<LayerDisk> out;
  std::vector<LayerDisk> added;
  auto undo = absl::MakeCleanup([&] {
    for (const LayerDisk& d : added) {
      (void)agent.DiskDetach(d.serial, options_.agent_call_timeout);
      (void)hypervisor_->DetachDisk(sandbox_id, d.serial);
    }
  });
  for (const std::string& path : paths) {
    LayerDisk disk;
    disk.serial = LayerSerial(path);
    disk.path = path;
    if (auto it = attached.find(path); it != attached.end()) {
      out.push_back(it->second);
      continue;
    }
    std::optional<uint32_t> index;
    const uint32_t slots = kMaxDiskIndex - kFirstLayerIndex + 1;
    for (uint32_t i = 0; i < slots && !index; ++i) {
      uint32_t candidate = kFirstLayerIndex + (cursor + i) % slots;
      if (!used.contains(candidate)) index = candidate;
    }
    if (!index) {
      return absl::ResourceExhaustedError("the pod VM has no free disk slot for another layer");
    }
    cursor = *index - kFirstLayerIndex + 1;
    const uint32_t slot = *index;
    disk.index = slot;
    VmDisk vm_disk;
    vm_disk.id = disk.serial;
    vm_disk.path = path;
    vm_disk.read_only = true;
    vm_disk.index = slot;
    if (absl::Status s = hypervisor_->AttachDisk(sandbox_id, vm_disk); !s.ok()) {
      return WithContext(s, absl::StrCat("attach layer ", path));
    }
    added.push_back(disk);
    used.insert(slot);
    attached[path] = disk;
    absl::StatusOr<std::string> device = MountDisk(
        agent, disk.serial, absl::StrCat(kLayerMountDir, disk.serial), options_.agent_call_timeout);
    if (!device.ok()) return WithContext(device.status(), absl::StrCat("mount layer ", path));
    out.push_back(disk);
  }
  std::move(undo).Cancel();
  absl::MutexLock lock(&mu_);
  next_disk_index_[sandbox_id] = cursor;
  return out;
}

absl::StatusOr<std::vector<VolumeDisk>> ContainerController::AttachVolumes(
    const Sandbox& sandbox, AgentClient& agent, const std::string& container_id,
    const ContainerConfig& config, const std::vector<LayerDisk>& layers) {
  std::vector<VolumeDisk> out;
  std::set<uint32_t> used;
  for (const LayerDisk& d : layers) used.insert(d.index);
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox.metadata.id) continue;
    for (const LayerDisk& d : c.metadata.layers) used.insert(d.index);
    for (const VolumeDisk& v : c.metadata.volumes) used.insert(v.disk.index);
  }
  if (!sandbox.metadata.shared_dir.empty()) return out;  // volumes go through the shared dir
  auto undo = absl::MakeCleanup([&] { DetachVolumes(sandbox.metadata.id, out); });
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
    uint32_t index = kFirstLayerIndex;
    {
      absl::MutexLock lock(&mu_);
      uint32_t& cursor = next_disk_index_[sandbox.metadata.id];
      const uint32_t slots = kMaxDiskIndex - kFirstLayerIndex + 1;
      bool found = false;
      for (uint32_t i = 0; i < slots && !found; ++i) {
        uint32_t candidate = kFirstLayerIndex + (cursor + i) % slots;
        if (!used.contains(candidate)) {
          index = candidate;
          found = true;
        }
      }
      if (!found) {
        (void)RemoveAll(v.disk.path);
        return absl::ResourceExhaustedError("the pod VM has no free disk slot for a volume");
      }
      cursor = index - kFirstLayerIndex + 1;
    }
    v.disk.index = index;
    used.insert(index);
    VmDisk vm_disk;
    vm_disk.id = v.disk.serial;
    vm_disk.path = v.disk.path;
    vm_disk.read_only = true;
    vm_disk.index = index;
    if (absl::Status s = hypervisor_->AttachDisk(sandbox.metadata.id, vm_disk); !s.ok()) {
      (void)RemoveAll(v.disk.path);
      return WithContext(s, absl::StrCat("attach volume ", m.host_path));
    }
    out.push_back(v);
    absl::StatusOr<std::string> device =
        MountDisk(agent, v.disk.serial, absl::StrCat(kVolumeMountDir, v.disk.serial),
                  options_.agent_call_timeout);
    if (!device.ok())
      return WithContext(device.status(), absl::StrCat("mount volume ", m.host_path));
  }
  std::move(undo).Cancel();
  return out;
}

absl::StatusOr<std::vector<SharedVolume>> ContainerController::AttachSharedVolumes(
    const Sandbox& sandbox, const std::string& container_id, const ContainerConfig& config) {
  std::vector<SharedVolume> out;
  const std::string& shared_dir = sandbox.metadata.shared_dir;
  if (shared_dir.empty()) return out;
  const std::string dir = absl::StrCat(shared_dir, "/", container_id);
  auto undo = absl::MakeCleanup([&] { (void)DetachSharedVolumes(shared_dir, container_id); });
  for (const ContainerMount& m : config.mounts) {
    if (m.host_path.empty()) continue;
    if (IsGuestPodFile(m.container_path)) continue;
    const std::string what = absl::StrCat("mount of ", m.host_path, " at ", m.container_path);
    if (m.host_path[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the host path must be absolute"));
    }
    struct stat st {};
    if (::stat(m.host_path.c_str(), &st) != 0) {
      if (errno != ENOENT) return ErrnoStatus(absl::StrCat(what, ": stat"), errno);
      // As containerd does: a missing host path becomes a directory.
      if (absl::Status s = MakeDirs(m.host_path); !s.ok()) return WithContext(s, what);
      if (::stat(m.host_path.c_str(), &st) != 0) {
        return ErrnoStatus(absl::StrCat(what, ": stat"), errno);
      }
    }
    const bool is_dir = S_ISDIR(st.st_mode);
    if (!is_dir && !S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what,
                       ": only directories and regular files can be shared with a pod VM (sockets, "
                       "devices and fifos of the host cannot be reached from inside it)"));
    }
    if (out.empty()) {
      if (absl::Status s = MakeDirs(dir, 0711); !s.ok()) return WithContext(s, what);
    }
    SharedVolume v;
    v.container_path = m.container_path;
    v.host_path = m.host_path;
    v.name = absl::StrCat(container_id, "/", out.size());
    v.readonly = m.readonly;
    const std::string target = absl::StrCat(shared_dir, "/", v.name);
    if (is_dir) {
      if (::mkdir(target.c_str(), 0755) != 0) return ErrnoStatus("mkdir " + target, errno);
    } else {
      int fd = ::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return ErrnoStatus("create " + target, errno);
      ::close(fd);
    }
    out.push_back(v);
    if (::mount(m.host_path.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": bind mount"), errno);
    }
    // HostToContainer: mounts made later under the host path reach the container (a slave of
    // the host path's peer group when it is shared); private: none do.
    const unsigned long propagation =
        m.propagation == MountPropagation::kHostToContainer ? MS_SLAVE : MS_PRIVATE;
    if (::mount(nullptr, target.c_str(), nullptr, MS_REC | propagation, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": set propagation"), errno);
    }
    if (m.readonly &&
        ::mount(nullptr, target.c_str(), nullptr,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": read-only remount"), errno);
    }
  }
  std::move(undo).Cancel();
  return out;
}

absl::Status ContainerController::DetachSharedVolumes(const std::string& shared_dir,
                                                      const std::string& container_id) {
  if (shared_dir.empty() || container_id.empty()) return absl::OkStatus();
  // RemoveAll unmounts first and never deletes through a mount: the host data stays.
  return RemoveAll(absl::StrCat(shared_dir, "/", container_id));
}

void ContainerController::DetachVolumes(const std::string& sandbox_id,
                                        const std::vector<VolumeDisk>& volumes) {
  if (volumes.empty()) return;
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_controller_->Agent(sandbox_id);
  for (const VolumeDisk& v : volumes) {
    if (agent.ok()) {
      absl::Status s = (*agent)->DiskDetach(v.disk.serial, options_.agent_call_timeout);
      if (!s.ok()) {
        PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": unmount volume "
                         << v.disk.serial << ": " << s;
        continue;
      }
      (void)hypervisor_->DetachDisk(sandbox_id, v.disk.serial);
    }
    (void)RemoveAll(v.disk.path);  // the VM keeps an open file; the disk space goes with it
  }
}

void ContainerController::DetachUnusedLayers(const std::string& sandbox_id,
                                             const std::vector<LayerDisk>& layers,
                                             const std::string& removed_id) {
  if (layers.empty()) return;
  std::set<std::string> still_used;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id || c.metadata.id == removed_id) continue;
    for (const LayerDisk& d : c.metadata.layers) still_used.insert(d.serial);
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_controller_->Agent(sandbox_id);
  if (!agent.ok()) return;  // the VM is gone or going: its disks go with it
  for (const LayerDisk& d : layers) {
    if (still_used.contains(d.serial)) continue;
    if (absl::Status s = (*agent)->DiskDetach(d.serial, options_.agent_call_timeout); !s.ok()) {
      PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": unmount layer " << d.serial
                       << ": " << s;
      continue;  // still mounted in the guest: leave the disk where it is
    }
    if (absl::Status s = hypervisor_->DetachDisk(sandbox_id, d.serial); !s.ok()) {
      PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": detach layer " << d.serial << ": "
                       << s;
    }
  }
}

}  // namespace podvisor
