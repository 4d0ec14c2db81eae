#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace podvisor {

// The name of the virtio-serial port the guest agent listens on; the guest finds it under
// /sys/class/virtio-ports/*/name.
inline constexpr char kAgentPortName[] = "io.podvisor.agent.0";

// The virtiofs tag under which a VM's shared directory (VmSpec::shared_dir) is exported.
inline constexpr char kSharedFsTag[] = "podvisor-shared";

// How VmSpec::shared_dir reaches the guest. virtiofs needs guest RAM shared with virtiofsd and
// cannot be saved, so template clones use QEMU's own virtio-9p server, which reads guest RAM
// through QEMU's mapping (docs/hypervisor.md, "Template clones").
enum class SharedFsTransport { kVirtiofs, k9p };

// Every VM Podvisor creates is named "<kVmNamePrefix><id>"; List() and re-attach after a daemon
// restart only consider names with this prefix.
inline constexpr char kVmNamePrefix[] = "podvisor-";

// Ids of template VMs being built start with this; List() never reports them and destroys any
// left behind by a daemon that died while building one.
inline constexpr char kTemplateVmIdPrefix[] = "tmpl-";

// A block device given to the guest. Disks sit on one virtio-scsi bus (so they can be hot-plugged
// on microvm): disk `index` is SCSI target `index`, LUN 0, i.e. /sys/bus/scsi/devices/H:0:<index>:0
// in the guest, and carries `id` as its SCSI serial number (vpd_pg80).
struct VmDisk {
  std::string id;                // unique per VM; [A-Za-z0-9_.-], at most 20 chars (SCSI serial)
  std::string path;              // host file or block device
  bool read_only = false;
  std::string format = "raw";    // "raw" | "qcow2"
  uint32_t index = 0;            // SCSI target number, 0..254
};

// A network interface backed by an existing tap device. When `netns_path` is set the tap lives
// in that network namespace (a bind-mounted netns file, as CNI uses); all NICs of one VM must
// share it. The QEMU process then runs in that namespace too.
struct VmNic {
  std::string tap;               // existing tap device name
  std::string mac;               // "52:54:00:xx:xx:xx"; the guest NIC's MAC
  std::string netns_path;        // empty: the caller's network namespace
};

// Everything needed to create and start one VM.
struct VmSpec {
  std::string id;                // VM name is kVmNamePrefix + id; [A-Za-z0-9_-]
  uint32_t vcpus = 1;
  uint64_t memory_mib = 512;
  std::string kernel;            // uncompressed vmlinux (PVH), see deploy/guest/build.sh
  std::string initrd;
  std::string extra_kernel_args; // appended to the built-in arguments
  // Directory owned by the caller (created before Create, removed by the caller after Destroy).
  std::string state_dir;
  // Host end of the agent's virtio-serial port: QEMU creates and listens on this unix socket
  // (the host connects as a client). Removed by Destroy/Stop. Usually <state_dir>/agent.sock;
  // must be shorter than 108 bytes.
  std::string agent_socket;
  std::string console_log;       // the guest's serial console (kernel messages) is appended here
  std::vector<VmDisk> disks;
  std::vector<VmNic> nics;
  // A host directory exported to the guest over virtiofs (tag kSharedFsTag), served by a
  // virtiofsd the backend starts and stops with the VM; guest RAM is then shared memory (memfd),
  // which virtiofsd maps. Mounts made under this directory later are visible in the guest.
  // Empty: no shared filesystem.
  std::string shared_dir;
  // Cgroup directories (created and limited by the caller) that QEMU and its helpers run in: one
  // per v1 controller, or one v2 directory; they are moved there right after they started (v1
  // moves their memory charges along when the caller set move_charge_at_immigrate). Empty: the
  // caller's cgroups.
  std::vector<std::string> cgroup_dirs;
  SharedFsTransport shared_fs_transport = SharedFsTransport::kVirtiofs;
  // Guest RAM as this file (on tmpfs) instead of anonymous memory. With `restore_state` empty the
  // mapping is shared: the VM is a template being built, saved later with SaveTemplate. With
  // `restore_state` set the mapping is private copy-on-write and the VM starts from the device
  // state in that file (written by SaveTemplate) instead of booting: a clone. A clone's device
  // set (disks, NICs, shared directory) must equal its template's.
  std::string memory_file;
  std::string restore_state;
};

enum class VmState { kRunning, kPaused, kStopped, kAbsent };

struct VmStatus {
  VmState state = VmState::kAbsent;
  pid_t qemu_pid = 0;            // 0 unless running or paused
};

struct VmInfo {
  std::string id;                // without the name prefix
  VmStatus status;
};

// A VM stopped without being asked to (guest powered off, crashed, QEMU killed or failed).
// Reported once per VM, within milliseconds of QEMU exiting; never for Stop/Destroy. Delivered on
// one of the backend's threads: keep the handler short and never call back into the Hypervisor
// from it synchronously (post the work elsewhere).
struct VmExitEvent {
  std::string id;
  std::string reason;            // "shutdown", "crashed", "destroyed", "failed", ...
};
using VmExitCallback = std::function<void(const VmExitEvent&)>;

// Creates and controls pod VMs. Implementations are thread-safe: calls on different VMs may run
// concurrently; calls on one VM are serialised by the backend.
class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  // Connects, prepares the backend, chooses the accelerator and does the first (slow) create so
  // that the first real Create is fast; re-attaches exit watching to VMs already running. Call
  // once at daemon start, before anything else: it takes seconds (docs/hypervisor.md).
  virtual absl::Status Init() = 0;

  // From another thread, while Init runs (a daemon stopping during its start-up): Init gives up
  // soon with CANCELLED, destroying a probe or warm-up VM it is waiting on. A finished Init is
  // unaffected. Idempotent.
  virtual void CancelInit() {}

  // "kvm" or "tcg" once Init has run.
  virtual std::string Accelerator() const = 0;

  // Creates and starts the VM. On failure nothing is left (no process, no domain, no socket).
  // ALREADY_EXISTS when a VM with this id runs.
  virtual absl::Status Create(const VmSpec& spec) = 0;

  // Asks the guest to power off, waits up to `timeout`, then destroys it. A missing VM is OK.
  virtual absl::Status Stop(const std::string& id, absl::Duration timeout) = 0;

  // Ends the VM now (SIGTERM, then SIGKILL). A missing VM is OK.
  virtual absl::Status Destroy(const std::string& id) = 0;

  // kAbsent (not an error) when no such VM exists.
  virtual absl::StatusOr<VmStatus> Status(const std::string& id) = 0;

  // Every VM of ours the backend knows, including ones created before a daemon restart.
  virtual absl::StatusOr<std::vector<VmInfo>> List() = 0;

  virtual absl::Status Pause(const std::string& id) = 0;
  virtual absl::Status Resume(const std::string& id) = 0;

  // Hot-plugs a disk into a running VM (virtio-scsi) / removes it.
  virtual absl::Status AttachDisk(const std::string& id, const VmDisk& disk) = 0;
  virtual absl::Status DetachDisk(const std::string& id, const std::string& disk_id) = 0;
  // The disks a VM has now (cold- and hot-plugged), as the backend sees them: id (serial),
  // path, read-only and SCSI target. A restarted daemon releases the ones no record owns.
  virtual absl::StatusOr<std::vector<VmDisk>> ListDisks(const std::string& id) = 0;

  // Saves the device state of a running template VM (created with VmSpec::memory_file and no
  // restore_state) to `state_file` with QEMU's x-ignore-shared migration: its RAM stays in the
  // memory file, which clones then map. The VM is destroyed afterwards, whatever the outcome.
  virtual absl::Status SaveTemplate(const std::string& id, const std::string& state_file) = 0;

  // QEMU and libvirt versions ("qemu 7002000 libvirt 9000000"), part of a template's key: a
  // saved device state is only restored by the QEMU that wrote it.
  virtual std::string Versions() const = 0;

  // Sets the handler for VMs that stop on their own (replaces any previous one).
  virtual void SetExitCallback(VmExitCallback callback) = 0;
};

// Options of the libvirt backend.
struct LibvirtHypervisorOptions {
  // "qemu:///embed?root=<dir>" runs libvirt's QEMU driver inside this process (the default,
  // see docs/hypervisor.md); any other URI (e.g. "qemu:///system") talks to a libvirtd.
  std::string uri;
  // Root of the embedded driver when `uri` is empty: uri becomes qemu:///embed?root=<embed_root>.
  std::string embed_root;
  std::string accelerator = "auto";  // "auto" | "kvm" | "tcg"
  std::string emulator = "/usr/bin/qemu-system-x86_64";
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";  // for VMs with a shared_dir
  // Guest image used by Init for the KVM probe and the warm-up create.
  std::string kernel;
  std::string initrd;
  absl::Duration kvm_probe_timeout = absl::Seconds(6);
  // Where the KVM probe's outcome is cached across restarts (see accel_probe_cache.h); its
  // directory must exist. Empty: probe at every Init.
  std::string probe_cache_path;
  // Host TSC frequency passed to guests as tsc_early_khz; 0 reads it from the host.
  uint64_t tsc_khz = 0;
  // Hardening (config hypervisor.qemu_sandbox, hypervisor.guest_mitigations; docs/reliability.md).
  bool qemu_sandbox = true;
  bool guest_mitigations = true;
  // The guest console log keeps at most this much (hypervisor.console_log_max_bytes); 0: no cap.
  int64_t console_log_max_bytes = 1 << 20;
};

absl::StatusOr<std::unique_ptr<Hypervisor>> NewLibvirtHypervisor(LibvirtHypervisorOptions options);

}  // namespace podvisor
